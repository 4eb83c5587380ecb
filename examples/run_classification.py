#!/usr/bin/env python
"""Fine-tune MRM for chest X-ray classification with the Hugging Face Trainer.

NIH ChestX-ray14 with 1% of the labels and the published recipe, from the converted published MRM:

    python -m mrm_hf.convert --checkpoint MRM.pth --output-dir mrm-base
    python examples/run_classification.py --model_name_or_path mrm-base --dataset nih \
        --data_dir /data/nih-chestxray14 --split_dir MRM-pytorch/DatasetsSplits --label_fraction 1 \
        --recipe nih --output_dir mrm-nih-1pct

The other published tasks (`--recipe` takes the task's learning rate, warm-up and steps as defaults; any value given
on the command line, e.g. `--learning_rate 1e-3`, wins):

    ... --dataset chexpert --data_dir /data --split_dir DatasetsSplits --label_fraction 10 --recipe chexpert
    ... --dataset rsna --data_dir /data/rsna --split_dir DatasetsSplits --label_fraction 1 --recipe rsna
    ... --dataset covid --data_dir covid-chestxray-dataset/images --split_dir DatasetsSplits --covid_task viral \
        --covid_split 3 --recipe covid
    ... --dataset csv --train_csv train.csv --validation_csv val.csv --test_csv test.csv --label_columns a,b,c
    ... --dataset imagefolder --data_dir folder   # folder/{train,validation,test}/<class>/*.png, softmax

The best checkpoint by validation mean AUC is tested; `test_results.json` and `all_results.json` hold the per-class
and mean AUC (null where a class has one label value only), `test_predictions.csv` every test image's logits, and the
output folder works with `pipeline("image-classification", model=output_dir)`.

LoRA instead of full fine-tuning (`pip install 'mrm-hf[lora]'`): `--lora_rank 8` trains rank-8 adapters on each encoder
block's attention projections (`--lora_target_modules qkv,proj,fc1,fc2` adds the MLP) and the head, the encoder
frozen; the output folder then holds the adapters merged into a plain classifier, and `adapter/` the peft adapter.
"""

import copy
import csv
import importlib.util
import logging
import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from datasets import ClassLabel, DatasetDict, Image, load_dataset
from transformers import AutoConfig, AutoTokenizer, HfArgumentParser, TrainingArguments, set_seed

from mrm_hf import MRMConfig, MRMForImageClassification, MRMImageProcessor
from mrm_hf.arguments import check_layer_decay, check_range, recipe_defaults, require_arguments
from mrm_hf.convert import load_mrm_config
from mrm_hf.data import (
    MULTI_LABEL,
    SAMPLE_INDEX,
    ClassificationCollator,
    SeededDraws,
    label_names,
    label_subset,
    load_chexpert,
    load_covid,
    load_csv,
    load_nih,
    load_rsna,
    problem_type_of,
)
from mrm_hf.hub import (
    card_identity,
    card_results,
    check_hub_access,
    option_name,
    schedule_length,
    total_batch,
    write_model_card,
)
from mrm_hf.metrics import make_compute_metrics
from mrm_hf.processing_mrm import encoder_image_processor, processor_for_model
from mrm_hf.training import ClassificationTrainer
from mrm_hf.transforms import FineTuningTransform
from mrm_hf.utils import apply_config_overrides, setup_logging


logger = logging.getLogger(__name__)
MODEL_CARD_TEMPLATE = Path(__file__).resolve().parent.parent / "model_cards" / "mrm_classification.md"


# ---- the published recipes -------------------------------------------------------------------------------------------

# The published fine-tuning is the default: SGD with momentum 0.9 and no weight decay, linear warm-up then cosine decay
# to 0, gradient clipping at 1.0, batch 96 on one GPU, drop_path 0.1, model selection by the validation mean AUC.
# `RECIPES` adds each task's learning rate, warm-up and length, as the authors' fine-tuning scripts set them.
PUBLISHED_DROP_PATH_RATE = 0.1
PUBLISHED_OPTIMIZATION = {
    "optim": "sgd",
    "optim_args": "momentum=0.9",
    "weight_decay": 0.0,
    "lr_scheduler_type": "cosine",
    "max_grad_norm": 1.0,
    "per_device_train_batch_size": 96,
}
# (task, percent of training labels) -> (learning rate, warm-up steps, total steps).
_PUBLISHED_SCHEDULES = {
    ("nih", 1): (3e-2, 50, 3_000),
    ("nih", 10): (3e-3, 500, 30_000),
    ("nih", 100): (3e-3, 5_000, 200_000),
    ("rsna", 1): (3e-3, 50, 2_000),
    ("rsna", 10): (5e-4, 200, 10_000),
    ("rsna", 100): (5e-4, 2_000, 50_000),
    ("chexpert", 1): (3e-3, 150, 2_000),
    ("chexpert", 10): (5e-4, 1_500, 60_000),
    ("chexpert", 100): (5e-4, 15_000, 200_000),
    ("covid", 100): (3e-2, 50, 1_000),
}
RECIPES = {
    key: {**PUBLISHED_OPTIMIZATION, "learning_rate": lr, "warmup_steps": warmup, "max_steps": steps}
    for key, (lr, warmup, steps) in _PUBLISHED_SCHEDULES.items()
}
# The linear layers of an encoder block that LoRA can adapt: attention (fused query-key-value, output) and MLP.
LORA_MODULES = {"qkv": "attention.qkv", "proj": "attention.proj", "fc1": "mlp.fc1", "fc2": "mlp.fc2"}
LORA_DEFAULT_MODULES = ("qkv", "proj")

