"""The command line and set-up that `run_pretraining.py` (Trainer) and `run_pretraining_no_trainer.py` (Accelerate)
share: their arguments, records, report tokenizer, model, augmentation and model card.

The published recipe is the default: AdamW with betas (0.9, 0.95), weight decay 0.05, lr = 1.5e-4 x total batch / 256
at an effective batch of 256, 40 warm-up epochs of 200 then cosine (the authors' `main_pretrain.py` settings).
"""

import contextlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from datasets import DatasetDict, Image as ImageFeature, load_from_disk
from transformers import AutoTokenizer, HfArgumentParser, PreTrainedTokenizerBase, TrainingArguments

from mrm_hf import MRMConfig, MRMForPreTraining, MRMImageProcessor
from mrm_hf.arguments import require_arguments
from mrm_hf.data import (
    DataCollatorForMRM,
    ImageCollator,
    SAMPLE_INDEX,
    SeededDraws,
    demo_report_texts,
    load_mimic_cxr,
    load_training_csv,
    make_demo_records,
)
from mrm_hf.hub import card_identity, option_name, total_batch, write_model_card
from mrm_hf.processing_mrm import encoder_image_processor
from mrm_hf.report_filling import image_reliance_verdict
from mrm_hf.tokenization_mrm import load_published_tokenizer, train_report_tokenizer, vocabulary_tokenizer
from mrm_hf.transforms import DecodeTransform, DeviceAugmentation, PretrainingTransform
from mrm_hf.utils import apply_config_overrides, check_choice


logger = logging.getLogger(__name__)
MODEL_CARD_TEMPLATE = Path(__file__).resolve().parent.parent / "model_cards" / "mrm_pretraining.md"


BASE_LEARNING_RATE = 1.5e-4
EFFECTIVE_BATCH_SIZE = 256
EPOCHS = 200
WARMUP_EPOCHS = 40
# Each --dataset, and the options it needs with what they hold.
DATASET_NEEDS = {
    "demo": {},
    "mimic": {"data_dir": "the MIMIC-CXR-JPG root"},
    "training_csv": {"training_csv": "a file with image_path,report_content"},
    "disk": {"data_dir": "a folder written by save_to_disk"},
}
DATASETS = tuple(DATASET_NEEDS)


# ---- the command line ------------------------------------------------------------------------------------------------


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
            "flip and normalisation run batched on the training device, with each sample's CPU-path box and flip."
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


def parse_arguments(argv: list[str] | None = None) -> tuple[ModelArguments, DataArguments, PretrainingArguments]:
    """The three argument groups from the command line (or `argv`); `--args_file` reads arguments from a file, and
    arguments after it override the file's."""
    parser = HfArgumentParser((ModelArguments, DataArguments, PretrainingArguments))
    return parser.parse_args_into_dataclasses(args=argv, args_file_flag="--args_file", look_for_args_file=False)


# ---- records, tokenizer, model ---------------------------------------------------------------------------------------


def load_records(data_args: DataArguments, seed: int, reports: bool = True) -> DatasetDict:
    """Image-report records with `image` and `report` columns (only `image` without `reports`): a train split, and a
    validation split when any."""
    kind = check_choice("--dataset", data_args.dataset, DATASETS)
    require_arguments(f"--dataset {kind}", data_args, DATASET_NEEDS[kind])
    if kind == "demo":
        records = DatasetDict(
            train=make_demo_records(data_args.demo_num_records, data_args.demo_image_size, seed=seed),
            validation=make_demo_records(data_args.demo_num_validation, data_args.demo_image_size, seed=seed + 1),
        )
    elif kind == "mimic":
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
        records = DatasetDict(
            train=load_training_csv(
                data_args.training_csv,
                image_root=data_args.image_root,
                report_sections=data_args.report_sections,
                strict=data_args.strict,
            )
        )
    else:  # disk
        loaded = load_from_disk(data_args.data_dir)
        records = loaded if isinstance(loaded, DatasetDict) else DatasetDict(train=loaded)

    required = {"image", "report"} if reports else {"image"}
    missing = required - set(records["train"].column_names)
    if missing:
        raise ValueError(
            f"--dataset {kind}: expected records with the columns {sorted(required)}; found "
            f"{records['train'].column_names} (missing {sorted(missing)})."
        )
    if "validation" not in records and data_args.validation_fraction > 0:
        split = records["train"].train_test_split(test_size=data_args.validation_fraction, seed=seed)
        records = DatasetDict(train=split["train"], validation=split["test"])
    for name, limit in (("train", data_args.max_train_samples), ("validation", data_args.max_eval_samples)):
        if limit is not None and name in records:
            records[name] = records[name].select(range(min(limit, len(records[name]))))
    return records


