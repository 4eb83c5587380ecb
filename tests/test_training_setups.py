"""Image-only pre-training, the random-initialisation fine-tuning baseline, and two input errors that say the fix."""

import json
import logging

import numpy as np
import pytest
import torch
from conftest import shared_path
from test_pretraining_scripts import SCRIPTS, TINY

from mrm_hf import MRMForImageClassification, MRMForPreTraining, MRMImageProcessor
from mrm_hf.data import NIH_LABELS


import run_classification  # noqa: E402


def fine_tuning_args(output_dir, data):
    val = str(data / "nih14_64px_val.csv")
    return [
        "--dataset", "csv", "--train_csv", val, "--validation_csv", val, "--label_columns", ",".join(NIH_LABELS),
        "--output_dir", str(output_dir), "--max_steps", "2", "--eval_strategy", "steps", "--eval_steps", "2",
        "--save_strategy", "steps", "--save_steps", "2", "--per_device_train_batch_size", "8",
        "--per_device_eval_batch_size", "64", "--learning_rate", "0.05", "--use_cpu", "--disable_tqdm", "true",
        "--report_to", "none",
    ]  # fmt: skip


@pytest.mark.parametrize("script", SCRIPTS)
def test_image_only_pretraining_runs_saves_reloads_and_fine_tunes(script, tmp_path):
    output_dir = tmp_path / "run"
    SCRIPTS[script].main([*TINY, "--image_only", "--max_steps", "2", "--save_strategy", "no",
                          "--output_dir", str(output_dir)])  # fmt: skip
    # No tokenizer, no report parameters, a card that says so.
    assert not (output_dir / "tokenizer.json").exists() and not (output_dir / "tokenizer_config.json").exists()
    assert json.loads((output_dir / "config.json").read_text())["use_report_branch"] is False
    model = MRMForPreTraining.from_pretrained(output_dir)
    assert model.report_branch is None and model.fusion is None
    assert not any(name.startswith(("report_branch.", "fusion.")) for name in model.state_dict())
    card = (output_dir / "README.md").read_text()
    assert "image-only pre-training" in card and "Images only: the reports were not used." in card
    with pytest.raises(ValueError, match="pre-trains on images alone"):
        model(torch.randn(1, 3, 32, 32), input_ids=torch.ones(1, 4, dtype=torch.long))

    results = run_classification.main(
        ["--model_name_or_path", str(output_dir), *fine_tuning_args(tmp_path / "fine", shared_path("data", "nih14"))]
    )
    assert "eval_mean_auc" in results
    classifier = MRMForImageClassification.from_pretrained(tmp_path / "fine")
    encoder = model.image_encoder.state_dict()
    # The fine-tuning started from the image-only encoder: its first block moved only by two small steps.
    start = encoder["layers.0.mlp.fc1.weight"]
    moved = classifier.image_encoder.state_dict()["layers.0.mlp.fc1.weight"] - start
    assert moved.abs().max() < 0.5 * start.abs().max()


def test_random_initialisation_baseline_fine_tunes_from_a_config(tmp_path):
    overrides = "image_size=32,patch_size=8,hidden_size=32,num_hidden_layers=2,num_attention_heads=4," \
        "intermediate_size=64"
    results = run_classification.main(
        ["--model_type", "mrm", "--config_overrides", overrides,
         *fine_tuning_args(tmp_path / "out", shared_path("data", "nih14"))]
    )  # fmt: skip
    assert "eval_mean_auc" in results
    model = MRMForImageClassification.from_pretrained(tmp_path / "out")
    assert (model.config.hidden_size, model.config.num_labels) == (32, 14)
    assert "random initialisation" in (tmp_path / "out" / "README.md").read_text()
    data = ["--dataset", "imagefolder", "--data_dir", str(tmp_path), "--output_dir", str(tmp_path)]
    with pytest.raises(ValueError, match="--model_name_or_path .* or --model_type mrm"):
        run_classification.main(data)
    with pytest.raises(ValueError, match="--config_overrides shape a new model"):
        run_classification.main(["--model_name_or_path", str(tmp_path / "out"), "--config_overrides", overrides, *data])


def test_csv_with_metadata_columns_says_to_pass_label_columns(tmp_path):
    data = shared_path("data", "nih14")
    argv = ["--model_type", "mrm", "--dataset", "csv", "--train_csv", str(data / "nih14_64px_val.csv"),
            "--output_dir", str(tmp_path)]  # fmt: skip
    with pytest.raises(ValueError, match=r"--label_columns Atelectasis,Cardiomegaly,.*Hernia") as error:
        run_classification.main(argv)
    assert "finding_labels_dataentry_v2020 ('No Finding'" in str(error.value) and "view ('" in str(error.value)


def test_do_convert_rgb_is_kept_and_false_says_it_changes_nothing(caplog):
    # Kept as transformers' processors keep it; MRM's "RGB" is always grayscale luminance on 3 channels.
    image = np.zeros((8, 8, 3), dtype=np.uint8)
    image[..., 0] = 255  # pure red: its luminance, not its red channel, reaches the model
    expected = MRMImageProcessor(do_normalize=False)(image, return_tensors="pt")["pixel_values"]
    assert expected.shape == (1, 3, 224, 224) and torch.allclose(expected, torch.full_like(expected, 0.299), atol=3e-3)
    for value in (True, False):
        processor = MRMImageProcessor.from_dict({"do_normalize": False}, do_convert_rgb=value)
        assert processor.do_convert_rgb is value
        torch.testing.assert_close(processor(image, return_tensors="pt")["pixel_values"], expected)
    logging.Logger.warning_once.cache_clear()  # transformers' warning_once: said once per process
    with caplog.at_level("WARNING"):
        MRMImageProcessor()(image, do_convert_rgb=False)
    assert "do_convert_rgb=False" in caplog.text and "grayscale luminance" in caplog.text


def test_image_only_collator_keeps_decoded_images_and_drops_skipped_ones():
    # --image_only with --augment_on_device: the workers give `decoded_images`, not `pixel_values`.
    from mrm_hf.data import SeededDraws
    from mrm_hf.data import ImageCollator

    collator = ImageCollator(SeededDraws(0))
    decoded = [{"decoded_images": torch.full((8, 8), i, dtype=torch.uint8), "original_sizes": torch.tensor([8, 8])}
               for i in range(3)]
    batch = collator(decoded)
    assert batch["decoded_images"].shape == (3, 8, 8) and batch["original_sizes"].shape == (3, 2)
    views = [{"pixel_values": torch.zeros(3, 4, 4)}, {"pixel_values": None}]  # the second image was unreadable
    assert collator(views)["pixel_values"].shape == (1, 3, 4, 4)
