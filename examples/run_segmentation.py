#!/usr/bin/env python
"""Fine-tune MRM for segmentation (UperNet on the MRM encoder) with the Hugging Face Trainer.

SIIM-ACR pneumothorax with the published recipe, from the converted published MRM:

    python -m mrm_hf.convert --checkpoint MRM.pth --output-dir mrm-base
    python examples/run_segmentation.py --model_name_or_path mrm-base --dataset siim \
        --data_dir siim/dicom-images-train --rle_csv siim/train-rle.csv \
        --split_dir MRM-pytorch/DatasetsSplits --label_fraction 100 --recipe siim --output_dir mrm-siim

`--recipe siim` is the published MMSegmentation config (512 px; AdamW lr 2e-5, betas (0.9, 0.999), weight decay 0.05,
layer-wise lr decay 0.65; linear warm-up then poly (power 1) decay; 160k iterations at 100% of the labels, 5k at 10%;
total batch 8; validation every 500 or 50 iterations); anything given on the command line wins. PNG/JPEG images with
PNG masks: `--data_dir images --mask_dir masks` instead of `--rle_csv`. Any image/mask pairs:

    ... --dataset csv --train_csv train.csv --validation_csv val.csv --test_csv test.csv \
        --image_column image_path --mask_column mask_path

The best checkpoint by validation Dice (the published per-image Dice) is tested: `test_results.json` holds the
test Dice, `test_predictions.npz` every predicted and true mask it was computed from, `overlays/` a few validation
images with their true (green) and predicted (red) masks, and the output folder works with
`AutoModelForSemanticSegmentation.from_pretrained(output_dir)` and `pipeline("image-segmentation", model=output_dir)`
after `import mrm_hf`, or with `trust_remote_code=True` where mrm_hf is not installed.
"""

import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from datasets import DatasetDict
from PIL import Image
from transformers import HfArgumentParser, TrainingArguments, set_seed

from mrm_hf import MRMImageProcessor
from mrm_hf.arguments import check_layer_decay, check_range, recipe_defaults, require_arguments
from mrm_hf.data.collator import collate_segmentation
from mrm_hf.data.seeding import SAMPLE_INDEX, SeededDraws
from mrm_hf.data.segmentation import (
    SIIM_LABEL_FRACTIONS,
    check_rle_encoding,
    check_siim_label_fraction,
    load_segmentation_csv,
    load_siim,
)
from mrm_hf.figures import tint
from mrm_hf.hub import (
    card_identity,
    card_results,
    check_hub_access,
    option_name,
    schedule_length,
    total_batch,
    write_model_card,
)
from mrm_hf.image_processing_mrm import MRM_MEAN, MRM_STD
from mrm_hf.metrics import load_metric, pack_masks
from mrm_hf.segmentation import PUBLISHED_AUXILIARY_CHANNELS, PUBLISHED_DECODER_CHANNELS, build_segmentation_model
from mrm_hf.training import ClassificationTrainer, decay_parameter_names
from mrm_hf.transforms import SegmentationTransform
from mrm_hf.utils import setup_logging


logger = logging.getLogger(__name__)
MODEL_CARD_TEMPLATE = Path(__file__).resolve().parent.parent / "model_cards" / "mrm_segmentation.md"

# The published SIIM-ACR fine-tuning (its MMSegmentation 0.25 config and ft.sh): what both label fractions share, then
# each one's schedule.
PUBLISHED_SIIM = {
    "image_size": 512,
    "drop_path_rate": 0.1,
    "layer_decay": 0.65,
    "optim": "adamw_torch",
    "learning_rate": 2e-5,
    "adam_beta1": 0.9,
    "adam_beta2": 0.999,
    "weight_decay": 0.05,
    "lr_scheduler_type": "linear",  # warm-up, then poly with power 1 down to 0
    "per_device_train_batch_size": 8,  # 4 GPUs x 2 in the published ft.sh
    "eval_strategy": "steps",
    "save_strategy": "steps",
}
RECIPES = {
    ("siim", 100): {**PUBLISHED_SIIM, "warmup_steps": 1_500, "max_steps": 160_000, "eval_steps": 500, "save_steps": 500},
    ("siim", 10): {**PUBLISHED_SIIM, "warmup_steps": 100, "max_steps": 5_000, "eval_steps": 50, "save_steps": 50},
}
DATASET_DESCRIPTIONS = {
    "siim": "SIIM-ACR Pneumothorax Segmentation on the published MRM split",
    "csv": "Image/mask pairs listed in CSV files",
}