DATASET_DESCRIPTIONS = {
    "nih": "NIH ChestX-ray14 on the published MRM split (70/10/20 by image, as REFERS; not the official test split)",
    "chexpert": "CheXpert v1.0, the 5 competition labels",
    "rsna": "RSNA Pneumonia Detection Challenge, stage 2 training images, one label (pneumonia)",
    "covid": "COVID-19 image data collection (ieee8023)",
    "csv": "Images and labels listed in CSV files",
    "imagefolder": "An image folder, one sub-folder per class",
}
HUB_DATASET_NAMES = {
    "nih": "nih-chest-xray14",
    "chexpert": "chexpert",
    "rsna": "rsna-pneumonia",
    "covid": "covid-chestxray-dataset",
}


# ---- the command line ------------------------------------------------------------------------------------------------


@dataclass
class ModelArguments:
    """Which MRM checkpoint to fine-tune, and how."""

    model_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "An MRM checkpoint (folder or Hub id): a converted published model (python -m mrm_hf.convert), "
            "the output of run_pretraining.py, an encoder or a classifier. Only the pooling LayerNorm and the head "
            "are new when it has no classifier, or one with another number of classes. Omit it, and pass "
            "--model_type mrm, for the random-initialisation baseline."
        },
    )
    model_type: Literal["mrm"] | None = field(
        default=None,
        metadata={
            "help": "Train a randomly initialised MRM from scratch (the baseline of label-efficiency tables): the "
            "published ViT-B/16 config, or --config_name's, changed by --config_overrides."
        },
    )
    config_name: str | None = field(
        default=None, metadata={"help": "With --model_type: a config (folder or config.json) to build the model from."}
    )
    config_overrides: str | None = field(
        default=None,
        metadata={"help": "With --model_type: config changes, e.g. 'hidden_size=192,num_hidden_layers=4'."},
    )
    drop_path_rate: float | None = field(
        default=None,
        metadata={"help": f"Stochastic depth of the encoder; default {PUBLISHED_DROP_PATH_RATE} (published), 0 for "
                          "--linear_probe."},
    )
    layer_decay: float | None = field(
        default=None,
        metadata={
            "help": "Layer-wise learning-rate decay, e.g. 0.65-0.75: the head keeps the learning rate, encoder block "
            "i (of L) gets decay**(L - i), the embeddings decay**(L + 1). The published fine-tuning used none."
        },
    )
    linear_probe: bool = field(
        default=False,
        metadata={"help": "Freeze everything but the classifier head (the pooling LayerNorm stays as loaded)."},
    )
    lora_rank: int | None = field(
        default=None,
        metadata={
            "help": "Parameter-efficient fine-tuning (needs `pip install 'mrm-hf[lora]'`): freeze the encoder, add "
            "LoRA adapters of this rank to its --lora_target_modules, train them and the classifier head. Saved as a "
            "peft adapter (adapter/) and merged into a plain classifier (the output folder)."
        },
    )
    lora_alpha: float | None = field(
        default=None, metadata={"help": "With --lora_rank: the adapters' scale is alpha / rank; default alpha = rank."}
    )
    lora_dropout: float = field(default=0.0, metadata={"help": "With --lora_rank: dropout on the adapters' input."})
    lora_target_modules: str | None = field(
        default=None,
        metadata={"help": f"With --lora_rank: which of each encoder block's linear layers get adapters, from "
                          f"{list(LORA_MODULES)}; default {','.join(LORA_DEFAULT_MODULES)} (the attention "
                          "projections), all four to add the MLP."},
    )

    def __post_init__(self):
        if (self.model_name_or_path is None) == (self.model_type is None):
            raise ValueError("--model_name_or_path (a checkpoint to fine-tune) or --model_type mrm (a random "
                             "initialisation to train from scratch): expected exactly one; found --model_name_or_path "
                             f"{self.model_name_or_path} and --model_type {self.model_type}.")
        if self.model_name_or_path is not None and (self.config_name or self.config_overrides):
            raise ValueError("--config_name and --config_overrides shape a new model (--model_type mrm): expected them "
                             "only without --model_name_or_path, whose checkpoint keeps its own config; found "
                             f"--model_name_or_path {self.model_name_or_path}.")
        check_layer_decay(self.layer_decay)
        if self.layer_decay is not None and self.linear_probe:
            raise ValueError("--layer_decay scales the encoder's learning rates, which --linear_probe freezes: "
                             "expected one of them; found both.")
        if self.lora_rank is None:
            given = [f"--{name}" for name in ("lora_alpha", "lora_target_modules") if getattr(self, name) is not None]
            given += ["--lora_dropout"] if self.lora_dropout else []
            if given:
                raise ValueError(f"{', '.join(given)} shape LoRA adapters: expected them only with --lora_rank; "
                                 "found no --lora_rank.")
        else:
            self._check_lora()
        if self.drop_path_rate is None:
            self.drop_path_rate = 0.0 if self.linear_probe else PUBLISHED_DROP_PATH_RATE

    def _check_lora(self):
        if self.lora_rank < 1:
            raise ValueError(f"--lora_rank: expected a positive integer; found {self.lora_rank}.")
        for option in ("linear_probe", "layer_decay"):
            if getattr(self, option) not in (None, False):
                raise ValueError(f"--lora_rank trains adapters and the head of a frozen encoder: expected no "
                                 f"--{option} with it; found --{option} {getattr(self, option)}.")
        check_range("--lora_dropout", self.lora_dropout, 0.0, 1.0)
        if self.lora_alpha is None:
            self.lora_alpha = float(self.lora_rank)
        text = self.lora_target_modules or ",".join(LORA_DEFAULT_MODULES)
        modules = [name.strip() for name in text.split(",") if name.strip()]
        unknown = [name for name in modules if name not in LORA_MODULES]
        if unknown or not modules:
            raise ValueError(f"--lora_target_modules: expected names from {list(LORA_MODULES)}; found {text!r}.")
        self.lora_target_modules = ",".join(modules)
        if importlib.util.find_spec("peft") is None:
            raise ImportError("--lora_rank: expected the `peft` package; found it missing. Install it with "
                              "`pip install 'mrm-hf[lora]'` (or `pip install 'peft>=0.18.1'`).")


