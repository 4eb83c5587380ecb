"""MRMBackbone, the SIIM-ACR data, the published loss and metric, and examples/run_segmentation.py on real lung masks."""

import csv
import json
import warnings

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.ops import sigmoid_focal_loss
from transformers import (
    AutoBackbone,
    AutoModelForSemanticSegmentation,
    UperNetConfig,
    UperNetForSemanticSegmentation,
    pipeline,
)

from conftest import run_without_mrm_hf, shared_path, tiny_config
from mrm_hf import MRMBackbone, MRMConfig, MRMForImageClassification, MRMForPreTraining, MRMImageProcessor, MRMModel
from mrm_hf.data.seeding import SAMPLE_INDEX, SeededDraws
from mrm_hf.data.segmentation import load_segmentation_csv, load_siim, read_pair, read_rle_csv, rle_decode, rle_encode
from mrm_hf.data.splits import read_split_list
from mrm_hf.metrics import load_metric, pack_masks
from mrm_hf.segmentation import dice_loss, focal_loss
from mrm_hf.training import layer_decay_parameter_groups
from mrm_hf.transforms import SegmentationTransform


import run_segmentation  # noqa: E402


SIIM_ID = "1.2.276.0.7230010.3.1.4.8323329.6904.1517875201.850819"


def backbone_config(**overrides):
    """tiny_config with four blocks, so that the four-map neck has a block for each map."""
    return tiny_config(num_hidden_layers=4, **overrides)


# ---- the backbone ----------------------------------------------------------------------------------------------------


def test_pretraining_checkpoint_loads_into_the_backbone_with_every_encoder_weight_equal(tmp_path):
    torch.manual_seed(0)
    pretraining = MRMForPreTraining(backbone_config())
    pretraining.save_pretrained(tmp_path / "pretraining")
    backbone, info = MRMBackbone.from_pretrained(tmp_path / "pretraining", output_loading_info=True)
    assert all(key.startswith("neck.") for key in info["missing_keys"]), info["missing_keys"]
    encoder = pretraining.image_encoder.state_dict()
    loaded = {name: value for name, value in backbone.state_dict().items() if not name.startswith("neck.")}
    assert loaded.keys() == {name for name in encoder if not name.startswith(("layernorm.", "pooler."))}
    for name, value in loaded.items():
        assert torch.equal(value, encoder[name]), name

    for model in (MRMModel(backbone_config()), MRMForImageClassification(backbone_config(num_labels=3))):
        model.save_pretrained(tmp_path / type(model).__name__)
        _, info = MRMBackbone.from_pretrained(tmp_path / type(model).__name__, output_loading_info=True)
        assert all(key.startswith("neck.") for key in info["missing_keys"]), (type(model), info["missing_keys"])