# ---- arguments -------------------------------------------------------------------------------------------------------


@dataclass
class ModelArguments:
    """Which MRM checkpoint the encoder comes from, and the heads on it."""

    model_name_or_path: str = field(
        metadata={"help": "An MRM checkpoint (folder or Hub id): a converted published model (python -m "
                          "mrm_hf.convert), the output of run_pretraining.py, an encoder or a classifier. The neck and "
                          "the UperNet heads are new."}
    )
    drop_path_rate: float = field(default=0.1, metadata={"help": "Stochastic depth of the encoder (published 0.1)."})
    layer_decay: float | None = field(
        default=None,
        metadata={"help": "Layer-wise learning-rate decay (published 0.65): the heads and neck keep the learning rate, "
                          "encoder block i (of L) gets decay**(L - i), the embeddings decay**(L + 1)."},
    )
    decoder_channels: int = field(
        default=PUBLISHED_DECODER_CHANNELS, metadata={"help": "Channels of the UperNet head (published 768)."}
    )
    auxiliary_channels: int = field(
        default=PUBLISHED_AUXILIARY_CHANNELS, metadata={"help": "Channels of the auxiliary FCN head (published 256)."}
    )

    def __post_init__(self):
        check_layer_decay(self.layer_decay)


@dataclass
class DataArguments:
    """Which image/mask pairs to train, select and test on."""

    dataset: Literal["siim", "csv"] = field(
        metadata={"help": "siim (the published split lists from --split_dir, images below --data_dir, masks from "
                          "--rle_csv or --mask_dir) or csv (--train_csv etc.)."}
    )
    data_dir: str | None = field(default=None, metadata={"help": "siim: the folder holding the images (any layout)."})
    split_dir: str | None = field(
        default=None, metadata={"help": "siim: the published DatasetsSplits/ folder, or its SIIM-ACR folder."}
    )
    label_fraction: int = field(
        default=100, metadata={"help": f"siim: percent of the training labels, one of {SIIM_LABEL_FRACTIONS}."}
    )
    rle_csv: str | None = field(default=None, metadata={"help": "siim: the Kaggle RLE CSV (train-rle.csv)."})
    rle_encoding: str = field(
        default="relative",
        metadata={"help": "siim: relative (train-rle.csv: gaps between runs) or absolute (stage_2_train.csv: "
                          "1-based starts)."},
    )
    mask_dir: str | None = field(default=None, metadata={"help": "siim: the folder of PNG masks named <id>.png."})
    train_csv: str | None = field(default=None, metadata={"help": "csv: training pairs."})
    validation_csv: str | None = field(default=None, metadata={"help": "csv: validation pairs."})
    test_csv: str | None = field(default=None, metadata={"help": "csv: test pairs."})
    image_column: str = field(default="image_path", metadata={"help": "csv: the column of image paths."})
    mask_column: str = field(default="mask_path", metadata={"help": "csv: the column of mask paths."})
    validation_fraction: float = field(
        default=0.0, metadata={"help": "Hold out this fraction of the training pairs when there is no validation split."}
    )
    test_fraction: float = field(
        default=0.0, metadata={"help": "Hold out this fraction of the training pairs when there is no test split."}
    )
    image_size: int = field(default=512, metadata={"help": "Side of the square the images are resized to (published 512)."})
    label_name: str | None = field(
        default=None, metadata={"help": "Name of the positive class (default: pneumothorax for siim, else foreground)."}
    )
    num_overlays: int = field(default=4, metadata={"help": "Validation images drawn with their true and predicted masks."})
    strict: bool = field(
        default=False, metadata={"help": "Raise at a missing file, a mask of another size or an RLE row without an image."}
    )

    def __post_init__(self):
        needs = {"siim": ("data_dir", "split_dir"), "csv": ("train_csv",)}[self.dataset]
        require_arguments(f"--dataset {self.dataset}", self, needs)
        if self.dataset == "siim" and (self.rle_csv is None) == (self.mask_dir is None):
            raise ValueError("--dataset siim: expected the masks from one place, --rle_csv or --mask_dir; found "
                             f"{'both' if self.rle_csv else 'neither'}.")
        if self.dataset == "siim":
            check_siim_label_fraction(self.label_fraction)
        check_rle_encoding(self.rle_encoding)
        for split in ("validation", "test"):
            fraction = getattr(self, f"{split}_fraction")
            check_range(f"--{split}_fraction", fraction, 0.0, 1.0)
            if fraction and getattr(self, f"{split}_csv") is not None:
                raise ValueError(f"--{split}_fraction: expected it only without --{split}_csv (it holds out {split} pairs "
                                 f"from the training CSV when there is no {split} CSV); found both. Drop one.")
        if self.label_name is None:
            self.label_name = "pneumothorax" if self.dataset == "siim" else "foreground"