@dataclass
class DataArguments:
    """Which labelled chest X-rays to train, select and test on."""

    dataset: Literal["nih", "chexpert", "rsna", "covid", "csv", "imagefolder"] = field(
        metadata={
            "help": "nih, chexpert, rsna, covid (the published splits from --split_dir, images below --data_dir), csv "
            "(--train_csv etc.) or imagefolder (--data_dir with train/validation/test folders of class folders)."
        }
    )
    data_dir: str | None = field(default=None, metadata={"help": "Folder holding the dataset's images."})
    split_dir: str | None = field(
        default=None,
        metadata={"help": "The published DatasetsSplits/ folder, or one dataset's folder in it (not shipped)."},
    )
    label_fraction: Literal[1, 10, 100] = field(
        default=100,
        metadata={"help": "Percent of the training labels: picks the published training list and the --recipe; for "
                          "csv and imagefolder, a random subset of the training images drawn with --seed."},
    )
    covid_task: Literal["covid", "viral"] = field(
        default="covid", metadata={"help": "COVID task: covid (COVID-19 vs not) or viral (viral vs bacterial)."}
    )
    covid_split: int = field(default=1, metadata={"help": "Which of the 5 published COVID splits (1-5)."})
    uncertain_policy: Literal["published", "ones", "zeros"] = field(
        default="published",
        metadata={"help": "CheXpert uncertain labels, without --split_dir: published (per class), ones or zeros."},
    )
    train_csv: str | None = field(default=None, metadata={"help": "csv: training images and labels."})
    validation_csv: str | None = field(default=None, metadata={"help": "csv: validation images and labels."})
    test_csv: str | None = field(default=None, metadata={"help": "csv: test images and labels."})
    image_column: str = field(default="image_path", metadata={"help": "csv: the column of image paths."})
    label_columns: str | None = field(
        default=None,
        metadata={"help": "csv: comma-separated label columns (default: every column but the image column)."},
    )
    csv_problem_type: Literal["multi_label_classification", "single_label_classification"] = field(
        default=MULTI_LABEL,
        metadata={"help": "csv: 0/1 label columns (multi-label, BCE) or one column of class ids (softmax)."},
    )
    image_root: str | None = field(
        default=None, metadata={"help": "csv: folder relative image paths start from (default: each CSV's folder)."}
    )
    validation_fraction: float = field(
        default=0.0,
        metadata={"help": "Hold out this fraction of the training images when the dataset has no validation split."},
    )
    crop_min_scale: float = field(
        default=0.08, metadata={"help": "Smallest area fraction of the training RandomResizedCrop (published 0.08)."}
    )
    strict: bool = field(
        default=False, metadata={"help": "Raise at a malformed list line or a listed image missing on disk."}
    )

    def __post_init__(self):
        needs = {"nih": ("data_dir", "split_dir"), "covid": ("data_dir", "split_dir"), "chexpert": ("data_dir",),
                 "rsna": ("data_dir",), "csv": ("train_csv",), "imagefolder": ("data_dir",)}[self.dataset]
        require_arguments(f"--dataset {self.dataset}", self, needs)
        check_range("--validation_fraction", self.validation_fraction, 0.0, 1.0)


