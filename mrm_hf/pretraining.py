"""MRM pre-training, shared by `examples/run_pretraining.py` (Trainer) and `run_pretraining_no_trainer.py` (Accelerate).

The published recipe (MRM_NOTES §2) is the default: AdamW with betas (0.9, 0.95), weight decay 0.05, lr = 1.5e-4 x
total batch / 256 at an effective batch of 256, 40 warm-up epochs of 200 then cosine. The scripts only wire
arguments, data and these pieces together.
"""

import contextlib
import json
import logging
import os
import shutil
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from datasets import DatasetDict, Image as ImageFeature, load_from_disk
from PIL import Image, ImageDraw
from safetensors import safe_open
from transformers import AutoTokenizer, PreTrainedTokenizerBase, Trainer, TrainerCallback, TrainingArguments
from transformers.trainer import TRAINER_STATE_NAME
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, rotate_checkpoints

from .configuration_mrm import MRMConfig
from .data import DataCollatorForMRM, demo_report_texts, load_mimic_cxr, load_training_csv, make_demo_records
from .data.seeding import SAMPLE_INDEX, SeededDraws
from .image_processing_mrm import MRMImageProcessor
from .modeling_mrm import MRMForPreTraining
from .processing_mrm import encoder_image_processor
from .report_filling import report_loss_by_image
from .tokenization_mrm import load_published_tokenizer, train_report_tokenizer, vocabulary_tokenizer
from .training import decay_parameter_names
from .transforms import DecodeTransform, DeviceAugmentation, PretrainingTransform


logger = logging.getLogger(__name__)

BASE_LEARNING_RATE = 1.5e-4
EFFECTIVE_BATCH_SIZE = 256
EPOCHS = 200
WARMUP_EPOCHS = 40
DATASETS = ("demo", "mimic", "training_csv", "disk")


@dataclass
class ModelArguments:
    """What to pre-train, and with which report vocabulary."""

    model_name_or_path: str | None = field(
        default=None,
        metadata={"help": "An MRM checkpoint to continue from; its tokenizer and image processor are reused."},
    )
    config_overrides: str | None = field(
        default=None,
        metadata={"help": "Config changes for a new model, e.g. 'hidden_size=192,num_hidden_layers=4'."},
    )
    init_encoder_from: str | None = field(
        default=None,
        metadata={
            "help": "An MRMModel folder to start the encoder from, as the published pre-training started from MAE's "
            "ImageNet ViT-B (convert it with `python -m mrm_hf.convert --checkpoint mae_pretrain_vit_base.pth`)."
        },
    )
    tokenizer_name: str | None = field(
        default=None,
        metadata={
            "help": "A tokenizer folder, a tokenizers JSON such as the published mimic_wordpiece.json, or `demo` (every "
            "word of the demo's report templates: the same ids on every run). Without one, a WordPiece vocabulary is "
            "trained on the training reports the published way."
        },
    )
    tokenizer_vocab_size: int = field(default=30000, metadata={"help": "Vocabulary size when training a tokenizer."})
    image_only: bool = field(
        default=False,
        metadata={
            "help": "Pre-train on images alone (MRM's image branch: MAE with high-resolution targets), e.g. for "
            "unpaired images or the ablation against image-only MAE: no tokenizer, no report branch; the records "
            "need only an `image` column."
        },
    )