def _looks_like_path(name: str) -> bool:
    """Whether a name can only be a local path, not a Hub id ("org/name")."""
    return name.startswith((".", "/", "~")) or name.count("/") > 1 or os.sep != "/" and os.sep in name


def load_tokenizer(
    model_args: ModelArguments,
    train_records,
    checkpoint: Path | None = None,
    output_dir: str | Path | None = None,
    main_process_first=contextlib.nullcontext,
    is_main_process: bool = True,
) -> PreTrainedTokenizerBase | None:
    """The report tokenizer: the resumed checkpoint's, named, the continued model's, or trained on the reports of
    `train_records` (rows with a `report`); None under `--image_only` (no reports, no report branch).

    `tokenizers` does not train the same WordPiece vocabulary twice from the same texts (huggingface/tokenizers#1794),
    so a trained one is made once, by the main process, and saved to `output_dir` for the other processes (which must
    see the same filesystem) and for any later resume, which reuses its checkpoint's copy.
    """
    if model_args.image_only:
        return None
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
        wanted = "a tokenizer folder, a tokenizers JSON file or a Hub repo id"
        if not Path(source).is_dir() and _looks_like_path(source):
            raise FileNotFoundError(f"{argument} {source}: expected {wanted}; found no such file or folder.")
        try:
            return AutoTokenizer.from_pretrained(source)
        except (OSError, ValueError) as error:
            found = "a local folder without a tokenizer" if Path(source).is_dir() else (
                "no local file or folder, and no tokenizer on the Hub under that name"
            )
            raise OSError(f"{argument} {source}: expected {wanted}; found {found} ({error})") from error
    if output_dir is None:
        raise ValueError("load_tokenizer: expected an output_dir to share a tokenizer trained on the reports through; "
                         "found None.")
    with main_process_first():
        if is_main_process:
            size, train_reports = model_args.tokenizer_vocab_size, list(train_records["report"])
            logger.info("Training a %d-token WordPiece vocabulary on %d reports", size, len(train_reports))
            tokenizer = train_report_tokenizer(train_reports, vocab_size=size)
            tokenizer.save_pretrained(output_dir)
            return tokenizer
    return AutoTokenizer.from_pretrained(output_dir)


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
    # Training reads report_logits only through the loss: score the masked tokens alone (the saved config keeps it;
    # pass sparse_prediction=False to from_pretrained for (batch, length, vocab) logits with labels).
    config.sparse_prediction = True
    if len(tokenizer) > config.report_vocab_size:
        raise ValueError(
            f"The report tokenizer: expected at most {config.report_vocab_size} tokens (the model's report "
            f"vocabulary); found {len(tokenizer)}."
        )
    if tokenizer.pad_token_id != config.pad_token_id:
        raise ValueError(
            f"The report tokenizer: expected the model's padding id {config.pad_token_id}; found "
            f"{tokenizer.pad_token_id}."
        )
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


def device_augmentation(
    model, image_processor, data_args: DataArguments, draws: SeededDraws | None = None, device=None
) -> DeviceAugmentation | None:
    """Under --augment_on_device, the batched crop, resize, flip and normalisation that turn the collated
    `decoded_images` into `pixel_values` on the training device; else None. `draws`, the collator's, keys each
    sample's crop and flip by (seed, epoch, sample) as the CPU path does (the collator's `set_epoch` moves both).
    On a CPU `device` it warns: there the batched augmentation runs in the training process, between steps."""
    if not data_args.augment_on_device:
        return None
    if device is not None and torch.device(device).type == "cpu":
        logger.warning(
            "--augment_on_device on a CPU: the crop, resize, flip and normalisation then run in the training process "
            "between steps instead of in the DataLoader workers, at about 0.25x the published pipeline's images/s "
            "(benchmarks/data_throughput.py). It pays on an accelerator only: leave it out on CPUs."
        )
    return DeviceAugmentation(
        image_processor,
        size=model.config.reconstruction_size,
        scale=(data_args.crop_min_scale, 1.0),
        hflip=data_args.hflip_probability,
        seed=draws,
    )