@dataclass
class ClassificationTrainingArguments(TrainingArguments):
    """TrainingArguments with the published fine-tuning as defaults, and `--recipe` for each task's schedule."""

    recipe: Literal["nih", "chexpert", "rsna", "covid"] | None = field(
        default=None,
        metadata={
            "help": "Use a published task's learning rate, warm-up and total steps at --label_fraction (with SGD, "
            "batch 96) as defaults; any value given on the command line wins."
        },
    )
    optim: str = field(default="sgd", metadata={"help": "Optimizer (published: SGD)."})
    optim_args: str | None = field(default="momentum=0.9", metadata={"help": "Optimizer options (published momentum)."})
    learning_rate: float = field(default=3e-3, metadata={"help": "Peak learning rate (see --recipe)."})
    lr_scheduler_type: str = field(default="cosine", metadata={"help": "Schedule after the linear warm-up."})
    per_device_train_batch_size: int = field(default=96, metadata={"help": "Training batch per device (published 96)."})
    per_device_eval_batch_size: int = field(default=96, metadata={"help": "Evaluation batch per device."})
    eval_strategy: str = field(default="epoch", metadata={"help": "When to validate (published: every epoch)."})
    save_strategy: str = field(default="epoch", metadata={"help": "When to save; must match --eval_strategy."})
    save_total_limit: int | None = field(
        default=2, metadata={"help": "Checkpoints kept (the best one is always among them)."}
    )
    load_best_model_at_end: bool = field(default=True, metadata={"help": "End with the best validation checkpoint."})
    metric_for_best_model: str | None = field(default="mean_auc", metadata={"help": "Validation metric to select by."})
    greater_is_better: bool | None = field(default=True, metadata={"help": "Whether a larger metric is better."})
    remove_unused_columns: bool = field(default=False, metadata={"help": "Keep the image column for the transform."})


def parse_arguments(argv: list[str] | None = None):
    """(ModelArguments, DataArguments, ClassificationTrainingArguments) from the command line.

    A `--recipe` becomes the parser's defaults before parsing, so every value given on the command line (in any
    spelling argparse accepts: `--lr 1`, `--learning_rate=1`, `--no_...`) overrides it and nothing has to guess
    which arguments were typed.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = HfArgumentParser((ModelArguments, DataArguments, ClassificationTrainingArguments))
    parser.set_defaults(**recipe_defaults(argv, RECIPES))
    return parser.parse_args_into_dataclasses(args=argv)


# ---- data ------------------------------------------------------------------------------------------------------------


def _with_image_paths(dataset: DatasetDict) -> DatasetDict:
    """An `image_path` column from each image's file, for the datasets that lack one (imagefolder)."""
    result = {}
    for split, data in dataset.items():
        paths = [item["path"] for item in data.cast_column("image", Image(decode=False))["image"]]
        result[split] = data.add_column("image_path", paths)
    return DatasetDict(result)


