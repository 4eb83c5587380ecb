"""Image-conditioned report filling and the diagnostic of whether the report branch reads the image."""

import copy

import pytest
import torch
import torch.nn.functional as F
from conftest import tiny_config
from PIL import Image
from transformers import pipeline

from mrm_hf import MRMForImageClassification, MRMForPreTraining, MRMModel, fill_report
from mrm_hf.processing_mrm import encoder_image_processor, processor_for_model
from mrm_hf.report_filling import report_loss_by_image
from mrm_hf.tokenization_mrm import vocabulary_tokenizer


# The brightness of a uniform image decides the one masked word: only the image can tell it.
WORDS = {"dark": 0, "gray": 128, "bright": 255}
TEMPLATE = "the lung field is [MASK]"


def word_images():
    return [Image.new("L", (40, 40), value) for value in WORDS.values()]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny model whose report branch learned to copy the image's global feature into the masked word."""
    tokenizer = vocabulary_tokenizer([f"the lung field is {word}" for word in WORDS])  # the same ids every run
    assert all(tokenizer.tokenize(word) == [word] for word in WORDS)
    torch.manual_seed(0)
    model = MRMForPreTraining(tiny_config(report_vocab_size=len(tokenizer)))
    processor = processor_for_model(model, tokenizer)
    batch = processor(images=word_images(), text=[TEMPLATE] * len(WORDS), return_tensors="pt")
    labels = torch.full_like(batch["input_ids"], -100)
    labels[batch["input_ids"] == tokenizer.mask_token_id] = torch.tensor(tokenizer.convert_tokens_to_ids(list(WORDS)))
    with torch.no_grad():  # the encoder stays as initialised; the fusion and the report branch learn
        latent = model.get_image_features(batch["pixel_values"]).last_hidden_state
    optimizer = torch.optim.AdamW([*model.fusion.parameters(), *model.report_branch.parameters()], lr=1e-2)
    model.train()
    for _ in range(60):
        logits = model.get_report_logits(batch["input_ids"], model.fusion(latent), batch["attention_mask"])
        loss = F.cross_entropy(logits.flatten(0, 1), labels.flatten())
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()
    folder = tmp_path_factory.mktemp("filler")
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return model, processor, folder, dict(batch, labels=labels)


def test_fill_pipeline_returns_the_word_the_image_implies(trained):
    _, processor, folder, _ = trained
    fill = pipeline("mrm-report-fill-mask", model=str(folder))
    for word, image in zip(WORDS, word_images()):
        candidates = fill(image, TEMPLATE, top_k=3)
        assert [set(c) for c in candidates] == [{"score", "token", "token_str", "sequence"}] * 3  # fill-mask's shape
        assert candidates[0]["token_str"] == word and candidates[0]["sequence"] == f"the lung field is {word}"
        assert candidates[0]["score"] > 0.5 and candidates[0]["score"] >= candidates[1]["score"] >= candidates[2]["score"]
        assert {c["token_str"] for c in candidates} == set(WORDS)


def test_fill_report_gives_one_list_per_mask_and_agrees_with_the_pipeline(trained):
    model, processor, folder, _ = trained
    image = word_images()[2]
    two_masks = fill_report(image, "the [MASK] field is [MASK]", model, processor, top_k=2)
    assert len(two_masks) == 2 and all(len(row) == 2 for row in two_masks)
    assert two_masks[1][0]["token_str"] == "bright" and "[MASK]" in two_masks[1][0]["sequence"]
    from_folder = fill_report(image, TEMPLATE, str(folder), top_k=1)
    assert from_folder[0]["token_str"] == "bright"


def test_fill_pipeline_refuses_a_report_without_mask(trained):
    _, processor, folder, _ = trained
    fill = pipeline("mrm-report-fill-mask", model=str(folder))
    with pytest.raises(ValueError, match=r"no \[MASK\] token to fill: 'the lung field is dark'"):
        fill(word_images()[0], "the lung field is dark")


def test_diagnostic_separates_a_model_that_reads_the_image_from_one_that_does_not(trained):
    model, _, _, batch = trained
    reads = report_loss_by_image(model, [batch])
    assert reads["report_loss_own_image"] < 0.2 * reads["report_loss_zero_image"]
    assert reads["report_loss_own_image"] < 0.2 * reads["report_loss_shuffled_image"]

    blind = copy.deepcopy(model)  # the same report branch, told nothing about the image
    torch.nn.init.zeros_(blind.fusion.projection.weight)
    torch.nn.init.zeros_(blind.fusion.projection.bias)
    ignores = report_loss_by_image(blind, [batch])
    assert ignores["report_loss_own_image"] == pytest.approx(ignores["report_loss_zero_image"], abs=1e-6)
    assert ignores["report_loss_own_image"] == pytest.approx(ignores["report_loss_shuffled_image"], abs=1e-6)


@pytest.mark.parametrize("kind", ["pretraining", "classifier"])
def test_feature_extraction_pipeline_gives_the_encoders_features(kind, trained, tmp_path):
    if kind == "pretraining":
        folder = trained[2]
    else:
        torch.manual_seed(1)
        MRMForImageClassification(tiny_config(num_labels=3)).save_pretrained(tmp_path)
        encoder_image_processor(32).save_pretrained(tmp_path)
        folder = tmp_path
    extract = pipeline("image-feature-extraction", model=str(folder))
    image = word_images()[1]
    features = extract(image, return_tensors=True)
    pooled = extract(image, return_tensors=True, pool=True)
    encoder = MRMModel.from_pretrained(folder).eval()
    with torch.no_grad():
        expected = encoder(**encoder_image_processor(32)(image, return_tensors="pt"))
    assert features.shape == (1, 17, 32)
    torch.testing.assert_close(features, expected.last_hidden_state)
    torch.testing.assert_close(pooled, expected.pooler_output)


def test_fill_report_example_prints_the_implied_word(trained, tmp_path, capsys):
    import fill_report as example

    word_images()[0].save(tmp_path / "dark.png")
    per_mask = example.main(["--model", str(trained[2]), "--image", str(tmp_path / "dark.png"), "--report", TEMPLATE,
                             "--top_k", "2"])
    assert per_mask[0][0]["token_str"] == "dark" and capsys.readouterr().out.startswith("[MASK] 1: dark (")