def figure_samples(records: DatasetDict, model, image_processor, count: int) -> torch.Tensor:
    """The first `count` held-out records (else training records), whole and unaugmented, as pixel values."""
    split = records["validation"] if "validation" in records else records["train"]
    split = split.with_transform(PretrainingTransform(image_processor, size=model.config.reconstruction_size, train=False))
    return torch.stack([split[i]["pixel_values"] for i in range(min(count, len(split)))])


# ---- the model card --------------------------------------------------------------------------------------------------


LIMITATIONS = {
    "demo": "This model was trained on synthetic records (cartoon radiographs with drawn findings and template reports), "
    "for a few minutes on a CPU. It has never seen a chest X-ray: its features and report predictions mean nothing for "
    "real images. It shows that the pipeline runs, and is not a starting point for fine-tuning.",
    "radiographs": "This is a research model. It is not a medical device and must not be used for diagnosis. Its "
    "representations inherit the biases of its training data (for MIMIC-CXR: one hospital system in Boston, its "
    "patients, scanners and reporting style), and need not transfer to other hospitals' images.",
}
IMAGE_ONLY_CARD_TEXT = "none: image-only pre-training (MAE with high-resolution targets), no reports"


def write_card(output_dir, model, model_args: ModelArguments, data_args: DataArguments, training_args, metrics: dict):
    """README.md in `output_dir`: `model_cards/mrm_pretraining.md` filled with this run's settings and results."""
    fields = model_card_fields(model, model_args, data_args, training_args)
    losses = [metrics.get(f"eval_report_loss_{condition}_image") for condition in ("own", "zero", "shuffled")]
    if None not in losses:
        fields["image_reliance"] = image_reliance_verdict(*losses)
    figure = Path(output_dir) / "reconstruction.png"  # written before the card by both scripts
    fields["figure"] = figure.name if figure.is_file() else None
    return write_model_card(output_dir, MODEL_CARD_TEMPLATE, metrics=metrics, **fields)


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
    return dict(
        **card_identity(training_args, model_args.init_encoder_from or model_args.model_name_or_path),
        # MIMIC-CXR-JPG is on PhysioNet, not on the Hub: a tag names it without linking a dataset page that does not
        # exist.
        tags={"demo": ["synthetic-demo"], "mimic": ["mimic-cxr-jpg"]}.get(data_args.dataset, []),
        image_size=config.image_size,
        reconstruction_size=config.reconstruction_size,
        mask_ratio_percent=round(100 * config.mask_ratio),
        dataset_description=descriptions[data_args.dataset],
        limitations=LIMITATIONS["demo" if data_args.dataset == "demo" else "radiographs"],
        hidden_size=config.hidden_size,
        hyperparameters={
            "encoder": f"ViT, {config.num_hidden_layers} layers, width {config.hidden_size}, patch {config.patch_size}",
            **(report_fields if config.use_report_branch else {"report branch": IMAGE_ONLY_CARD_TEXT}),
            "optimizer": f"AdamW, betas ({training_args.adam_beta1}, {training_args.adam_beta2}), "
            f"weight decay {training_args.weight_decay}",
            "learning rate": f"{training_args.learning_rate:.3g} "
            f"({option_name(training_args.lr_scheduler_type)}, warm-up "
            f"{training_args.warmup_epochs} epochs)",
            "total batch": total_batch(training_args),
            "epochs": training_args.num_train_epochs,
            "saved weights": saved_weights_text(model),
        },
    )


def saved_weights_text(model) -> str:
    """The precision of the saved weights, and where fp32 ones are when they are not: a DeepSpeed bf16 (or fp16) run
    trains the model itself in that precision and keeps fp32 master weights in its optimizer state only (FSDP keeps
    fp32 parameters and computes in bf16; Trainer's and Accelerate's --bf16 autocast leave the weights fp32)."""
    dtype = next(model.parameters()).dtype
    if dtype == torch.float32:
        return "float32"
    return (
        f"{str(dtype).removeprefix('torch.')}, as DeepSpeed trained them; the fp32 master weights are in each "
        "checkpoint: `python checkpoint-N/zero_to_fp32.py checkpoint-N fp32 --safe_serialization` writes them to "
        "fp32/model.safetensors"
    )