def load_data(data_args: DataArguments, seed: int = 42) -> DatasetDict:
    """The `train`, `validation` (and `test`, when the dataset has one) splits with `image` and `labels` columns."""
    name, strict = data_args.dataset, data_args.strict
    if name == "nih":
        data = load_nih(data_args.data_dir, data_args.split_dir, data_args.label_fraction, strict=strict)
    elif name == "chexpert":
        data = load_chexpert(data_args.data_dir, data_args.split_dir, data_args.label_fraction,
                             data_args.uncertain_policy, strict=strict)
    elif name == "rsna":
        data = load_rsna(data_args.data_dir, data_args.split_dir, data_args.label_fraction, strict=strict)
    elif name == "covid":
        if data_args.label_fraction != 100:
            raise ValueError(
                f"--label_fraction: expected 100 (the COVID splits use all their labels); found "
                f"{data_args.label_fraction}."
            )
        data = load_covid(data_args.data_dir, data_args.split_dir, data_args.covid_task, data_args.covid_split,
                          strict=strict)
    elif name == "csv":
        columns = None if data_args.label_columns is None else [c.strip() for c in data_args.label_columns.split(",")]
        data = load_csv(data_args.train_csv, data_args.validation_csv, data_args.test_csv, data_args.image_column,
                        columns, data_args.csv_problem_type, image_root=data_args.image_root, strict=strict)
    else:
        data = load_dataset("imagefolder", data_dir=data_args.data_dir)
        if "label" not in data["train"].column_names:
            raise ValueError(f"{data_args.data_dir}: expected class sub-folders in each split (a `label` column); "
                             f"found the columns {data['train'].column_names}.")
        data = _with_image_paths(data.rename_column("label", "labels"))

    if "train" not in data:
        raise ValueError(f"--dataset {data_args.dataset}: expected a train split; found {sorted(data)}.")
    if "validation" not in data:
        if not data_args.validation_fraction:
            raise ValueError(f"Model selection needs a validation split: expected one in the {name} data; found only "
                             f"{sorted(data)}. Pass --validation_fraction (e.g. 0.1) to hold out part of the training "
                             "images.")
        stratify = "labels" if isinstance(data["train"].features["labels"], ClassLabel) else None
        held_out = data["train"].train_test_split(data_args.validation_fraction, seed=seed,
                                                  stratify_by_column=stratify)
        data = DatasetDict({**data, "train": held_out["train"], "validation": held_out["test"]})
    if name in ("csv", "imagefolder") and data_args.label_fraction != 100:
        data["train"] = label_subset(data["train"], data_args.label_fraction, seed)
    empty = [split for split, rows in data.items() if len(rows) == 0]
    if empty:
        raise ValueError(f"The {name} data: expected images in every split; found none in {empty}.")
    return data


def prepare(data: DatasetDict, image_processor: MRMImageProcessor, size: int, crop_min_scale: float,
            draws: SeededDraws | None = None) -> DatasetDict:
    """The splits with on-the-fly `pixel_values`: the published augmentation on train, the evaluation view elsewhere.

    With `draws`, each training image's crop and flip come from (seed, epoch, its row), not from torch's global
    generator, which the DataLoader's look-ahead advances before a checkpoint is saved: a resumed run then draws
    what the uninterrupted one drew.
    """
    splits = {}
    for split, rows in data.items():
        if split == "train" and draws is not None:
            rows = rows.remove_columns([c for c in rows.column_names if c == SAMPLE_INDEX])
            rows = rows.add_column(SAMPLE_INDEX, list(range(len(rows))))
        transform = FineTuningTransform(image_processor, train=split == "train", size=size,
                                        scale=(crop_min_scale, 1.0), seed=draws if split == "train" else None)
        splits[split] = rows.with_transform(transform)
    return DatasetDict(splits)


# ---- model -----------------------------------------------------------------------------------------------------------


def source_config(model_args: ModelArguments) -> MRMConfig:
    """The MRM config the model starts from: the checkpoint's, or for `--model_type mrm` the published ViT-B/16 or
    --config_name's (with --config_overrides); an error for a missing checkpoint or another model type."""
    path = model_args.model_name_or_path
    if path is None:
        config = AutoConfig.from_pretrained(model_args.config_name) if model_args.config_name else MRMConfig()
        if not isinstance(config, MRMConfig):
            raise ValueError(f"--config_name {model_args.config_name}: expected an 'mrm' config; found a "
                             f"{config.model_type!r} one.")
        if model_args.config_overrides:
            apply_config_overrides(config, model_args.config_overrides)
        return config
    return load_mrm_config(path, where=f"--model_name_or_path {path}")