@dataclass
class SegmentationTrainingArguments(TrainingArguments):
    """TrainingArguments for segmentation, and `--recipe siim` for the published schedule."""

    recipe: Literal["siim"] | None = field(
        default=None,
        metadata={"help": "The published SIIM-ACR recipe at --label_fraction as defaults; any value given on the "
                          "command line wins."},
    )
    eval_strategy: str = field(default="epoch", metadata={"help": "When to validate."})
    save_strategy: str = field(default="epoch", metadata={"help": "When to save; must match --eval_strategy."})
    save_total_limit: int | None = field(default=2, metadata={"help": "Checkpoints kept (the best one among them)."})
    load_best_model_at_end: bool = field(default=True, metadata={"help": "End with the best validation checkpoint."})
    metric_for_best_model: str | None = field(default="dice", metadata={"help": "Validation metric to select by."})
    greater_is_better: bool | None = field(default=True, metadata={"help": "Whether a larger metric is better."})
    remove_unused_columns: bool = field(default=False, metadata={"help": "Keep the path columns for the transform."})


def parse_arguments(argv: list[str] | None = None):
    """(ModelArguments, DataArguments, SegmentationTrainingArguments); `--recipe` becomes the parser's defaults, so
    every value given on the command line overrides it."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = HfArgumentParser((ModelArguments, DataArguments, SegmentationTrainingArguments))
    parser.set_defaults(**recipe_defaults(argv, RECIPES))
    return parser.parse_args_into_dataclasses(args=argv)


# ---- data ------------------------------------------------------------------------------------------------------------


def load_data(data_args: DataArguments, seed: int) -> DatasetDict:
    """The `train`, `validation` (and `test`) splits of image/mask rows; held-out fractions where a split is absent."""
    if data_args.dataset == "siim":
        data = load_siim(data_args.data_dir, data_args.split_dir, data_args.label_fraction, data_args.rle_csv,
                         data_args.mask_dir, data_args.rle_encoding, strict=data_args.strict)
    else:
        data = load_segmentation_csv(data_args.train_csv, data_args.validation_csv, data_args.test_csv,
                                     data_args.image_column, data_args.mask_column, strict=data_args.strict)
    for split, fraction in (("test", data_args.test_fraction), ("validation", data_args.validation_fraction)):
        if split not in data and fraction:
            held_out = data["train"].train_test_split(fraction, seed=seed)
            data = DatasetDict({**data, "train": held_out["train"], split: held_out["test"]})
    if "validation" not in data:
        raise ValueError(f"Model selection: expected a validation split; found {sorted(data)}. Pass --validation_csv "
                         "or --validation_fraction (e.g. 0.15).")
    empty = [split for split, rows in data.items() if len(rows) == 0]
    if empty:
        raise ValueError(f"The splits: expected image/mask pairs in each; found none in {empty}.")
    return data


# ---- training --------------------------------------------------------------------------------------------------------


class SegmentationTrainer(ClassificationTrainer):
    """The fine-tuning Trainer (layer-wise lr decay, model card) with the published weight decay: none on 1-D
    parameters (biases, LayerNorm and BatchNorm) and none on the position table (MMSegmentation's `pos_embed`)."""

    def get_decay_parameter_names(self, model) -> list[str]:
        return [name for name in decay_parameter_names(model) if not name.endswith("position_embeddings")]


def write_overlay(path, pixel_values: np.ndarray, true_mask: np.ndarray, predicted_mask: np.ndarray) -> Path:
    """A PNG of three panels: the image, the true mask (green) and the predicted mask (red) over it."""
    gray = np.clip(pixel_values[0] * MRM_STD + MRM_MEAN, 0.0, 1.0)
    gray = (gray * 255).astype(np.uint8)
    panels = [tint(gray, np.zeros_like(gray)), tint(gray, true_mask, (0, 255, 0)), tint(gray, predicted_mask)]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.concatenate(panels, axis=1)).save(path)
    return path


