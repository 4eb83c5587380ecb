"""MRMProcessor: one processor for a record's image and report, saved and loaded as transformers' processors are."""

import json
import logging

import numpy as np
import pytest
import torch
from conftest import run_without_mrm_hf, tiny_config
from PIL import Image
from transformers import AutoImageProcessor, AutoProcessor

from mrm_hf import MRMForImageClassification, MRMForPreTraining, MRMImageProcessor, MRMProcessor
from mrm_hf.processing_mrm import processor_for_model
from mrm_hf.tokenization_mrm import train_report_tokenizer


REPORTS = ["no pleural effusion", "left basal [MASK] and a small effusion"]


@pytest.fixture(scope="module")
def tokenizer():
    return train_report_tokenizer(["no pleural effusion left basal opacity small"] * 4 + REPORTS, vocab_size=60)


def images():
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 256, (50, 40), dtype=np.uint8)),
            Image.fromarray(rng.integers(0, 65536, (30, 70), dtype=np.uint16))]


def pretraining_model(tokenizer):
    return MRMForPreTraining(tiny_config(report_vocab_size=len(tokenizer))).eval()


def test_processor_output_is_the_image_processor_and_tokenizer_output(tokenizer):
    model = pretraining_model(tokenizer)
    processor = processor_for_model(model, tokenizer)
    image_processor = MRMImageProcessor(mode="evaluation", size={"shortest_edge": 32},
                                        crop_size={"height": 32, "width": 32})

    encoder_inputs = processor(images=images(), return_tensors="pt")
    assert list(encoder_inputs) == ["pixel_values"]
    assert torch.equal(encoder_inputs["pixel_values"], image_processor(images(), return_tensors="pt")["pixel_values"])

    record = processor(images=images(), text=REPORTS, return_tensors="pt")
    high_resolution = image_processor(images(), mode="pretraining", size={"height": 64, "width": 64},
                                      return_tensors="pt")["pixel_values"]
    tokens = tokenizer(REPORTS, padding=True, truncation=True, max_length=12, return_tensors="pt")
    assert record["pixel_values"].shape == (2, 3, 64, 64) and torch.equal(record["pixel_values"], high_resolution)
    for key in ("input_ids", "attention_mask", "token_type_ids"):
        assert torch.equal(record[key], tokens[key])
    assert record["input_ids"][1].tolist().count(tokenizer.mask_token_id) == 1
    outputs = model(**record)  # what MRMForPreTraining takes
    assert outputs.report_logits.shape == (*tokens["input_ids"].shape, len(tokenizer))


def test_processor_round_trips_through_auto_processor(tokenizer, tmp_path):
    model = pretraining_model(tokenizer)
    processor = processor_for_model(model, tokenizer)
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    loaded = AutoProcessor.from_pretrained(tmp_path)
    assert isinstance(loaded, MRMProcessor) and (loaded.reconstruction_size, loaded.max_report_length) == (64, 12)
    assert isinstance(AutoImageProcessor.from_pretrained(tmp_path), MRMImageProcessor)
    for a, b in ((processor(images=images()), loaded(images=images())),
                 (processor(images=images(), text=REPORTS), loaded(images=images(), text=REPORTS))):
        assert a.keys() == b.keys() and all(np.array_equal(np.asarray(a[k]), np.asarray(b[k])) for k in a)


def test_processor_loads_with_trust_remote_code_without_mrm_hf(tokenizer, tmp_path):
    model = pretraining_model(tokenizer)
    processor = processor_for_model(model, tokenizer)
    folder = tmp_path / "model"
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    Image.new("L", (50, 40), 90).save(tmp_path / "x.png")
    expected = processor(images=Image.open(tmp_path / "x.png"), text=REPORTS[1], return_tensors="pt")
    printed = run_without_mrm_hf(
        f"""
import json
from PIL import Image
from transformers import AutoProcessor
processor = AutoProcessor.from_pretrained({str(folder)!r}, trust_remote_code=True)
record = processor(images=Image.open("x.png"), text={REPORTS[1]!r}, return_tensors="pt")
print(json.dumps({{"class": type(processor).__name__, "ids": record["input_ids"].tolist(),
                  "pixels": record["pixel_values"].double().sum().item(), "shape": list(record["pixel_values"].shape),
                  "encoder": list(processor(images=Image.open("x.png"), return_tensors="pt")["pixel_values"].shape)}}))
""",
        tmp_path,
    )
    result = json.loads(printed.strip().splitlines()[-1])
    assert result["class"] == "MRMProcessor" and result["ids"] == expected["input_ids"].tolist()
    assert result["shape"] == [1, 3, 64, 64] and result["encoder"] == [1, 3, 32, 32]
    assert result["pixels"] == pytest.approx(expected["pixel_values"].double().sum().item(), rel=1e-9)


def test_a_report_without_an_image_is_refused(tokenizer):
    processor = processor_for_model(pretraining_model(tokenizer), tokenizer)
    with pytest.raises(ValueError, match="report .* without an image: .* pass the record's `images` too"):
        processor(text=REPORTS)
    classifier_processor = processor_for_model(MRMForImageClassification(tiny_config(num_labels=2)), tokenizer)
    with pytest.raises(ValueError, match="no `reconstruction_size`: it belongs to a model without a report branch"):
        classifier_processor(images=images(), text=REPORTS)


def test_a_report_longer_than_the_positions_is_truncated_with_one_warning(tokenizer, caplog):
    processor = processor_for_model(pretraining_model(tokenizer), tokenizer)
    long_report = " ".join(["no pleural effusion"] * 10)
    with caplog.at_level(logging.WARNING, logger="mrm_hf.processing_mrm"):
        first = processor(images=images()[0], text=long_report)
        processor(images=images()[0], text=long_report)
    assert len(first["input_ids"][0]) == 12
    warnings = [r for r in caplog.records if "longer than the report branch's 12 positions" in r.getMessage()]
    assert len(warnings) == 1