def load_model(model_args: ModelArguments, class_names: list[str], problem_type: str) -> MRMForImageClassification:
    """The classifier for these classes from any MRM checkpoint; a head of another size is replaced, and said so.

    Without a checkpoint (`--model_type mrm`), a randomly initialised classifier of the published (or the given)
    config: the baseline that shows what pre-training adds.
    """
    path = model_args.model_name_or_path
    labels = dict(
        num_labels=len(class_names),
        id2label=dict(enumerate(class_names)),
        label2id={name: i for i, name in enumerate(class_names)},
        problem_type=problem_type,
        drop_path_rate=model_args.drop_path_rate,
    )
    config = source_config(model_args)
    if path is None:
        config.update(labels)
        config.validate()
        logger.warning("Training a randomly initialised MRM classifier from scratch (no pre-training).")
        model = MRMForImageClassification(config)
        if model_args.linear_probe:
            freeze_for_linear_probe(model)
        return model
    has_head = any(name.endswith("ForImageClassification") for name in config.architectures or [])
    old_names = [config.id2label[i] for i in sorted(config.id2label)] if has_head else []
    mismatched = has_head and config.num_labels != len(class_names)
    if mismatched:
        logger.warning(
            "%s has a classifier head for %d classes %s; the data has %d classes %s. The head is re-initialised "
            "(the encoder and the pooling LayerNorm are kept).", path, config.num_labels, old_names, len(class_names),
            class_names,
        )  # fmt: skip
    elif has_head and old_names != class_names:
        logger.warning("%s was trained for the classes %s; its head outputs are kept, in order, for %s.", path,
                       old_names, class_names)
    model = MRMForImageClassification.from_pretrained(path, ignore_mismatched_sizes=mismatched, **labels)
    if model_args.linear_probe:
        freeze_for_linear_probe(model)
    return model


def freeze_for_linear_probe(model: MRMForImageClassification) -> list[str]:
    """Leave only the classifier head trainable; return the names of the trainable parameters.

    MAE's linear probe puts a BatchNorm without affine before the head to standardise the features. MRM's pooled
    output is already LayerNorm-ed (the published `fc_norm`), and a BatchNorm would be a module the saved classifier
    (and the pipeline) does not have, so none is added. The pooling LayerNorm stays frozen: its scale and shift would
    only re-parameterise the linear head.
    """
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(name.startswith("classifier."))
    return [name for name, parameter in model.named_parameters() if parameter.requires_grad]


def add_lora_adapters(model: MRMForImageClassification, model_args: ModelArguments):
    """A peft model: LoRA adapters on the encoder blocks' `--lora_target_modules`, the classifier head trained in full
    (`modules_to_save`), everything else frozen (the pooling LayerNorm too, as in the linear probe)."""
    from peft import LoraConfig, get_peft_model

    layers = "|".join(LORA_MODULES[name].replace(".", r"\.") for name in model_args.lora_target_modules.split(","))
    config = LoraConfig(
        r=model_args.lora_rank,
        lora_alpha=model_args.lora_alpha,
        lora_dropout=model_args.lora_dropout,
        target_modules=rf"image_encoder\.layers\.\d+\.({layers})",  # a string is matched in full, here the encoder's
        modules_to_save=["classifier"],
    )
    peft_model = get_peft_model(model, config)
    trainable, total = peft_model.get_nb_trainable_parameters()
    logger.info("LoRA rank %d on %s: %d of %d parameters trainable (adapters and head).", model_args.lora_rank,
                model_args.lora_target_modules, trainable, total)
    return peft_model


def merged_classifier(peft_model) -> MRMForImageClassification:
    """A plain MRMForImageClassification with the adapters folded into the encoder's weights (the trained model is
    left as it is): what `pipeline("image-classification")` and the Auto classes load without peft."""
    return copy.deepcopy(peft_model).merge_and_unload()


def image_processor_for(model: MRMForImageClassification) -> MRMImageProcessor:
    """The published evaluation view (short side, then centre crop) at the model's input size."""
    return encoder_image_processor(model.config.image_size)


def processing_class_for(model: MRMForImageClassification, source: str | None, image_processor: MRMImageProcessor):
    """What the fine-tuned folder carries: an MRMProcessor when the source checkpoint has a report tokenizer (so the
    folder stays a complete MRM record model), else (a random initialisation too) the image processor alone."""
    if source is None or (Path(source).is_dir() and not (Path(source) / "tokenizer.json").is_file()):
        return image_processor
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
    except (OSError, ValueError):
        return image_processor
    return processor_for_model(model, tokenizer, image_processor)


# ---- results and model card ------------------------------------------------------------------------------------------