@dataclass
class DataArguments:
    """Where the image-report records come from, and how they are augmented and masked."""

    dataset: str = field(
        default="demo",
        metadata={
            "help": "demo (built-in synthetic records), mimic (MIMIC-CXR-JPG at --data_dir), training_csv (the "
            "published format at --training_csv) or disk (a datasets folder saved with save_to_disk at --data_dir, "
            "with `image` and `report` columns)."
        },
    )
    data_dir: str | None = field(default=None, metadata={"help": "MIMIC-CXR-JPG root, or the saved datasets folder."})
    reports: str | None = field(default=None, metadata={"help": "MIMIC-CXR reports zip or folder, if not in data_dir."})
    image_root: str | None = field(
        default=None, metadata={"help": "Resized image copy (mimic) or the folder image paths are relative to (csv)."}
    )
    image_suffix: str = field(default="", metadata={"help": "Suffix of resized image names, e.g. '-512'."})
    training_csv: str | None = field(default=None, metadata={"help": "A published-format training.csv."})
    views: str = field(default="PA,AP", metadata={"help": "MIMIC-CXR views to keep, comma-separated."})
    report_sections: str = field(
        default="full",
        metadata={"help": "full (the whole report, as published), findings_impression, or impression."},
    )
    validation_fraction: float = field(
        default=0.0, metadata={"help": "Fraction of the training records held out when there is no validation split."}
    )
    max_train_samples: int | None = field(default=None, metadata={"help": "Use at most this many training records."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Use at most this many validation records."})
    demo_num_records: int = field(default=2000, metadata={"help": "Synthetic training records (demo)."})
    demo_num_validation: int = field(default=200, metadata={"help": "Synthetic held-out records (demo)."})
    demo_image_size: int = field(default=128, metadata={"help": "Side of the synthetic images (demo)."})
    crop_min_scale: float = field(default=0.2, metadata={"help": "Smallest area fraction of the random crop."})
    hflip_probability: float = field(
        default=0.5,
        metadata={"help": "Horizontal flip probability (published 0.5; it makes left/right report words unlearnable)."},
    )
    mlm_probability: float = field(default=0.5, metadata={"help": "Fraction of report words masked."})
    label_mode: str = field(
        default="masked",
        metadata={"help": "masked: loss on masked tokens only (the paper); all: every position (the published code)."},
    )
    published_masking: bool = field(
        default=False, metadata={"help": "Reproduce the published masking loop's quirks (last position never masked)."}
    )
    strict: bool = field(default=False, metadata={"help": "Stop at the first unusable record instead of skipping it."})
    fast_decode: bool = field(
        default=True,
        metadata={
            "help": "Decode 8-bit JPEGs (and prepared records) only as finely as the crop needs, in grayscale; "
            "--fast_decode false decodes each image in full first, the exact path (see mrm_hf/transforms.py)."
        },
    )
    augment_on_device: bool = field(
        default=False,
        metadata={
            "help": "DataLoader workers only decode images to --decode_size squares of uint8; the random crop, resize, "
            "flip and normalisation run batched on the training device, with the same boxes as the CPU path."
        },
    )
    decode_size: int = field(default=512, metadata={"help": "Side of the decoded images under --augment_on_device."})
    num_figure_samples: int = field(default=4, metadata={"help": "Samples in the reconstruction figure."})


@dataclass
class PretrainingArguments(TrainingArguments):
    """TrainingArguments with the published recipe as defaults."""

    prediction_loss_only: bool = field(
        default=True,
        metadata={"help": "Evaluation reports losses only. Keeping the logits would gather report logits whose "
                          "length (labelled tokens) differs between processes, and hold every logit of the set."},
    )

    base_learning_rate: float = field(
        default=BASE_LEARNING_RATE, metadata={"help": "lr = base_learning_rate x total batch size / 256."}
    )
    effective_batch_size: int = field(
        default=EFFECTIVE_BATCH_SIZE,
        metadata={
            "help": "Total batch per optimiser step; gradient accumulation is derived from it (0: use "
            "--gradient_accumulation_steps as given)."
        },
    )
    warmup_epochs: float = field(default=WARMUP_EPOCHS, metadata={"help": "Linear warm-up, then cosine decay to 0."})
    decay_tokens: bool = field(
        default=False, metadata={"help": "Weight-decay the cls and mask tokens too, as the published code did."}
    )
    num_train_epochs: float = field(default=EPOCHS, metadata={"help": "Total training epochs."})
    adam_beta2: float = field(default=0.95, metadata={"help": "AdamW beta2."})
    weight_decay: float = field(default=0.05, metadata={"help": "AdamW weight decay."})
    lr_scheduler_type: str = field(default="cosine", metadata={"help": "Learning-rate schedule after warm-up."})
    remove_unused_columns: bool = field(default=False, metadata={"help": "Keep the image and report columns."})


def derive_schedule(args, world_size: int) -> None:
    """Set gradient accumulation from the effective batch, the lr from the base lr, the warm-up from its epochs.

    `--per_device_train_batch_size` is the most one process takes at once: with more processes than the effective
    batch needs at that size, each takes fewer (the demo's 32 on 2 processes: 16 each), so that the total batch, and
    with it the learning rate and the result, does not depend on how many processes run.
    """
    per_device = args.per_device_train_batch_size
    if args.effective_batch_size:
        effective = args.effective_batch_size
        steps = -(-effective // (per_device * world_size))  # the fewest accumulation steps at this per-device batch
        while effective % (world_size * steps) and steps < effective:
            steps += 1
        if effective % (world_size * steps):
            raise ValueError(
                f"--effective_batch_size {effective} cannot be split over {world_size} processes with at most "
                f"{per_device} per device: it must be a multiple of {world_size} (the number of processes)."
            )
        if effective // (world_size * steps) != per_device:
            logger.info(
                "--per_device_train_batch_size %d lowered to %d, so that %d processes x %d accumulation steps make "
                "--effective_batch_size %d", per_device, effective // (world_size * steps), world_size, steps, effective,
            )  # fmt: skip
        args.per_device_train_batch_size = effective // (world_size * steps)
        args.gradient_accumulation_steps = steps
    per_step = args.per_device_train_batch_size * world_size
    total = per_step * args.gradient_accumulation_steps
    args.learning_rate = args.base_learning_rate * total / 256
    if args.warmup_epochs and args.num_train_epochs:
        args.warmup_steps = min(args.warmup_epochs / args.num_train_epochs, 1.0)  # below 1: a fraction of the steps
    logger.info(
        "Total batch %d (%d per step x %d accumulation), learning rate %.3g, warm-up %s of the steps",
        total, per_step, args.gradient_accumulation_steps, args.learning_rate, args.warmup_steps,
    )  # fmt: skip


def load_records(data_args: DataArguments, seed: int, reports: bool = True) -> DatasetDict:
    """Image-report records with `image` and `report` columns (only `image` without `reports`): a train split, and a
    validation split when any."""
    kind = data_args.dataset
    if kind == "demo":
        records = DatasetDict(
            train=make_demo_records(data_args.demo_num_records, data_args.demo_image_size, seed=seed),
            validation=make_demo_records(data_args.demo_num_validation, data_args.demo_image_size, seed=seed + 1),
        )
    elif kind == "mimic":
        if data_args.data_dir is None:
            raise ValueError("--dataset mimic needs --data_dir, the MIMIC-CXR-JPG root.")
        options = dict(
            views=tuple(v.strip() for v in data_args.views.split(",") if v.strip()),
            report_sections=data_args.report_sections,
            reports=data_args.reports,
            image_root=data_args.image_root,
            image_suffix=data_args.image_suffix,
            strict=data_args.strict,
        )
        records = DatasetDict(
            train=load_mimic_cxr(data_args.data_dir, split="train", **options),
            validation=load_mimic_cxr(data_args.data_dir, split="validate", **options),
        )
    elif kind == "training_csv":
        if data_args.training_csv is None:
            raise ValueError("--dataset training_csv needs --training_csv, a file with image_path,report_content.")
        records = DatasetDict(
            train=load_training_csv(
                data_args.training_csv,
                image_root=data_args.image_root,
                report_sections=data_args.report_sections,
                strict=data_args.strict,
            )
        )
    elif kind == "disk":
        if data_args.data_dir is None:
            raise ValueError("--dataset disk needs --data_dir, a folder written by save_to_disk.")
        loaded = load_from_disk(data_args.data_dir)
        records = loaded if isinstance(loaded, DatasetDict) else DatasetDict(train=loaded)
    else:
        raise ValueError(f"--dataset must be one of {DATASETS}, got {kind!r}.")

    required = {"image", "report"} if reports else {"image"}
    missing = required - set(records["train"].column_names)
    if missing:
        raise ValueError(f"The records need {sorted(required)} columns; missing {sorted(missing)}.")
    if "validation" not in records and data_args.validation_fraction > 0:
        split = records["train"].train_test_split(test_size=data_args.validation_fraction, seed=seed)
        records = DatasetDict(train=split["train"], validation=split["test"])
    for name, limit in (("train", data_args.max_train_samples), ("validation", data_args.max_eval_samples)):
        if limit is not None and name in records:
            records[name] = records[name].select(range(min(limit, len(records[name]))))
    return records


# Files that a checkpoint holds once complete, whatever the backend (DeepSpeed and FSDP lay weights out otherwise) and
# with or without a tokenizer (--image_only): Trainer writes trainer_state.json last, accelerate's save_state the random
# states.
CHECKPOINT_FILES = {
    "checkpoint-": ("trainer_state.json",),
    "step_": ("random_states_*.pkl",),
}


def checkpoint_problems(folder: Path, required: tuple[str, ...]) -> list[str]:
    """What keeps `folder` from being a complete checkpoint: required files missing, JSON files that do not parse."""
    problems = []
    for pattern in required:
        found = sorted(folder.glob(pattern))
        if not found:
            problems.append(f"no {pattern}")
        for path in found:
            if path.suffix == ".json":
                try:
                    json.loads(path.read_text())
                except (OSError, ValueError) as error:
                    problems.append(f"{path.name} does not parse ({error})")
    return problems


def resolve_checkpoint(
    resume: str | None, output_dir: str | Path, prefix: str, required: tuple[str, ...] | None = None
) -> Path | None:
    """The checkpoint folder to resume from: `resume` itself, or for "last" the newest complete `<prefix>N` in
    output_dir (incomplete ones, from a run killed while saving with an older version, are skipped and named)."""
    if not resume or resume.lower() in ("false", "none"):
        return None
    required = CHECKPOINT_FILES.get(prefix, ()) if required is None else required
    if resume.lower() in ("last", "true"):
        found = [
            (int(p.name[len(prefix) :]), p)
            for p in Path(output_dir).glob(f"{prefix}*")
            if p.is_dir() and p.name[len(prefix) :].isdigit()
        ]
        if not found:
            raise FileNotFoundError(f"--resume_from_checkpoint {resume}: no {prefix}N folder in {output_dir}.")
        skipped = []
        for _, folder in sorted(found, reverse=True):
            problems = checkpoint_problems(folder, required)
            if not problems:
                if skipped:
                    logger.warning("--resume_from_checkpoint %s: resuming from %s; skipped the incomplete %s",
                                   resume, folder, "; ".join(skipped))  # fmt: skip
                return folder
            skipped.append(f"{folder.name} ({', '.join(problems)})")
        raise FileNotFoundError(
            f"--resume_from_checkpoint {resume}: expected a complete {prefix}N folder in {output_dir} (with "
            f"{', '.join(required)}); found only incomplete ones: {'; '.join(skipped)}."
        )
    folder = Path(resume)
    if not folder.is_dir():
        raise FileNotFoundError(f"--resume_from_checkpoint {resume}: no such checkpoint folder.")
    problems = checkpoint_problems(folder, required)
    if problems:
        raise FileNotFoundError(
            f"--resume_from_checkpoint {resume}: expected a complete checkpoint (with {', '.join(required)}); "
            f"found {', '.join(problems)}."
        )
    return folder


def staging_folder(final: Path) -> Path:
    """Where a checkpoint is written before `publish_checkpoint` renames it to `final`: `.partial-<name>/<name>`."""
    final = Path(final)
    return final.parent / f".partial-{final.name}" / final.name


def publish_checkpoint(staging: Path, final: Path, is_main_process: bool = True, wait_for_everyone=None) -> Path:
    """Give a fully written checkpoint its final name in one rename, once every process has written its part, so a
    run killed while saving never leaves a `final` folder that looks like a checkpoint."""
    staging, final = Path(staging), Path(final)
    if wait_for_everyone is not None:
        wait_for_everyone()
    if is_main_process:
        if final.exists():
            shutil.rmtree(final)  # an older save of the same step
        os.replace(staging, final)
        if staging.parent.name.startswith(".partial-"):
            shutil.rmtree(staging.parent, ignore_errors=True)
    if wait_for_everyone is not None:
        wait_for_everyone()
    return final


def unreadable_checkpoint_files(folder: Path) -> list[str]:
    """Files of a checkpoint that cannot be read back: torch saves that are not whole zip archives, safetensors whose
    header does not parse."""
    bad = []
    for path in sorted(Path(folder).iterdir()):
        try:
            if path.suffix in (".pt", ".pth", ".bin", ".pkl"):
                with zipfile.ZipFile(path) as archive:
                    broken = archive.testzip()
                if broken is not None:
                    bad.append(f"{path.name} (member {broken} fails its CRC)")
            elif path.suffix == ".safetensors":
                with safe_open(path, "pt") as weights:
                    weights.keys()
        except Exception as error:  # noqa: BLE001 (any failure to read is the finding)
            bad.append(f"{path.name} ({type(error).__name__}: {error})")
    return bad


@contextlib.contextmanager
def reading_checkpoint(folder):
    """Turn a failure to load a checkpoint into an error that names its unreadable files."""
    try:
        yield
    except Exception as error:
        bad = unreadable_checkpoint_files(Path(folder))
        if not bad:
            raise
        raise ValueError(
            f"Cannot resume from {folder}: expected complete, readable checkpoint files; found unreadable "
            f"{'; '.join(bad)}. Resume from an earlier checkpoint."
        ) from error


def _looks_like_path(name: str) -> bool:
    """Whether a name can only be a local path, not a Hub id ("org/name")."""
    return name.startswith((".", "/", "~")) or name.count("/") > 1 or os.sep != "/" and os.sep in name


def load_tokenizer(
    model_args: ModelArguments,
    train_reports,
    checkpoint: Path | None = None,
    output_dir: str | Path | None = None,
    main_process_first=contextlib.nullcontext,
    is_main_process: bool = True,
) -> PreTrainedTokenizerBase:
    """The report tokenizer: the resumed checkpoint's, named, the continued model's, or trained on the reports.

    `tokenizers` does not train the same WordPiece vocabulary twice from the same texts (huggingface/tokenizers#1794),
    so a trained one is made once, by the main process, and saved to `output_dir` for the other processes (which must
    see the same filesystem) and for any later resume, which reuses its checkpoint's copy.
    """
    source = str(checkpoint) if checkpoint is not None else model_args.tokenizer_name
    continued = model_args.model_name_or_path
    if source is None and continued is not None:
        # A Hub id, or a local folder that holds a tokenizer.
        if not Path(continued).exists() or (Path(continued) / "tokenizer.json").exists():
            source = continued
    if source == "demo":
        return vocabulary_tokenizer(demo_report_texts())
    if source is not None:
        if source.endswith(".json"):
            return load_published_tokenizer(source)
        argument = "the checkpoint" if checkpoint is not None else (
            "--tokenizer_name" if source == model_args.tokenizer_name else "--model_name_or_path"
        )
        expected = f"{argument} {source}: expected a tokenizer folder, a tokenizers JSON file or a Hub repo id"
        if not Path(source).is_dir() and _looks_like_path(source):
            raise FileNotFoundError(f"{expected}; there is no such file or folder.")
        try:
            return AutoTokenizer.from_pretrained(source)
        except (OSError, ValueError) as error:
            found = "a local folder without a tokenizer" if Path(source).is_dir() else (
                "no local file or folder, and no tokenizer on the Hub under that name"
            )
            raise OSError(f"{expected}; found {found} ({error})") from error
    if output_dir is None:
        raise ValueError("A tokenizer trained on the reports needs an output_dir to be shared through.")
    with main_process_first():
        if is_main_process:
            size = model_args.tokenizer_vocab_size
            logger.info("Training a %d-token WordPiece vocabulary on %d reports", size, len(train_reports))
            tokenizer = train_report_tokenizer(train_reports, vocab_size=size)
            tokenizer.save_pretrained(output_dir)
            return tokenizer
    return AutoTokenizer.from_pretrained(output_dir)


def apply_config_overrides(config: MRMConfig, overrides: str) -> None:
    """Apply `--config_overrides` ("key=value,key=value") to a config, naming the pair or field that is wrong."""
    expected = "comma-separated key=value pairs of MRMConfig fields, e.g. 'hidden_size=192,num_hidden_layers=4'"
    for pair in overrides.split(","):
        key, equals, value = pair.partition("=")
        if not equals or "=" in value or not key.strip():
            raise ValueError(f"--config_overrides: expected {expected}; found {pair!r} in {overrides!r}.")
        if not hasattr(config, key.strip()):
            raise ValueError(f"--config_overrides: expected {expected}; found the unknown field {key.strip()!r}.")
    try:
        config.update_from_string(overrides)
        config.validate()
    except ValueError as error:
        raise ValueError(f"--config_overrides {overrides!r}: {error}") from error


def load_model(model_args: ModelArguments, tokenizer: PreTrainedTokenizerBase | None) -> MRMForPreTraining:
    """The model to pre-train: continued, or new (optionally with a converted encoder), sized to the tokenizer.

    Without a tokenizer (`--image_only`), the model has no report branch; a continued model's is dropped.
    """
    image_only = {"use_report_branch": False} if tokenizer is None else {}
    if model_args.model_name_or_path is not None:
        model = MRMForPreTraining.from_pretrained(model_args.model_name_or_path, **image_only)
    else:
        if image_only:
            config = MRMConfig(**image_only)
        else:
            config = MRMConfig(report_vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id)
        if model_args.config_overrides:
            apply_config_overrides(config, model_args.config_overrides)
        if model_args.init_encoder_from is not None:
            model = MRMForPreTraining.from_pretrained(model_args.init_encoder_from, config=config)
        else:
            model = MRMForPreTraining(config)
    config = model.config
    if image_only:
        return model
    if len(tokenizer) > config.report_vocab_size:
        raise ValueError(
            f"The tokenizer has {len(tokenizer)} tokens but the model's report vocabulary only {config.report_vocab_size}."
        )
    if tokenizer.pad_token_id != config.pad_token_id:
        raise ValueError(f"The tokenizer pads with id {tokenizer.pad_token_id}, the model with {config.pad_token_id}.")
    return model


def image_processor_for(model: MRMForPreTraining, model_args: ModelArguments) -> MRMImageProcessor:
    """The processor saved with the model: the encoder's evaluation view at `config.image_size`, what users of the
    saved folder feed to `AutoModel`. Training makes its own pre-training view (`PretrainingTransform`, at the
    reconstruction size) from this processor's grayscale conversion and normalisation."""
    if model_args.model_name_or_path is not None:
        folder = Path(model_args.model_name_or_path)
        if (folder / "preprocessor_config.json").exists() or (folder / "processor_config.json").exists():
            return MRMImageProcessor.from_pretrained(model_args.model_name_or_path)
    return encoder_image_processor(model.config.image_size)


def prepare(records: DatasetDict, model, image_processor, tokenizer, data_args: DataArguments, seed: int | None = None):
    """Attach the augmentations (random on train, deterministic on validation) and build the masking collator.

    With a `seed`, crops, flips and report masks are keyed by (seed, epoch, sample index) through one `SeededDraws`
    shared by the transform and the collator (`collator.set_epoch` sets the epoch for both), so a run resumed
    mid-epoch draws what the uninterrupted run drew. Each split gets a `sample_index` column for that.
    """
    size = model.config.reconstruction_size
    draws = SeededDraws(seed)
    on_bad_image = "raise" if data_args.strict else "skip"  # the loaders' policy, for images that fail later
    for name in records:
        # `datasets` would decode each image before the transform sees it, and a corrupt file would then fail there,
        # unnamed; undecoded, the processor reads it and the transform names it (path and row).
        feature = records[name].features.get("image")
        if isinstance(feature, ImageFeature) and feature.decode:
            records[name] = records[name].cast_column("image", ImageFeature(decode=False))
    if seed is not None:
        for name in records:
            split = records[name]
            if SAMPLE_INDEX in split.column_names:
                split = split.remove_columns(SAMPLE_INDEX)
            records[name] = split.add_column(SAMPLE_INDEX, list(range(len(split))))
    if data_args.augment_on_device:
        records["train"].set_transform(DecodeTransform(data_args.decode_size))
    else:
        records["train"].set_transform(
            PretrainingTransform(
                image_processor,
                size=size,
                scale=(data_args.crop_min_scale, 1.0),
                hflip=data_args.hflip_probability,
                fast_decode=data_args.fast_decode,
                seed=draws,
                on_bad_image=on_bad_image,
            )
        )
    if "validation" in records:
        records["validation"].set_transform(
            PretrainingTransform(image_processor, size=size, train=False, on_bad_image=on_bad_image)
        )
    if tokenizer is None:  # --image_only
        return records, ImageCollator(draws)
    collator = DataCollatorForMRM(
        tokenizer,
        mlm_probability=data_args.mlm_probability,
        max_length=model.config.report_max_position_embeddings,
        published_masking=data_args.published_masking,
        label_mode=data_args.label_mode,
        seed=draws,
    )
    return records, collator


def collate_images(examples: list[dict]) -> dict[str, torch.Tensor]:
    """The batch of image-only pre-training: the stacked `pixel_values` (or, under --augment_on_device, the decoded
    images and their sizes), nothing of the reports."""
    keys = [key for key in ("pixel_values", "decoded_images", "original_sizes") if key in examples[0]]
    return {key: torch.stack([torch.as_tensor(example[key]) for example in examples]) for key in keys}


def device_augmentation(model, image_processor, data_args: DataArguments) -> DeviceAugmentation | None:
    """Under --augment_on_device, the batched crop, resize, flip and normalisation that turn the collated
    `decoded_images` into `pixel_values` on the training device; else None."""
    if not data_args.augment_on_device:
        return None
    return DeviceAugmentation(
        image_processor,
        size=model.config.reconstruction_size,
        scale=(data_args.crop_min_scale, 1.0),
        hflip=data_args.hflip_probability,
    )


class ImageCollator:
    """`collate_images` with the seeded draws' epoch (`set_epoch`), as `DataCollatorForMRM` has it."""

    def __init__(self, draws: SeededDraws):
        self.draws = draws

    def set_epoch(self, epoch: int) -> None:
        self.draws.set_epoch(epoch)

    def __call__(self, examples: list[dict]) -> dict[str, torch.Tensor]:
        # Unreadable images the transform skipped; --augment_on_device batches carry `decoded_images` instead.
        kept = [e for e in examples if not ("pixel_values" in e and e["pixel_values"] is None)]
        if not kept:
            raise ValueError(f"expected at least one readable image in the batch; all {len(examples)} were skipped.")
        return collate_images(kept)


def figure_samples(records: DatasetDict, model, image_processor, count: int) -> torch.Tensor:
    """The first `count` held-out records (else training records), whole and unaugmented, as pixel values."""
    split = records["validation"] if "validation" in records else records["train"]
    split = split.with_transform(PretrainingTransform(image_processor, size=model.config.reconstruction_size, train=False))
    return torch.stack([split[i]["pixel_values"] for i in range(min(count, len(split)))])


IMAGE_ONLY_CARD_TEXT = "none: image-only pre-training (MAE with high-resolution targets), no reports"


def model_card_fields(model, model_args: ModelArguments, data_args: DataArguments, training_args) -> dict:
    """What `model_cards/mrm_pretraining.md` needs besides the results."""
    config = model.config
    descriptions = {
        "demo": "The built-in demo records of `mrm_hf.data.make_demo_records`: **synthetic** cartoon radiographs with "
        "findings drawn at known places and template reports that describe them. This is not medical data; the model "
        "only shows that the pipeline works.",
        "mimic": "MIMIC-CXR-JPG v2.0.0 image-report pairs (PhysioNet, credentialed access), views "
        f"{data_args.views}, report text: {data_args.report_sections}.",
        "training_csv": f"Image-report pairs listed in a published-format training.csv, report text: "
        f"{data_args.report_sections}.",
        "disk": "Image-report records from a local `datasets` folder.",
    }
    if not config.use_report_branch:
        descriptions = {k: v + " Images only: the reports were not used." for k, v in descriptions.items()}
    report_fields = {
        "report branch": f"BERT, {config.report_num_hidden_layers} layers, width {config.report_hidden_size}",
        "report loss": "masked tokens only" if data_args.label_mode == "masked" else "every position (published)",
    }
    repo_id = training_args.hub_model_id or Path(training_args.output_dir).name
    base_model = model_args.init_encoder_from or model_args.model_name_or_path
    if base_model is not None and Path(base_model).exists():
        base_model = None  # only Hub ids are metadata
    return dict(
        model_name=repo_id.split("/")[-1],
        repo_id=repo_id,
        # MIMIC-CXR-JPG is on PhysioNet, not on the Hub: a tag names it without linking a dataset page that does not
        # exist.
        tags={"demo": ["synthetic-demo"], "mimic": ["mimic-cxr-jpg"]}.get(data_args.dataset, []),
        base_model=base_model,
        image_size=config.image_size,
        reconstruction_size=config.reconstruction_size,
        mask_ratio_percent=round(100 * config.mask_ratio),
        dataset_description=descriptions[data_args.dataset],
        hyperparameters={
            "encoder": f"ViT, {config.num_hidden_layers} layers, width {config.hidden_size}, patch {config.patch_size}",
            **(report_fields if config.use_report_branch else {"report branch": IMAGE_ONLY_CARD_TEXT}),
            "optimizer": f"AdamW, betas ({training_args.adam_beta1}, {training_args.adam_beta2}), "
            f"weight decay {training_args.weight_decay}",
            "learning rate": f"{training_args.learning_rate:.3g} "
            f"({getattr(training_args.lr_scheduler_type, 'value', training_args.lr_scheduler_type)}, warm-up "
            f"{training_args.warmup_epochs} epochs)",
            "total batch": training_args.per_device_train_batch_size
            * training_args.world_size
            * training_args.gradient_accumulation_steps,
            "epochs": training_args.num_train_epochs,
        },
    )


class RunningMeans:
    """Running means of named scalars between two logs, averaged over every process when read."""

    def __init__(self, keys: tuple[str, ...]):
        self.keys = keys
        self.reset()

    def reset(self) -> None:
        self.sums = dict.fromkeys(self.keys, 0.0)
        self.counts = dict.fromkeys(self.keys, 0)

    def add(self, values) -> None:
        """Add the values of these keys found in a mapping (model outputs included); None is skipped."""
        for key in self.keys:
            value = values.get(key)
            if value is not None:
                self.sums[key] += float(value.detach() if isinstance(value, torch.Tensor) else value)
                self.counts[key] += 1

    def means(self, accelerator) -> dict[str, float]:
        """The means since the last read over all processes (every process must call this), then reset."""
        local = [self.sums[k] for k in self.keys] + [float(self.counts[k]) for k in self.keys]
        reduced = accelerator.reduce(torch.tensor(local, dtype=torch.float64, device=accelerator.device), "sum")
        self.reset()
        sums, counts = reduced[: len(self.keys)], reduced[len(self.keys) :]
        return {k: (total / count).item() for k, total, count in zip(self.keys, sums, counts) if count > 0}


def accumulation_counts(micro_batches: list[dict], gather, device) -> torch.Tensor:
    """(images, labelled report tokens) in the micro-batches of one optimiser step, summed over every process.

    `gather` is `Accelerator.gather`. These are the divisors of `accumulated_loss`.
    """
    images = sum(len(batch["pixel_values" if "pixel_values" in batch else "decoded_images"]) for batch in micro_batches)
    images = torch.tensor(images, device=device)
    tokens = sum(
        ((batch["labels"] != -100).sum().to(device) for batch in micro_batches if batch.get("labels") is not None),
        torch.tensor(0, device=device),
    )
    return gather(torch.stack([images, tokens])[None]).sum(dim=0)


def accumulated_loss(outputs, batch: dict, counts: torch.Tensor, config: MRMConfig) -> torch.Tensor:
    """This micro-batch's share of the loss of the whole accumulated batch, `counts` being `accumulation_counts`.

    The image loss is a mean over samples (every sample has as many masked patches) and the report loss a mean over
    labelled tokens; each is summed over this micro-batch and divided by its own count over the whole accumulated batch
    of every process. The shares of all micro-batches (and processes) add up to the full batch's loss, whatever the
    labelled tokens of each, so accumulation gives the full batch's gradients; DDP averages gradients over processes,
    so each process backpropagates its share times the number of processes.
    """
    num_images, num_tokens = counts.to(outputs.image_loss.device).unbind()
    loss = config.image_loss_weight * outputs.image_loss * len(batch["pixel_values"]) / num_images
    if outputs.report_loss is not None:
        labelled = (batch["labels"] != -100).sum()
        loss = loss + config.report_loss_weight * outputs.report_loss * labelled / num_tokens.clamp(min=1)
    return loss


def accumulate_gradients(model, micro_batches: list[dict], accelerator) -> tuple[float, list[dict]]:
    """Forward and backward over the micro-batches of one optimiser step, normalised as one batch (`accumulated_loss`).

    Gradients are exchanged between processes only after the last micro-batch. Returns the step's loss (this
    process's part times the number of processes: its mean over processes is the loss of the whole batch) and each
    micro-batch's `image_loss` and `report_loss`.
    """
    counts = accumulation_counts(micro_batches, accelerator.gather, accelerator.device)
    config = accelerator.unwrap_model(model).config
    step_loss, parts = 0.0, []
    for index, batch in enumerate(micro_batches):
        last = index == len(micro_batches) - 1
        with contextlib.nullcontext() if last else accelerator.no_sync(model):
            outputs = model(**batch)
            loss = accumulated_loss(outputs, batch, counts, config) * accelerator.num_processes
            accelerator.backward(loss)
        step_loss += float(loss.detach())
        parts.append({"image_loss": outputs.image_loss.detach(), "report_loss": outputs.report_loss})
    return step_loss, parts


class _DrawsEpoch(TrainerCallback):
    """Tell the collator's (and transform's) seeded draws which epoch begins, before its DataLoader iterator exists."""

    def __init__(self, collator):
        self.collator = collator

    def on_epoch_begin(self, args, state, control, **kwargs):
        self.collator.set_epoch(int(state.epoch or 0))


class MRMPreTrainer(Trainer):
    """Trainer with exact gradient accumulation of both losses, the recipe's weight-decay exemptions,
    `image_loss`/`report_loss` in every log, epoch-keyed data draws, and checkpoints that appear only once complete."""

    # `compute_loss` normalises over the whole accumulated batch itself (`accumulated_loss`).
    loss_is_scaled_for_ga = True

    def __init__(self, *args, decay_tokens: bool = False, model_card=None, device_augmentation=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.decay_tokens = decay_tokens
        self.device_augmentation = device_augmentation  # decoded images -> pixel_values on the device
        self.model_card = model_card  # called with the output folder to write README.md
        self._components = {split: RunningMeans(("image_loss", "report_loss")) for split in ("train", "eval")}
        if not self.model.config.use_report_branch:
            # Image-only batches have no `labels`, yet the image loss needs none: evaluate it all the same.
            self.label_names, self.can_return_loss = [], True
        self._staging_root = None
        if hasattr(self.data_collator, "set_epoch"):
            if self.args.dataloader_persistent_workers and self.args.dataloader_num_workers > 0:
                raise ValueError(
                    "--dataloader_persistent_workers: expected False with seeded draws (persistent workers keep the "
                    "first epoch's crops and masks); found True."
                )
            self.add_callback(_DrawsEpoch(self.data_collator))

    def get_decay_parameter_names(self, model) -> list[str]:
        return decay_parameter_names(model, self.decay_tokens)

    def get_batch_samples(self, epoch_iterator, num_batches, device):
        """The micro-batches of one optimiser step, with their `accumulation_counts` as `num_items_in_batch`."""
        batches, _ = super().get_batch_samples(epoch_iterator, num_batches, device)
        return batches, accumulation_counts(batches, self.accelerator.gather, device) if batches else None

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if self.device_augmentation is not None and "decoded_images" in inputs:
            inputs = self.device_augmentation(inputs)
        outputs = model(**inputs)
        if num_items_in_batch is None:  # evaluation: the batch's own loss
            loss = outputs.loss
        else:
            loss = accumulated_loss(outputs, inputs, num_items_in_batch, self.model.config)
            loss = loss * self.accelerator.num_processes
        self._components["train" if model.training else "eval"].add(outputs)
        return (loss, outputs) if return_outputs else loss

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        for split, loss_key, prefix in (("train", "loss", ""), ("eval", "eval_loss", "eval_")):
            if loss_key in logs:
                logs.update({prefix + k: v for k, v in self._components[split].means(self.accelerator).items()})
        super().log(logs, start_time)

    def evaluation_loop(self, dataloader, description, prediction_loss_only=None, ignore_keys=None,
                        metric_key_prefix="eval"):
        """The evaluation, plus whether the report branch reads the image (`<prefix>_report_loss_<own|zero|shuffled>
        _image`, see `report_loss_by_image`)."""
        output = super().evaluation_loop(dataloader, description, prediction_loss_only, ignore_keys, metric_key_prefix)
        with self.autocast_smart_context_manager():
            losses = report_loss_by_image(self.accelerator.unwrap_model(self.model), dataloader, self.accelerator)
        output.metrics.update({f"{metric_key_prefix}_{k}": v for k, v in losses.items()})
        return output

    def _get_output_dir(self, trial) -> str:
        return str(self._staging_root) if self._staging_root is not None else super()._get_output_dir(trial)

    def _save_checkpoint(self, model, trial) -> None:
        # Written under .partial-checkpoint-N/ and renamed when complete (see `publish_checkpoint`).
        run_dir = Path(self._get_output_dir(trial))
        final = run_dir / f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
        staging = staging_folder(final)
        if self.args.should_save and staging.parent.exists():
            shutil.rmtree(staging.parent)  # left by a run killed while saving
        self.accelerator.wait_for_everyone()
        self._staging_root = staging.parent
        try:
            super()._save_checkpoint(model, trial)
        finally:
            self._staging_root = None
        publish_checkpoint(staging, final, self.args.should_save, self.accelerator.wait_for_everyone)
        best = self.state.best_model_checkpoint
        if best is not None and Path(best).parent == staging.parent:
            self.state.best_model_checkpoint = str(run_dir / Path(best).name)
            if self.args.should_save:  # the saved state named the staging folder; a resumed run must find the best
                temporary = final / f"{TRAINER_STATE_NAME}.tmp"
                self.state.save_to_json(str(temporary))
                temporary.replace(final / TRAINER_STATE_NAME)
        if self.args.push_to_hub:
            super()._push_from_checkpoint(str(final))  # only once complete, from where it stays
        if self.args.should_save:
            rotate_checkpoints(
                output_dir=str(run_dir),
                save_total_limit=self.args.save_total_limit,
                best_model_checkpoint=self.state.best_model_checkpoint,
                use_mtime=True,
            )

    def _push_from_checkpoint(self, checkpoint_folder) -> None:
        if self._staging_root is None:  # Trainer's own call, from the staging folder, waits for `_save_checkpoint`
            super()._push_from_checkpoint(checkpoint_folder)

    def _load_from_checkpoint(self, resume_from_checkpoint, model=None) -> None:
        with reading_checkpoint(resume_from_checkpoint):
            super()._load_from_checkpoint(resume_from_checkpoint, model)

    def _load_optimizer_and_scheduler(self, checkpoint) -> None:
        with reading_checkpoint(checkpoint):
            super()._load_optimizer_and_scheduler(checkpoint)

    def create_model_card(self, **kwargs) -> None:
        if self.model_card is None:
            return super().create_model_card(**kwargs)
        if self.is_world_process_zero():
            self.model_card(self.args.output_dir)


@torch.no_grad()
def reconstruct(model: MRMForPreTraining, pixel_values: torch.Tensor, noise: torch.Tensor | None = None):
    """Original, masked input and reconstruction (visible patches pasted back), in the model's pixel space."""
    model.eval()
    outputs = model(pixel_values, noise=noise)
    target = model.patchify(pixel_values.float())
    prediction = outputs.image_logits.float()
    if model.config.norm_pix_loss:  # the decoder predicts normalised patches: put each back on its own scale
        prediction = prediction * (target.var(-1, keepdim=True) + 1.0e-6) ** 0.5 + target.mean(-1, keepdim=True)
    mask = outputs.mask.unsqueeze(-1)
    masked_input = model.unpatchify(target * (1 - mask))
    reconstruction = model.unpatchify(target * (1 - mask) + prediction * mask)
    return pixel_values.float(), masked_input, reconstruction


def save_reconstruction_figure(
    model: MRMForPreTraining, pixel_values: torch.Tensor, image_processor: MRMImageProcessor, path, seed: int = 0
) -> Path:
    """A PNG grid, one row per sample: original | masked input | reconstruction."""
    noise = torch.rand(pixel_values.shape[0], model.config.num_patches, generator=torch.Generator().manual_seed(seed))
    device = next(model.parameters()).device
    columns = reconstruct(model, pixel_values.to(device), noise.to(device))
    mean = torch.tensor(image_processor.image_mean, dtype=torch.float32).reshape(-1, 1, 1)
    std = torch.tensor(image_processor.image_std, dtype=torch.float32).reshape(-1, 1, 1)

    def to_image(tensor: torch.Tensor) -> Image.Image:
        gray = (tensor.cpu() * std + mean).clamp(0, 1).mean(0)  # three identical channels
        return Image.fromarray((gray.numpy() * 255).round().astype(np.uint8), mode="L")

    side, pad, header = pixel_values.shape[-1], 4, 14
    figure = Image.new("L", (3 * side + 4 * pad, header + len(pixel_values) * (side + pad) + pad), color=255)
    draw = ImageDraw.Draw(figure)
    for column, title in enumerate(("original", "masked", "reconstruction")):
        draw.text((pad + column * (side + pad), 1), title, fill=0)
    for row in range(len(pixel_values)):
        for column, images in enumerate(columns):
            figure.paste(to_image(images[row]), (pad + column * (side + pad), header + row * (side + pad)))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.save(path)
    return path