def predicted_masks(logits, labels) -> torch.Tensor:
    """Class ids (uint8) instead of logits, so that evaluation gathers 1/8 of the bytes."""
    logits = logits[0] if isinstance(logits, (tuple, list)) else logits
    return logits.argmax(dim=1).to(torch.uint8)


def model_card_fields(model, model_args, data_args, training_args, num_train: int) -> dict:
    """What `model_cards/mrm_segmentation.md` needs besides the results."""
    backbone = model.config.backbone_config
    description = DATASET_DESCRIPTIONS[data_args.dataset]
    if data_args.dataset == "siim":
        description += f", {data_args.label_fraction}% of the training labels"
    return dict(
        **card_identity(training_args, model_args.model_name_or_path),
        datasets=["siim-acr-pneumothorax"] if data_args.dataset == "siim" else None,
        tags=["image-segmentation", "upernet", data_args.dataset],
        pipeline_tag="image-segmentation",
        source_model=model_args.model_name_or_path,
        label_name=data_args.label_name,
        dataset_description=f"{description}: {num_train} training images.",
        image_size=data_args.image_size,
        hyperparameters={
            "encoder": f"MRM ViT, {backbone.num_hidden_layers} blocks, width {backbone.hidden_size}, patch "
            f"{backbone.patch_size}; feature maps of blocks {backbone.out_indices} (0-based), Feature2Pyramid "
            f"{list(backbone.feature_pyramid_rescales or [])}",
            "decoder": f"UperNet, {model.config.hidden_size} channels; auxiliary FCN head, "
            f"{model.config.auxiliary_channels} channels",
            "loss": "focal x 2 + Dice (background weight 0) x 1, auxiliary head x 0.4",
            "recipe": f"published SIIM-ACR at {data_args.label_fraction}%" if training_args.recipe else "as given",
            "optimizer": f"{option_name(training_args.optim)}, betas "
            f"({training_args.adam_beta1}, {training_args.adam_beta2}), weight decay {training_args.weight_decay}",
            "learning rate": f"{training_args.learning_rate:g}, warm-up {training_args.warmup_steps:g} steps, then "
            f"{option_name(training_args.lr_scheduler_type)}",
            "layer-wise lr decay": model_args.layer_decay if model_args.layer_decay is not None else "none",
            "drop path": model_args.drop_path_rate,
            "input": f"{data_args.image_size} x {data_args.image_size}, random horizontal flip",
            "total batch": total_batch(training_args),
            "length": schedule_length(training_args),
            "model selection": f"best validation {training_args.metric_for_best_model}",
        },
    )


# The card's names of the Dice and IoU results (`card_results`).
CARD_METRICS = {"dice": "Dice, per image (published)", "dice_positive_images": "Dice, images with a finding",
                "positive_dice": "Dice of the positive class", "positive_iou": "IoU of the positive class"}


