"""Bad input: each case gets an error that says what was expected, what was found and where, or a counted skip."""

import io
import warnings

import numpy as np
import pytest
import torch
from datasets import Dataset, Features, Image as ImageFeature
from PIL import Image

from mrm_hf import MRMConfig, MRMImageProcessor
from mrm_hf.data import DataCollatorForMRM, RecordError, extract_sections, load_csv, load_training_csv
from mrm_hf.tokenization_mrm import load_published_tokenizer, train_report_tokenizer
from mrm_hf.transforms import PretrainingTransform
from mrm_hf.utils import apply_config_overrides
from pretraining_setup import ModelArguments, load_tokenizer


def jpeg_bytes(size=64) -> bytes:
    noise = np.random.default_rng(0).integers(0, 256, (size, size), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(noise).save(buffer, "JPEG", quality=95)
    return buffer.getvalue()


def broken_stream_jpeg(data: bytes) -> bytes:
    """Coded data overwritten with marker bytes: the header and the end marker are intact."""
    broken = bytearray(data)
    for i in range(len(data) // 2, len(data) // 2 + 600, 7):
        broken[i] = 0xFF
    return bytes(broken)


@pytest.fixture(scope="module")
def tokenizer():
    return train_report_tokenizer(["left effusion", "no acute disease", "small right pneumothorax"] * 4, vocab_size=60)


def test_loaders_leave_out_truncated_images_and_name_them_in_strict_mode(tmp_path):
    Image.new("L", (32, 32), 128).save(tmp_path / "good.png")
    Image.new("L", (32, 32), 128).save(tmp_path / "cut.png")
    (tmp_path / "cut.png").write_bytes((tmp_path / "cut.png").read_bytes()[:-30])
    (tmp_path / "train.csv").write_text("image_path,effusion\ngood.png,1\ncut.png,0\n")
    with pytest.warns(UserWarning, match=r"1 of 2 images named in .*train.csv cannot be read \(e.g. cut.png"):
        records = load_csv(tmp_path / "train.csv")
    assert records["train"]["image_path"] == ["good.png"]
    with pytest.raises(OSError, match=r"cut.png \((truncated|unreadable) image\)"):
        load_csv(tmp_path / "train.csv", strict=True)


def test_full_check_refuses_a_jpeg_with_a_zero_filled_block(tmp_path):
    data = bytearray(jpeg_bytes(128))
    data[len(data) // 3 : len(data) // 3 + 2048] = bytes(2048)
    (tmp_path / "zeroed.jpg").write_bytes(bytes(data))
    Image.open(io.BytesIO(bytes(data))).load()  # PIL decodes it without complaint, as garbage
    (tmp_path / "good.jpg").write_bytes(jpeg_bytes())
    rows = 'image_path,report_content\ngood.jpg,"left effusion"\nzeroed.jpg,"no acute"\n'
    (tmp_path / "training.csv").write_text(rows)
    with pytest.raises(RecordError, match=r"expected a usable record; found .*zeroed.jpg \(zero-filled image\)"):
        load_training_csv(tmp_path / "training.csv", check_images="full", strict=True, cache_dir=tmp_path / "cache")


def records_with_a_broken_image(tmp_path) -> Dataset:
    (tmp_path / "good.jpg").write_bytes(jpeg_bytes())
    (tmp_path / "broken.jpg").write_bytes(broken_stream_jpeg(jpeg_bytes()))
    paths = [str(tmp_path / "good.jpg"), str(tmp_path / "broken.jpg")]
    features = Features({"image": ImageFeature(decode=False), "report": Dataset.from_dict({"r": ["x"]}).features["r"]})
    records = Dataset.from_dict({"image": paths, "report": ["left effusion", "no acute"]}, features=features)
    return records.add_column("sample_index", [0, 1])


def test_unreadable_training_image_is_named_with_its_row_and_raised_or_skipped(tmp_path, tokenizer):
    records = records_with_a_broken_image(tmp_path)
    processor = MRMImageProcessor(mode="pretraining")
    strict = records.with_transform(PretrainingTransform(processor, size=32, seed=0, on_bad_image="raise"))
    with pytest.raises(RecordError, match=r"broken.jpg \(row 1\): expected a readable radiograph; found OSError: "):
        strict[0:2]

    skipping = PretrainingTransform(processor, size=32, seed=0, on_bad_image="skip")
    batch = records.with_transform(skipping)[0:2]
    assert batch["pixel_values"][1] is None and skipping.skipped == 1
    examples = [{key: batch[key][i] for key in batch} for i in range(2)]
    collated = DataCollatorForMRM(tokenizer, seed=0, max_length=16)(examples)
    assert collated["pixel_values"].shape == (1, 3, 32, 32) and collated["input_ids"].shape == (1, 16)


def test_absurd_aspect_ratio_is_refused_before_resizing(tmp_path):
    Image.new("L", (30000, 1)).save(tmp_path / "wide.png")
    assert (tmp_path / "wide.png").stat().st_size < 200
    with pytest.raises(ValueError, match=r"wide.png: expected a radiograph with an aspect ratio of at most 100:1; "
                                         r"found 30000x1 px"):
        MRMImageProcessor()(str(tmp_path / "wide.png"))
    with pytest.raises(ValueError, match=r"at most \d+ pixels .*MAX_IMAGE_PIXELS"):
        MRMImageProcessor(size={"shortest_edge": 100000}, do_center_crop=False)(np.zeros((64, 64), np.uint8))


def test_fast_jpeg_path_refuses_absurd_aspect_ratios_too(tmp_path):
    # The drafting path opens JPEGs itself; it must refuse what the exact path refuses, before decoding.
    from mrm_hf.image_processing_mrm import open_fast

    Image.new("L", (3000, 1)).save(tmp_path / "strip.jpg")
    with pytest.raises(ValueError, match=r"strip.jpg: expected a radiograph with an aspect ratio of at most 100:1; "
                                         r"found 3000x1 px"):
        open_fast(str(tmp_path / "strip.jpg"))
    Image.new("L", (300, 200)).save(tmp_path / "fine.jpg")
    assert open_fast(str(tmp_path / "fine.jpg")).size == (300, 200)


def test_bits_stored_scales_twelve_bit_pngs_and_their_absence_warns(tmp_path):
    values = np.linspace(0, 4095, 64 * 64).reshape(64, 64).astype(np.uint16)
    Image.fromarray(values).save(tmp_path / "twelve.png")
    with pytest.warns(UserWarning, match=r"largest value is 4095 .*Pass bits_stored=12"):
        dark = MRMImageProcessor()(str(tmp_path / "twelve.png"), return_tensors="pt")["pixel_values"]
    eight_bit = np.round(values / 4095 * 255).astype(np.uint8)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        stated = MRMImageProcessor(bits_stored=12)(str(tmp_path / "twelve.png"), return_tensors="pt")["pixel_values"]
    reference = MRMImageProcessor()(eight_bit, return_tensors="pt")["pixel_values"]
    assert (stated - reference).abs().max() < 2 / 255 / 0.2449  # within a gray level of the 8-bit rendering
    assert dark.mean() < reference.mean() - 1.0
    with pytest.raises(ValueError, match=r"expected values of at most 1023 \(bits_stored=10\); found 4095"):
        MRMImageProcessor(bits_stored=10)(str(tmp_path / "twelve.png"))


def test_extract_sections_names_a_report_that_is_not_text():
    with pytest.raises(TypeError, match=r"expected the report as a str; found NoneType"):
        extract_sections(None)


def test_collator_names_none_examples_missing_reports_and_ids_outside_the_vocabulary(tokenizer):
    collator = DataCollatorForMRM(tokenizer, max_length=8)
    with pytest.raises(TypeError, match=r"expected each example as a dict; found NoneType at position 1"):
        collator([{"report": "left effusion"}, None])
    with pytest.raises(TypeError, match=r"position 0 .*sample 7.*: expected `report` as a str; found NoneType"):
        collator([{"report": None, "sample_index": 7}])
    with pytest.raises(ValueError, match=rf"The example at position 1 of the batch, position 2: expected `input_ids` "
                       rf"in the tokenizer's vocabulary \(0 to {len(tokenizer) - 1}\); found 5000"):  # fmt: skip
        collator([{"input_ids": [2, 5]}, {"input_ids": [2, 5, 5000]}])


def test_collator_refuses_nan_pixel_values_naming_the_example(tokenizer):
    pixels = torch.zeros(3, 4, 4)
    pixels[0, 1, 1] = float("nan")
    with pytest.raises(ValueError, match=r"position 1 .*sample 3.*: expected finite `pixel_values`; found NaN"):
        DataCollatorForMRM(tokenizer, max_length=8)(
            [{"report": "a", "pixel_values": torch.zeros(3, 4, 4)}, {"report": "b", "pixel_values": pixels, "sample_index": 3}]
        )


def test_vocabulary_json_missing_or_truncated_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"absent.json: expected a tokenizers JSON vocabulary; found no such file"):
        load_published_tokenizer(tmp_path / "absent.json")
    text = train_report_tokenizer(["left effusion"] * 3, vocab_size=40).backend_tokenizer.to_str()
    (tmp_path / "cut.json").write_text(text[: len(text) // 2])
    with pytest.raises(ValueError, match=r"cut.json: expected a complete tokenizers JSON vocabulary .*; found a file that does not parse"):
        load_published_tokenizer(tmp_path / "cut.json")


def test_tokenizer_name_typo_names_the_argument(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"--tokenizer_name ./mimic_wordpeice: expected a tokenizer folder"):
        load_tokenizer(ModelArguments(tokenizer_name="./mimic_wordpeice"), [])
    with pytest.raises(OSError, match=r"--tokenizer_name mimic_wordpeice: expected .* found no local file or folder"):
        load_tokenizer(ModelArguments(tokenizer_name="mimic_wordpeice"), [])


def test_config_overrides_with_a_wrong_separator_or_field_are_named():
    with pytest.raises(ValueError, match=r"expected comma-separated key=value .*found 'hidden_size=64;num_hidden_layers=2'"):
        apply_config_overrides(MRMConfig(), "hidden_size=64;num_hidden_layers=2")
    with pytest.raises(ValueError, match=r"found the unknown field 'num_attention_head'"):
        apply_config_overrides(MRMConfig(), "num_attention_head=4")


def test_config_refuses_a_width_the_sincos_table_cannot_take():
    with pytest.raises(Exception, match=r"decoder_hidden_size: expected a multiple of 4 .*; found 510"):
        MRMConfig(decoder_hidden_size=510, decoder_num_attention_heads=2)


def test_tokenizer_trained_on_empty_reports_is_refused():
    with pytest.raises(ValueError, match=r"found 3 reports \(3 empty or blank\), which gave only the 4 special tokens"):
        train_report_tokenizer(["", "  ", "\n"])


# ---- the last unclear or silent cases (issue: every promise a fresh install proves) ------------------------------


def test_reconstruction_size_is_twice_the_image_size_unless_given():
    assert MRMConfig().reconstruction_size == 448
    assert MRMConfig(image_size=128).reconstruction_size == 256
    assert MRMConfig(image_size=32, reconstruction_size=96).reconstruction_size == 96
    config = MRMConfig()
    apply_config_overrides(config, "image_size=48,patch_size=8")
    assert config.reconstruction_size == 96


def test_converter_takes_an_encoder_at_another_resolution(tmp_path):
    from mrm_hf import MRMModel
    from mrm_hf.convert import main as convert
    from test_docs import fake_published_checkpoint

    fake_published_checkpoint(tmp_path / "encoder-48.pth", "encoder", image_size=48)  # MAE's layout, at 48 px
    assert convert(["--checkpoint", str(tmp_path / "encoder-48.pth"), "--output-dir", str(tmp_path / "out")]) == 0
    model = MRMModel.from_pretrained(tmp_path / "out")
    assert (model.config.image_size, model.config.reconstruction_size) == (48, 96)
    assert model(torch.randn(1, 3, 48, 48)).pooler_output.shape == (1, 48)


def test_image_processor_refuses_keywords_it_does_not_use_and_names_those_it_takes():
    with pytest.raises(TypeError, match=r"expected keywords among \[.*'crop_size'.*'size'\]; found \['image_size'\]"):
        MRMImageProcessor(image_size=64)


def test_a_random_state_file_refused_by_weights_only_is_named(tmp_path):
    import argparse

    from transformers import TrainingArguments

    from mrm_hf.training import CardWritingTrainer

    checkpoint = tmp_path / "checkpoint-2"
    checkpoint.mkdir()
    torch.save({"python": None, "args": argparse.Namespace(seed=0)}, checkpoint / "rng_state.pth")
    trainer = CardWritingTrainer(model=torch.nn.Linear(1, 1),
                                 args=TrainingArguments(output_dir=str(tmp_path / "out"), use_cpu=True, report_to="none"))
    with pytest.raises(ValueError, match=rf"expected {checkpoint / 'rng_state.pth'} to hold the random state .*"
                                         r"argparse.Namespace"):  # fmt: skip
        trainer._load_rng_state(str(checkpoint))


def test_a_report_of_headers_only_is_left_out_and_counted(tmp_path):
    (tmp_path / "a.jpg").write_bytes(jpeg_bytes())
    (tmp_path / "b.jpg").write_bytes(jpeg_bytes())
    (tmp_path / "training.csv").write_text('image_path,report_content\na.jpg,"FINAL REPORT\n FINDINGS:\n IMPRESSION: ___"\n'
                                           'b.jpg,"FINAL REPORT IMPRESSION: No effusion."\n')  # fmt: skip
    with pytest.warns(UserWarning, match=r"Skipped 1 of 2 records .*empty report: 1"):
        records = load_training_csv(tmp_path / "training.csv", report_sections="full", cache_dir=tmp_path / "cache")
    assert records["report"] == ["FINAL REPORT IMPRESSION: No effusion."]


def test_segmentation_refuses_a_held_out_fraction_beside_its_csv():
    import run_segmentation

    base = ["--model_name_or_path", "m", "--dataset", "csv", "--train_csv", "t.csv", "--output_dir", "o"]
    for split in ("test", "validation"):
        with pytest.raises(ValueError, match=rf"--{split}_fraction: expected it only without --{split}_csv"):
            run_segmentation.parse_arguments([*base, f"--{split}_csv", "x.csv", f"--{split}_fraction", "0.2"])
    run_segmentation.parse_arguments([*base, "--test_csv", "x.csv", "--validation_fraction", "0.2"])