def test_feature_maps_have_the_strides_and_channels_upernet_expects():
    assert MRMConfig().out_indices == [3, 5, 7, 11]  # the published blocks, 0-based
    config = backbone_config(patch_size=16, image_size=32)
    backbone = MRMBackbone(config).eval()
    pixel_values = torch.randn(1, 3, 128, 96)
    maps = backbone(pixel_values).feature_maps
    strides = [(128 // m.shape[-2], 96 // m.shape[-1]) for m in maps]
    assert strides == [(4, 4), (8, 8), (16, 16), (32, 32)]
    assert [m.shape[1] for m in maps] == backbone.channels == [config.hidden_size] * 4

    upernet = UperNetForSemanticSegmentation(UperNetConfig(backbone_config=config, hidden_size=16, num_labels=2))
    assert upernet.eval()(pixel_values).logits.shape == (1, 2, 128, 96)


def test_backbone_maps_are_the_encoder_blocks_at_any_input_size():
    """Without the neck, each map is MRMModel's hidden state after that block, positions resampled bicubic."""
    torch.manual_seed(0)
    config = backbone_config(out_indices=[1, 3], feature_pyramid_rescales=None)
    encoder = MRMModel(config).eval()
    backbone = MRMBackbone(config).eval()
    backbone.load_state_dict(encoder.state_dict(), strict=False)
    for size in (32, 48):  # the checkpoint's own size and another (positions 4x4 -> 6x6)
        pixel_values = torch.randn(2, 3, size, size)
        hidden = encoder(pixel_values, interpolate_pos_encoding=True, output_hidden_states=True).hidden_states
        maps = backbone(pixel_values).feature_maps
        for block, feature_map in zip([1, 3], maps):
            expected = hidden[block + 1][:, 1:].transpose(1, 2).reshape(2, -1, size // 8, size // 8)
            torch.testing.assert_close(feature_map, expected)


def test_a_neck_of_four_maps_needs_four_blocks():
    with pytest.raises(ValueError, match="out_indices"):
        MRMBackbone(tiny_config())  # two blocks: one map by default


def test_auto_backbone_and_upernet_config_build_mrm_after_import(tmp_path):
    config = backbone_config()
    assert isinstance(AutoBackbone.from_config(config), MRMBackbone)
    model = UperNetForSemanticSegmentation(UperNetConfig(backbone_config=config, hidden_size=16, num_labels=2))
    assert isinstance(model.backbone, MRMBackbone)
    model.save_pretrained(tmp_path)
    reloaded = AutoModelForSemanticSegmentation.from_pretrained(tmp_path)
    pixel_values = torch.randn(1, 3, 32, 32)
    torch.testing.assert_close(reloaded.eval()(pixel_values).logits, model.eval()(pixel_values).logits)


def test_saved_backbone_loads_through_remote_code_without_mrm_hf(tmp_path):
    torch.manual_seed(0)
    backbone = MRMBackbone(backbone_config()).eval()
    backbone.save_pretrained(tmp_path / "backbone")
    pixel_values = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = [round(float(m.sum()), 3) for m in backbone(pixel_values).feature_maps]
    code = f"""
import torch
from transformers import AutoConfig
from transformers.dynamic_module_utils import get_class_from_dynamic_module
folder = {str(tmp_path / "backbone")!r}
config = AutoConfig.from_pretrained(folder, trust_remote_code=True)
backbone = get_class_from_dynamic_module(config.auto_map["AutoBackbone"], folder).from_pretrained(folder).eval()
pixel_values = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
print([round(float(m.sum()), 3) for m in backbone(pixel_values).feature_maps])
"""
    assert run_without_mrm_hf(code, tmp_path).strip().splitlines()[-1] == str(expected)


def test_layer_decay_reaches_the_backbone_blocks_of_upernet():
    model = build_model_from_scratch()
    groups = layer_decay_parameter_groups(model, 1.0, 0.5)
    scale_of = {id(p): group["lr_scale"] for group in groups for p in group["params"]}
    named = dict(model.named_parameters())
    assert scale_of[id(named["backbone.embeddings.cls_token"])] == 0.5**5
    assert scale_of[id(named["backbone.layers.3.mlp.fc1.weight"])] == 0.5
    assert scale_of[id(named["decode_head.classifier.weight"])] == 1.0
    assert scale_of[id(named["backbone.neck.stages.0.0.weight"])] == 1.0


def build_model_from_scratch():
    return UperNetForSemanticSegmentation(UperNetConfig(backbone_config=backbone_config(), hidden_size=8,
                                                        auxiliary_channels=8, num_labels=2))


# ---- data ------------------------------------------------------------------------------------------------------------


def test_rle_decodes_column_major_runs_and_round_trips_drawn_masks():
    mask = np.array([[0, 1], [1, 1], [0, 0]], dtype=np.uint8)  # columns: (0, 1, 0) then (1, 1, 0)
    assert rle_encode(mask) == "1 1 1 2"  # gap 1, run 1; gap 1, run 2
    assert rle_encode(mask, "absolute") == "2 1 4 2"
    assert np.array_equal(rle_decode("1 1 1 2", 3, 2), mask)
    assert np.array_equal(rle_decode("2 1 4 2", 3, 2, "absolute"), mask)
    assert rle_encode(np.zeros((5, 4))) == "-1" and not rle_decode("-1", 5, 4).any()

    image = Image.new("L", (64, 48))
    from PIL import ImageDraw

    draw = ImageDraw.Draw(image)
    draw.ellipse((5, 3, 30, 40), fill=1)
    draw.rectangle((40, 10, 63, 47), fill=1)  # touching the right and bottom edges
    drawn = np.asarray(image)
    for encoding in ("relative", "absolute"):
        assert np.array_equal(rle_decode(rle_encode(drawn, encoding), 48, 64, encoding), drawn)
    with pytest.raises(ValueError, match="another size"):
        rle_decode(rle_encode(drawn), 32, 32, name="small.dcm")


def test_published_siim_split_lists_have_the_counts_of_mrm_notes():
    folder = shared_path("reference", "DatasetsSplits", "SIIM-ACR_Pneumothorax")
    counts = {name: len(read_split_list(folder / name, 0, strict=True))
              for name in ("train_10.txt", "train_list.txt", "val_list.txt", "test_list.txt")}
    assert counts == {"train_10.txt": 797, "train_list.txt": 7969, "val_list.txt": 1898, "test_list.txt": 1904}


def siim_tree(tmp_path, rows):
    """A SIIM-ACR tree: the real SIIM DICOM in a Kaggle-like nested folder, split lists and an RLE CSV."""
    dicom = shared_path("data", "dicom", f"{SIIM_ID}.dcm")
    nested = tmp_path / "dicom-images-train" / "1.2.276" / "1.2.276.x"
    nested.mkdir(parents=True)
    (nested / dicom.name).symlink_to(dicom)
    splits = tmp_path / "DatasetsSplits" / "SIIM-ACR_Pneumothorax"
    splits.mkdir(parents=True)
    for name in ("train_list.txt", "val_list.txt", "test_list.txt"):
        (splits / name).write_text(f"{SIIM_ID}\nnot.on.disk\n")
    with open(tmp_path / "train-rle.csv", "w", newline="") as file:
        csv.writer(file).writerows([["ImageId", " EncodedPixels"], *rows])
    return tmp_path / "dicom-images-train", tmp_path / "DatasetsSplits"


def test_siim_dicom_and_rle_rows_give_the_union_mask_and_report_what_is_missing(tmp_path):
    first, second = np.zeros((1024, 1024), np.uint8), np.zeros((1024, 1024), np.uint8)
    first[100:200, 300:350], second[600:700, 650:900] = 1, 1
    rows = [[SIIM_ID, rle_encode(first)], [SIIM_ID, rle_encode(second)], ["orphan.id", "-1"]]
    data_dir, split_dir = siim_tree(tmp_path, rows)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = load_siim(data_dir, split_dir, 100, rle_csv=tmp_path / "train-rle.csv", splits=("train",))
    messages = [str(w.message) for w in caught]
    assert any("orphan.id" in m and "1 of 2 rows" in m for m in messages), messages
    assert any("not.on.disk" in m for m in messages), messages
    assert data["train"]["name"] == [SIIM_ID]
    image, mask = read_pair(data["train"][0])
    assert image.size == (1024, 1024) and np.array_equal(mask, first | second)

    with pytest.raises(ValueError, match="orphan.id"):
        load_siim(data_dir, split_dir, 100, rle_csv=tmp_path / "train-rle.csv", strict=True)
    with pytest.raises(ValueError, match="10, 100"):
        load_siim(data_dir, split_dir, 1, rle_csv=tmp_path / "train-rle.csv")


def test_malformed_rle_lines_are_named_with_their_line_and_skipped_or_raised(tmp_path):
    path = tmp_path / "train-rle.csv"
    path.write_text("ImageId, EncodedPixels\na.1, -1\nb.2\n, 1 2\nc.3, 5 2\n")
    with pytest.warns(UserWarning, match=r"Skipped 2 malformed of 4 lines in .*train-rle\.csv: line 3: 'b\.2' "
                                         r"\(expected 2 fields and an ImageId, found 1 fields\); line 4"):
        assert read_rle_csv(path) == {"a.1": ["-1"], "c.3": ["5 2"]}
    with pytest.raises(ValueError, match=r"train-rle\.csv, line 3: expected 2 fields"):
        read_rle_csv(path, strict=True)
    path.write_text("ImageId, EncodedPixels\nb.2\n")
    with pytest.raises(ValueError, match=r"train-rle\.csv: expected at least one usable line; found none of 1 candidates"):
        read_rle_csv(path)


def write_pairs(path, pairs):
    with open(path, "w", newline="") as file:
        csv.writer(file).writerows([["image_path", "mask_path"], *pairs])
    return path


def test_bad_masks_are_named_skipped_with_one_warning_or_raised_in_strict_mode(tmp_path):
    Image.fromarray(np.zeros((20, 30), np.uint8)).save(tmp_path / "image.png")
    Image.fromarray(np.zeros((20, 30), np.uint8)).save(tmp_path / "empty.png")  # no positive pixel: valid
    Image.fromarray(np.zeros((10, 30), np.uint8)).save(tmp_path / "small.png")
    Image.fromarray(np.full((20, 30), 7, np.uint8)).save(tmp_path / "sevens.png")
    csv_path = write_pairs(tmp_path / "pairs.csv", [("image.png", "empty.png"), ("image.png", "small.png"),
                                                    ("image.png", "absent.png"), ("image.png", "sevens.png")])
    with pytest.warns(UserWarning) as caught:
        data = load_segmentation_csv(csv_path)
    messages = " ".join(str(w.message) for w in caught)
    assert "small.png is 30x10" in messages and "absent.png" in messages
    assert [row.split("/")[-1] for row in data["train"]["mask_path"]] == ["empty.png", "sevens.png"]
    assert not read_pair(data["train"][0])[1].any()
    with pytest.raises(ValueError, match=r"sevens.png: expected a binary mask with the values 0/1 or 0/255; "
                                         r"found the values \[7\]"):
        read_pair(data["train"][1])
    with pytest.raises(ValueError, match="absent.png"):
        load_segmentation_csv(csv_path, strict=True)


# ---- loss and metric -------------------------------------------------------------------------------------------------


def test_training_flips_come_from_the_seeded_draws_of_each_sample(tmp_path):
    """Each sample's flip is keyed by (seed, epoch, its row), as the classification crops are: the same in any batch
    and after a resume, new every epoch; image and mask flip together."""
    Image.fromarray(np.tile(np.arange(16, dtype=np.uint8) * 16, (12, 1))).save(tmp_path / "image.png")
    mask = np.zeros((12, 16), dtype=np.uint8)
    mask[:, 0] = 1  # the left column: on the right once flipped
    Image.fromarray(mask * 255).save(tmp_path / "mask.png")
    size = {"height": 12, "width": 16}
    processor = MRMImageProcessor(mode="segmentation", size=size, crop_size=size)
    count = 16
    rows = {"image_path": [str(tmp_path / "image.png")] * count, "mask_path": [str(tmp_path / "mask.png")] * count,
            "rle": [[]] * count, "name": ["x"] * count, SAMPLE_INDEX: list(range(count))}
    draws = SeededDraws(7)
    transform = SegmentationTransform(processor, train=True, seed=draws)

    def flips(batch):
        output = transform(batch)
        flipped = [bool(labels[0, -1]) for labels in output["labels"]]
        assert all(bool(pixels[0, 0, 0] > pixels[0, 0, -1]) == f for pixels, f in zip(output["pixel_values"], flipped))
        return flipped

    first = flips(rows)
    assert 0 < sum(first) < count
    assert flips(rows) == first
    assert flips({key: values[5:9] for key, values in rows.items()}) == first[5:9]
    assert flips({key: values[::-1] for key, values in rows.items()}) == first[::-1]
    draws.set_epoch(1)
    assert flips(rows) != first


def test_focal_loss_is_torchvisions_sigmoid_focal_loss_over_one_hot_classes():
    torch.manual_seed(0)
    logits, labels = torch.randn(2, 2, 5, 4), torch.randint(0, 2, (2, 5, 4))
    one_hot = torch.nn.functional.one_hot(labels, 2).permute(0, 3, 1, 2).float()
    expected = sigmoid_focal_loss(logits, one_hot, alpha=0.5, gamma=2.0, reduction="mean")
    torch.testing.assert_close(focal_loss(logits, labels), expected)


def test_dice_loss_leaves_out_the_background_and_halves_by_the_number_of_classes():
    logits = torch.tensor([[[[0.0, 0.0]], [[np.log(3.0), 0.0]]]])  # foreground probabilities 0.75 and 0.5
    labels = torch.tensor([[[1, 0]]])
    numerator, denominator = 2 * 0.75 + 1, (0.75**2 + 0.5**2) + 1 + 1
    assert dice_loss(logits, labels).item() == pytest.approx((1 - numerator / denominator) / 2)


def test_mask_dice_scores_an_empty_truth_one_only_for_an_empty_prediction():
    truth, prediction = np.zeros((3, 4, 4), np.uint8), np.zeros((3, 4, 4), np.uint8)
    truth[0, :2], prediction[0, :1] = 1, 1  # Dice 2*4/(4+8)
    prediction[2, 3, 3] = 1  # a finding where there is none: 0
    result = load_metric("mask_dice", keep_in_memory=True).compute(predictions=pack_masks(prediction),
                                                                   references=pack_masks(truth))
    assert result["dice"] == pytest.approx((8 / 12 + 1 + 0) / 3)
    assert result["positive_dice"] == pytest.approx(8 / 13) and result["positive_iou"] == pytest.approx(4 / 9)
    assert result["num_empty_references"] == 2


# ---- the script on real lung masks -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lung_run(tmp_path_factory):
    """Four steps of a tiny MRM + UperNet on 24/8/8 real lung masks through `--dataset csv`."""
    folder = shared_path("data", "lung_masks")
    with open(folder / "seg_pairs.csv", newline="") as file:
        rows = [(str(folder / row["image_path"]), str(folder / row["mask_path"])) for row in csv.DictReader(file)]
    tmp = tmp_path_factory.mktemp("lung")
    csvs = {name: write_pairs(tmp / f"{name}.csv", part)
            for name, part in (("train", rows[:24]), ("validation", rows[24:32]), ("test", rows[32:40]))}
    torch.manual_seed(0)
    MRMForPreTraining(backbone_config()).save_pretrained(tmp / "mrm")
    output = tmp / "out"
    results = run_segmentation.main([
        "--model_name_or_path", str(tmp / "mrm"), "--dataset", "csv", "--train_csv", str(csvs["train"]),
        "--validation_csv", str(csvs["validation"]), "--test_csv", str(csvs["test"]), "--image_size", "32",
        "--decoder_channels", "16", "--auxiliary_channels", "8", "--layer_decay", "0.65", "--num_overlays", "2",
        "--output_dir", str(output), "--max_steps", "4", "--eval_strategy", "steps", "--eval_steps", "2",
        "--save_strategy", "steps", "--save_steps", "2", "--per_device_train_batch_size", "8",
        "--per_device_eval_batch_size", "8", "--learning_rate", "1e-3", "--seed", "0", "--use_cpu",
        "--disable_tqdm", "true", "--report_to", "none", "--dataloader_num_workers", "0",
    ])  # fmt: skip
    return output, results, rows[32:40]


def test_test_dice_equals_an_independent_dice_of_the_saved_predictions(lung_run):
    output, _, test_rows = lung_run
    saved = np.load(output / "test_predictions.npz")
    for reference, (_, mask_path) in zip(saved["references"], test_rows):
        mask = np.asarray(Image.open(mask_path).convert("L")) > 0
        expected = np.asarray(Image.fromarray(mask.astype(np.uint8)).resize((32, 32), Image.Resampling.NEAREST))
        assert np.array_equal(reference, expected), mask_path
    scores = []
    for predicted, true in zip(saved["predictions"].astype(bool), saved["references"].astype(bool)):
        total = predicted.sum() + true.sum()
        scores.append(float(predicted.sum() == 0) if true.sum() == 0 else 2 * (predicted & true).sum() / total)
    metrics = json.loads((output / "test_results.json").read_text())
    assert metrics["test_dice"] == pytest.approx(np.mean(scores), abs=1e-12)
    assert metrics["test_num_images"] == 8
    assert json.loads((output / "eval_results.json").read_text())["eval_num_images"] == 8


def test_saved_folder_segments_in_a_pipeline_at_the_input_size(lung_run):
    output, _, test_rows = lung_run
    model = AutoModelForSemanticSegmentation.from_pretrained(output)
    assert type(model) is UperNetForSemanticSegmentation and isinstance(model.backbone, MRMBackbone)
    assert isinstance(MRMImageProcessor.from_pretrained(output), MRMImageProcessor)
    image = Image.open(test_rows[0][0])
    masks = pipeline("image-segmentation", model=str(output))(image)
    assert masks and all(item["mask"].size == image.size for item in masks)
    assert {item["label"] for item in masks} <= {"background", "foreground"}


def test_run_writes_overlays_and_a_card_with_the_test_dice(lung_run):
    output, results, _ = lung_run
    overlays = sorted((output / "overlays").glob("*.png"))
    assert len(overlays) == 2 and Image.open(overlays[0]).size == (3 * 32, 32)
    card = (output / "README.md").read_text()
    assert "pipeline_tag: image-segmentation" in card
    assert f"| Dice, per image (published) | {round(results['test_dice'], 4)} |" in card


def test_siim_recipe_is_the_published_schedule_and_the_command_line_wins():
    model_args, data_args, training_args = run_segmentation.parse_arguments([
        "--model_name_or_path", "m", "--dataset", "csv", "--train_csv", "t.csv", "--recipe", "siim",
        "--label_fraction", "10", "--learning_rate", "1e-4", "--output_dir", "o",
    ])  # fmt: skip
    assert (training_args.max_steps, training_args.warmup_steps, training_args.eval_steps) == (5000, 100, 50)
    assert training_args.learning_rate == 1e-4 and training_args.weight_decay == 0.05
    assert model_args.layer_decay == 0.65 and data_args.image_size == 512


def test_backbone_outputs_follow_a_depth_changed_after_construction(tmp_path):
    """As the pre-training script resizes a default config (`--config_overrides num_hidden_layers=4`)."""
    config = MRMConfig()
    config.update_from_string("num_hidden_layers=4")
    config.save_pretrained(tmp_path)
    reloaded = MRMConfig.from_pretrained(tmp_path)
    assert reloaded.out_indices == [0, 1, 2, 3] and reloaded.stage_names == ["stage1", "stage2", "stage3", "stage4"]
    explicit = MRMConfig(num_hidden_layers=4, out_indices=[1, 3], feature_pyramid_rescales=None)
    explicit.save_pretrained(tmp_path)
    assert MRMConfig.from_pretrained(tmp_path).out_features == ["stage2", "stage4"]