def main(argv: list[str] | None = None) -> dict:
    model_args, data_args, training_args = parse_arguments(argv)
    setup_logging(training_args.get_process_log_level())
    check_hub_access(training_args)

    set_seed(training_args.seed)
    data = load_data(data_args, training_args.seed)
    logger.info("%s: %s", data_args.dataset, {split: len(rows) for split, rows in data.items()})
    model = build_segmentation_model(
        model_args.model_name_or_path,
        label_names=("background", data_args.label_name),
        drop_path_rate=model_args.drop_path_rate,
        decoder_channels=model_args.decoder_channels,
        auxiliary_channels=model_args.auxiliary_channels,
    )
    size = {"height": data_args.image_size, "width": data_args.image_size}
    # Saved with its code, as the UperNet is: the folder opens with trust_remote_code where mrm_hf is not installed.
    image_processor = MRMImageProcessor(mode="segmentation", size=size, crop_size=size)
    # Each training image's flip comes from (seed, epoch, its row), so a resumed run flips what the uninterrupted one
    # flipped (as run_classification.py's crops).
    draws = SeededDraws(training_args.seed)
    splits = DatasetDict({
        split: (rows.add_column(SAMPLE_INDEX, list(range(len(rows)))) if split == "train" else rows).with_transform(
            SegmentationTransform(image_processor, train=split == "train", rle_encoding=data_args.rle_encoding,
                                  seed=draws if split == "train" else None))
        for split, rows in data.items()
    })  # fmt: skip

    metric = load_metric("mask_dice", keep_in_memory=True)

    def compute_metrics(eval_pred) -> dict:
        return metric.compute(predictions=pack_masks(eval_pred.predictions), references=pack_masks(eval_pred.label_ids))

    results = {}
    trainer = SegmentationTrainer(
        model=model,
        args=training_args,
        train_dataset=splits["train"],
        eval_dataset=splits["validation"],
        data_collator=collate_segmentation,
        processing_class=image_processor,
        compute_metrics=compute_metrics,
        preprocess_logits_for_metrics=predicted_masks,
        layer_decay=model_args.layer_decay,
        draws=draws,
        model_card=lambda folder: write_model_card(
            folder,
            MODEL_CARD_TEMPLATE,
            **card_results(results, CARD_METRICS),
            **model_card_fields(model, model_args, data_args, training_args, len(data["train"])),
        ),
    )
    train_result = trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    metrics = {**train_result.metrics, "train_samples": len(data["train"])}
    trainer.log_metrics("train", metrics)
    trainer.save_metrics("train", metrics)
    trainer.save_state()

    metrics = {**trainer.evaluate(), "eval_samples": len(data["validation"])}
    trainer.log_metrics("eval", metrics)
    trainer.save_metrics("eval", metrics)
    results.update(metrics)

    output_dir = Path(training_args.output_dir)
    if "test" in splits:
        prediction = trainer.predict(splits["test"], metric_key_prefix="test")
        metrics = {**prediction.metrics, "test_samples": len(data["test"])}
        trainer.log_metrics("test", metrics)
        trainer.save_metrics("test", metrics)  # test_results.json, and all_results.json with train and eval
        results.update(metrics)
        if trainer.is_world_process_zero():
            np.savez_compressed(output_dir / "test_predictions.npz", predictions=prediction.predictions,
                                references=prediction.label_ids, image_path=np.asarray(data["test"]["image_path"]))
    else:
        logger.warning("The %s data has no test split: only the validation Dice is reported.", data_args.dataset)

    count = min(data_args.num_overlays, len(data["validation"]))
    if count and trainer.is_world_process_zero():
        shown = splits["validation"].select(range(count))
        prediction = trainer.predict(shown, metric_key_prefix="overlay")
        for index, (example, predicted) in enumerate(zip(shown, prediction.predictions)):
            name = Path(data["validation"][index]["image_path"]).stem
            write_overlay(output_dir / "overlays" / f"{index:02d}_{name}.png", example["pixel_values"],
                          example["labels"], predicted)

    # The best checkpoint with its image processor; saved last because with --push_to_hub Trainer uploads the whole
    # folder here, model card, figures and test results included.
    trainer.save_model()
    if not training_args.push_to_hub:
        trainer.create_model_card()
    return results


if __name__ == "__main__":
    main()