def json_safe_metrics(metrics: dict, prefix: str, class_names: list[str]) -> dict:
    """Metrics with NaN as None (JSON null), warning about the classes whose AUC is undefined in this split."""
    safe = {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in metrics.items()}
    keys = {name: f"{prefix}_auc_{name}" for name in class_names}
    undefined = [name for name, key in keys.items() if key in safe and safe[key] is None]
    if undefined:
        logger.warning(
            "The %s ROC-AUC is undefined (None) for %s: their labels hold one value only in the %s split%s.", prefix,
            undefined, prefix, "; so is the mean AUC" if safe.get(f"{prefix}_mean_auc") is None else "",
        )  # fmt: skip
    return safe


def printable_metrics(metrics: dict) -> dict:
    """Metrics for `Trainer.log_metrics`, which cannot print None: undefined values as "undefined"."""
    return {k: "undefined" if v is None else v for k, v in metrics.items()}


def write_predictions(path: str | os.PathLike, image_paths: list[str], logits, labels, class_names: list[str],
                      problem_type: str) -> Path:
    """A CSV of each image's labels and logits (`logit_<class>`), the exact values the metrics were computed from."""
    path = Path(path)
    label_header = [f"label_{name}" for name in class_names] if problem_type == MULTI_LABEL else ["label"]
    with open(path, "w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(["image_path", *label_header, *(f"logit_{name}" for name in class_names)])
        for image, label, logit in zip(image_paths, labels, logits):
            label = [int(v) for v in label] if problem_type == MULTI_LABEL else [int(label)]
            writer.writerow([image, *label, *(repr(float(v)) for v in logit)])
    return path


def model_card_fields(
    model: MRMForImageClassification,
    model_args: ModelArguments,
    data_args: DataArguments,
    training_args: ClassificationTrainingArguments,
    num_train_images: int,
) -> dict:
    """What `model_cards/mrm_classification.md` needs besides the results."""
    config = model.config
    description = DATASET_DESCRIPTIONS[data_args.dataset]
    if data_args.dataset in ("nih", "chexpert", "rsna") and data_args.split_dir is not None:
        description += f", {data_args.label_fraction}% of the training labels (the published list)"
    if data_args.dataset in ("csv", "imagefolder") and data_args.label_fraction != 100:
        description += f", {data_args.label_fraction}% of the training labels (a random subset, seed {training_args.seed})"
    if data_args.dataset == "covid":
        description += f", task {data_args.covid_task}, published split {data_args.covid_split}"
    if training_args.recipe is not None:
        recipe_text = f"published {training_args.recipe} recipe at {data_args.label_fraction}% labels"
    else:
        recipe_text = "none (arguments as given)"
    return dict(
        **card_identity(training_args, model_args.model_name_or_path),
        license="mit",
        # None of these datasets is on the Hub under these names: tags name them without linking a missing page.
        tags=["image-classification", data_args.dataset, *([HUB_DATASET_NAMES[data_args.dataset]]
                                                           if data_args.dataset in HUB_DATASET_NAMES else [])],
        pipeline_tag="image-classification",
        source_model=model_args.model_name_or_path or "a random initialisation (no pre-training: the baseline)",
        dataset_description=f"{description}: {num_train_images} training images.",
        class_names=list(config.id2label[i] for i in sorted(config.id2label)),
        multi_label=config.problem_type == MULTI_LABEL,
        image_size=config.image_size,
        hyperparameters={
            "encoder": f"ViT, {config.num_hidden_layers} layers, width {config.hidden_size}, patch {config.patch_size}",
            "head": "linear on the mean patch token, after LayerNorm" + training_mode(model_args),
            "loss": "binary cross-entropy with logits" if config.problem_type == MULTI_LABEL else "cross-entropy",
            "recipe": recipe_text,
            "optimizer": f"{option_name(training_args.optim)} ({training_args.optim_args or 'defaults'}), weight decay "
            f"{training_args.weight_decay}",
            "learning rate": f"{training_args.learning_rate:g} ({option_name(training_args.lr_scheduler_type)}, "
            f"warm-up {training_args.warmup_steps:g} steps)",
            "layer-wise lr decay": model_args.layer_decay if model_args.layer_decay is not None else "none",
            "drop path": model_args.drop_path_rate,
            "total batch": total_batch(training_args),
            "length": schedule_length(training_args),
            "gradient clipping": training_args.max_grad_norm,
            "model selection": f"best validation {training_args.metric_for_best_model}",
        },
    )


def training_mode(model_args: ModelArguments) -> str:
    """What was trained besides the head, as the model card says it."""
    if model_args.linear_probe:
        return " (linear probe: only the head trained)"
    if model_args.lora_rank is not None:
        return (f" (LoRA: the head and rank-{model_args.lora_rank} adapters, alpha {model_args.lora_alpha:g}, dropout "
                f"{model_args.lora_dropout:g}, on the encoder's {model_args.lora_target_modules} trained; the encoder "
                "frozen, the adapters merged into it)")
    return ""


def card_eval_results(metrics: dict, class_names: list[str], dataset: str) -> list:
    """The card's `model-index`: the mean and per-class ROC-AUC of the split `card_results` reports."""
    from huggingface_hub import EvalResult

    card = card_results(metrics, auc_names(class_names))
    split, results = card["results_split"], card["metrics"]
    name = DATASET_DESCRIPTIONS.get(dataset, dataset).split(" (")[0]
    return [
        EvalResult(task_type="image-classification", dataset_type=HUB_DATASET_NAMES.get(dataset, dataset),
                   dataset_name=name, dataset_split=split, metric_type="roc_auc", metric_name=metric,
                   metric_value=value)
        for metric, value in results.items() if value is not None
    ]


def auc_names(class_names: list[str]) -> dict[str, str]:
    """The card's names of the AUCs (`card_results`): the mean, then each class's."""
    return {"mean_auc": "mean AUC", **{f"auc_{name}": f"AUC {name}" for name in class_names}}


# ---- the run ---------------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> dict:
    model_args, data_args, training_args = parse_arguments(argv)
    setup_logging(training_args.get_process_log_level())
    check_hub_access(training_args)

    set_seed(training_args.seed)
    data = load_data(data_args, training_args.seed)
    class_names, problem_type = label_names(data["train"]), problem_type_of(data)
    logger.info("%s: %s, classes %s, %s", data_args.dataset, {k: len(v) for k, v in data.items()}, class_names,
                problem_type)
    model = load_model(model_args, class_names, problem_type)
    image_processor = image_processor_for(model)
    processing_class = processing_class_for(model, model_args.model_name_or_path, image_processor)
    draws = SeededDraws(training_args.seed)
    splits = prepare(data, image_processor, model.config.image_size, data_args.crop_min_scale, draws)

    results = {}
    trainer = ClassificationTrainer(
        model=model if model_args.lora_rank is None else add_lora_adapters(model, model_args),
        args=training_args,
        train_dataset=splits["train"],
        eval_dataset=splits["validation"],
        data_collator=ClassificationCollator(problem_type),
        processing_class=processing_class,
        compute_metrics=make_compute_metrics(class_names, problem_type),
        layer_decay=model_args.layer_decay,
        draws=draws,
        model_card=lambda folder: write_model_card(
            folder,
            MODEL_CARD_TEMPLATE,
            **card_results(results, auc_names(class_names)),
            eval_results=card_eval_results(results, class_names, data_args.dataset),
            **model_card_fields(model, model_args, data_args, training_args, len(data["train"])),
        ),
    )
    train_result = trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    metrics = {**train_result.metrics, "train_samples": len(data["train"])}
    trainer.log_metrics("train", metrics)
    trainer.save_metrics("train", metrics)
    trainer.save_state()

    metrics = json_safe_metrics(trainer.evaluate(), "eval", class_names)
    metrics["eval_samples"] = len(data["validation"])
    trainer.log_metrics("eval", printable_metrics(metrics))
    trainer.save_metrics("eval", metrics)
    results.update(metrics)

    if "test" in splits:
        prediction = trainer.predict(splits["test"], metric_key_prefix="test")
        metrics = {**json_safe_metrics(prediction.metrics, "test", class_names), "test_samples": len(data["test"])}
        trainer.log_metrics("test", printable_metrics(metrics))
        trainer.save_metrics("test", metrics)  # test_results.json, and all_results.json with train and eval
        results.update(metrics)
        if trainer.is_world_process_zero():
            write_predictions(Path(training_args.output_dir) / "test_predictions.csv", data["test"]["image_path"],
                              prediction.predictions, prediction.label_ids, class_names, problem_type)
    else:
        logger.warning("The %s data has no test split: only the validation AUC is reported.", data_args.dataset)

    # The best checkpoint, with the image processor and the code for trust_remote_code; saved last because with
    # --push_to_hub Trainer uploads the whole folder here, model card and test results included. With LoRA the folder
    # holds the merged classifier, and adapter/ the peft adapter (adapter_config.json, adapter_model.safetensors).
    if model_args.lora_rank is not None and trainer.is_world_process_zero():
        merged_classifier(trainer.model).save_pretrained(training_args.output_dir)
        processing_class.save_pretrained(training_args.output_dir)
    trainer.save_model(None if model_args.lora_rank is None else str(Path(training_args.output_dir) / "adapter"))
    if not training_args.push_to_hub:
        trainer.create_model_card()
    return results


if __name__ == "__main__":
    main()
