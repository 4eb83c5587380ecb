"""Convert the published MRM checkpoints to Hugging Face checkpoints.

    python -m mrm_hf.convert --checkpoint MRM.pth --output-dir mrm-base --tokenizer mimic_wordpiece.json

(The other way, an MRM folder to timm's ViT: `python -m mrm_hf.timm_export`, which builds on the renames here.)

Three published formats are recognised from their keys:
- `pretraining`: the MRM pre-training checkpoint (`MRM.pth`: encoder, MAE decoder, BERT, `bert_mlp`)
  -> `MRMForPreTraining`;
- `classifier`: a fine-tuned classifier in the timm layout (`fc_norm.*`, `head.*`) -> `MRMForImageClassification`;
- `encoder`: the MAE ImageNet ViT-B encoder the published pre-training starts from -> `MRMModel`.

Checkpoints are read with `torch.load(weights_only=True)`, so nothing arbitrary is unpickled. The conversion is pure
functions from one state dict to another; every key that cannot be placed and every required key that is missing is
named in a `ConversionError`, and nothing is written unless the whole checkpoint converts.
"""

import argparse
import difflib
import json
import logging
import re
import sys
import warnings
from pathlib import Path

import torch

from .configuration_mrm import MRMConfig
from .modeling_mrm import MRMForImageClassification, MRMForPreTraining, MRMModel
from .processing_mrm import encoder_image_processor, processor_for_model


logger = logging.getLogger(__name__)

KINDS = ("pretraining", "classifier", "encoder")
MODEL_CLASSES = {"pretraining": MRMForPreTraining, "classifier": MRMForImageClassification, "encoder": MRMModel}

# timm Block -> MRMLayer, shared by the encoder and the decoder.
BLOCK_RENAMES = {
    "norm1": "layernorm_before",
    "attn.qkv": "attention.qkv",
    "attn.proj": "attention.proj",
    "norm2": "layernorm_after",
    "mlp.fc1": "mlp.fc1",
    "mlp.fc2": "mlp.fc2",
}
ENCODER_RENAMES = {
    "cls_token": "embeddings.cls_token",
    "pos_embed": "embeddings.position_embeddings",
    "patch_embed.proj.weight": "embeddings.patch_embeddings.weight",
    "patch_embed.proj.bias": "embeddings.patch_embeddings.bias",
    "norm.weight": "layernorm.weight",
    "norm.bias": "layernorm.bias",
    "fc_norm.weight": "pooler.layernorm.weight",
    "fc_norm.bias": "pooler.layernorm.bias",
}
DECODER_RENAMES = {
    "decoder_embed.weight": "image_decoder.embed.weight",
    "decoder_embed.bias": "image_decoder.embed.bias",
    "mask_token": "image_decoder.mask_token",
    "decoder_pos_embed": "image_decoder.position_embeddings",
    "decoder_norm.weight": "image_decoder.layernorm.weight",
    "decoder_norm.bias": "image_decoder.layernorm.bias",
    "decoder_pred.weight": "image_decoder.prediction.weight",
    "decoder_pred.bias": "image_decoder.prediction.bias",
    "bert_mlp.weight": "fusion.projection.weight",
    "bert_mlp.bias": "fusion.projection.bias",
}
BERT = "bert_encoder.model.bert."
MLM = "bert_encoder.model.cls.predictions."
REPORT_RENAMES = {
    BERT + "embeddings.word_embeddings.weight": "report_branch.embeddings.word_embeddings.weight",
    BERT + "embeddings.position_embeddings.weight": "report_branch.embeddings.position_embeddings.weight",
    BERT + "embeddings.token_type_embeddings.weight": "report_branch.embeddings.token_type_embeddings.weight",
    BERT + "embeddings.LayerNorm.weight": "report_branch.embeddings.layernorm.weight",
    BERT + "embeddings.LayerNorm.bias": "report_branch.embeddings.layernorm.bias",
    MLM + "transform.dense.weight": "report_branch.head.dense.weight",
    MLM + "transform.dense.bias": "report_branch.head.dense.bias",
    MLM + "transform.LayerNorm.weight": "report_branch.head.layernorm.weight",
    MLM + "transform.LayerNorm.bias": "report_branch.head.layernorm.bias",
    MLM + "decoder.weight": "report_branch.head.decoder.weight",
}
BERT_LAYER_RENAMES = {
    "attention.output.dense": "attention.proj",
    "attention.output.LayerNorm": "attention_layernorm",
    "intermediate.dense": "mlp.fc1",
    "output.dense": "mlp.fc2",
    "output.LayerNorm": "output_layernorm",
}
# Keys of the published checkpoint that no computation reads: BERT's pooler runs but its output is never used (the
# published `MyBertModel` ignores add_pooling_layer=False), and `position_ids` is the arange buffer older transformers
# saved.
UNUSED_PUBLISHED_KEYS = (BERT + "pooler.dense.weight", BERT + "pooler.dense.bias")
POSITION_IDS_KEY = BERT + "embeddings.position_ids"


class ConversionError(ValueError):
    """A checkpoint that cannot be converted; the message names every offending key."""


def load_mrm_config(model_name_or_path: str | Path, where: str | None = None) -> MRMConfig:
    """The config of an MRM checkpoint (a folder or Hub id), or a ValueError naming the model type found there: the
    one check that a model to fine-tune, segment with or export is MRM's. `where` names it in the error (default:
    the path)."""
    values, _ = MRMConfig.get_config_dict(str(model_name_or_path))
    model_type = values.get("model_type")
    if model_type != MRMConfig.model_type:
        raise ValueError(
            f"{where or model_name_or_path}: expected an MRM checkpoint (model_type 'mrm' in config.json); found "
            f"model_type {model_type!r}. Convert published .pth files with `python -m mrm_hf.convert`."
        )
    return MRMConfig.from_pretrained(model_name_or_path)


def refuse_nonempty_output(output_dir: str | Path, overwrite: bool) -> Path:
    """`output_dir` as a Path, or a ConversionError when it exists and holds files and `overwrite` is not set: what
    every writer of a converted folder checks before reading anything."""
    output_dir = Path(output_dir)
    if output_dir.exists() and any(output_dir.iterdir()) and not overwrite:
        raise ConversionError(
            f"{output_dir}: expected a new or empty folder; found one that exists and is not empty. Pass --overwrite "
            "to replace its files."
        )
    return output_dir


def load_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a .pth/.pt/.bin/.safetensors checkpoint and return its tensor state dict, unwrapping `{"model": ...}`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: expected a checkpoint file; found no file there.")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError) as error:
            raise ConversionError(f"{path}: expected a readable safetensors file; found {error}.") from error
    # The published MRM.pth also holds its training `args`, an argparse.Namespace: a plain attribute bag that is
    # safe to allow. Any other object is refused by `weights_only=True`. Files in the legacy (pre-zip) format
    # cannot be memory-mapped, so they are read whole.
    error = None
    for mmap in (True, False):
        try:
            with torch.serialization.safe_globals([argparse.Namespace]), warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="Detected pickle protocol")  # the error below says more
                checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
            return unwrap_state_dict(checkpoint, source=str(path))
        except ConversionError:
            raise
        except Exception as caught:  # noqa: BLE001 (every reading failure is reported below)
            error = caught
            if not (mmap and "mmap" in str(caught)):
                break
    raise ConversionError(
        f"{path}: expected a checkpoint written by torch.save (.pth, .pt, .bin) or a .safetensors file; found an "
        f"unreadable file ({_load_failure(path, error)})."
    ) from error


def _load_failure(path: Path, error: Exception) -> str:
    """What torch.load found, in one sentence, without its advice to retry with weights_only=False: that would run
    whatever code an untrusted file holds."""
    text = str(error)
    if "WeightsUnpickler error:" in text:  # a pickle of something weights_only=True refuses to build
        detail = " ".join(text.split("WeightsUnpickler error:", 1)[1].split("Check the documentation")[0].split())
        return (
            "it is a pickle of more than tensors, plain containers and argparse.Namespace, which is refused as it "
            f"could run code ({detail.split('. ')[0].rstrip('.')})"
        )
    if path.stat().st_size == 0:
        return "the file is empty"
    with open(path, "rb") as file:
        start = file.read(16)
    if not start.startswith((b"PK\x03\x04", b"\x80")):  # neither torch.save's zip archive nor a pickle
        return f"it is neither a torch.save archive nor a pickle (it starts with {start!r})"
    first = " ".join(text.split()).split(". ")[0].rstrip(".")
    return f"{type(error).__name__}: {first}" if first else type(error).__name__


def unwrap_state_dict(checkpoint: dict, source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """The tensor state dict inside a training checkpoint (`model`, `state_dict` or `module` entry, or bare)."""
    if not isinstance(checkpoint, dict):
        raise ConversionError(f"{source}: expected a state dict; found a {type(checkpoint).__name__}.")
    for key in ("model", "state_dict", "module"):
        if isinstance(checkpoint.get(key), dict):
            checkpoint = checkpoint[key]
            break
    not_tensors = sorted(k for k, v in checkpoint.items() if not isinstance(v, torch.Tensor))
    if not_tensors:
        raise ConversionError(
            f"{source}: expected a state dict of tensors; found entries that are not tensors: {not_tensors}."
        )
    if checkpoint and all(k.startswith("module.") for k in checkpoint):  # saved from DistributedDataParallel
        checkpoint = {k[len("module.") :]: v for k, v in checkpoint.items()}
    return dict(checkpoint)


def detect_kind(state_dict: dict[str, torch.Tensor]) -> str:
    """Which published format a state dict is in, from its keys."""
    keys = set(state_dict)
    if not {"patch_embed.proj.weight", "cls_token", "pos_embed"} <= keys:
        raise ConversionError(
            "Not a published MRM/MAE ViT checkpoint: expected `patch_embed.proj.weight`, `cls_token` and "
            f"`pos_embed`; found keys such as {sorted(keys)[:8]}."
        )
    if any(k.startswith(("bert_encoder.", "bert_mlp.")) for k in keys):
        return "pretraining"
    if "head.weight" in keys:
        return "classifier"
    return "encoder"


def _rename_blocks(key: str, source_prefix: str, target_prefix: str) -> str | None:
    match = re.fullmatch(rf"{re.escape(source_prefix)}\.(\d+)\.(.+)\.(weight|bias)", key)
    if match is None or match.group(2) not in BLOCK_RENAMES:
        return None
    index, name, kind = match.groups()
    return f"{target_prefix}.{index}.{BLOCK_RENAMES[name]}.{kind}"


def _convert_report_layers(state_dict: dict[str, torch.Tensor], converted: dict, used: set) -> None:
    """BERT's encoder layers, with the separate query/key/value projections fused into one qkv."""
    pattern = re.compile(rf"{re.escape(BERT)}encoder\.layer\.(\d+)\.(.+)\.(weight|bias)")
    for key in state_dict:
        match = pattern.fullmatch(key)
        if match is None:
            continue
        index, name, kind = match.groups()
        if name in BERT_LAYER_RENAMES:
            converted[f"report_branch.layers.{index}.{BERT_LAYER_RENAMES[name]}.{kind}"] = state_dict[key]
            used.add(key)
        elif name in ("attention.self.query", "attention.self.key", "attention.self.value"):
            parts = [f"{BERT}encoder.layer.{index}.attention.self.{p}.{kind}" for p in ("query", "key", "value")]
            if all(p in state_dict for p in parts):
                converted[f"report_branch.layers.{index}.attention.qkv.{kind}"] = torch.cat(
                    [state_dict[p] for p in parts]
                )
                used.update(parts)


def convert_state_dict(state_dict: dict[str, torch.Tensor], kind: str) -> dict[str, torch.Tensor]:
    """Rename a published state dict to the HF model of `kind`. Raises ConversionError naming unplaceable keys."""
    converted, unplaced = _convert(state_dict, kind)
    if unplaced:
        raise ConversionError(
            f"This {kind} checkpoint: expected keys that fit {MODEL_CLASSES[kind].__name__}; found "
            f"{_unplaced(unplaced)}."
        )
    return converted


def _unplaced(keys: list[str]) -> str:
    return f"{len(keys)} key(s) cannot be placed: {keys}"


def _convert(state_dict: dict[str, torch.Tensor], kind: str) -> tuple[dict[str, torch.Tensor], list[str]]:
    """The renamed state dict, and the source keys that have no place in it."""
    if kind not in KINDS:
        raise ConversionError(f"kind: expected one of {KINDS}; found {kind!r}.")
    encoder_prefix = "image_encoder." if kind in ("pretraining", "classifier") else ""
    converted, used = {}, set()

    for key, tensor in state_dict.items():
        if key in ENCODER_RENAMES:
            if key.startswith("fc_norm.") and kind != "classifier":
                continue
            target = encoder_prefix + ENCODER_RENAMES[key]
        elif kind == "classifier" and key in ("head.weight", "head.bias"):
            target = "classifier." + key.split(".")[1]
        elif kind == "pretraining" and key in DECODER_RENAMES:
            target = DECODER_RENAMES[key]
        elif kind == "pretraining" and key in REPORT_RENAMES:
            target = REPORT_RENAMES[key]
        else:
            target = _rename_blocks(key, "blocks", encoder_prefix + "layers")
            if target is None and kind == "pretraining":
                target = _rename_blocks(key, "decoder_blocks", "image_decoder.layers")
            if target is None:
                continue
        converted[target] = tensor
        used.add(key)

    if kind == "pretraining":
        _convert_report_layers(state_dict, converted, used)
        bias_keys = [k for k in (MLM + "bias", MLM + "decoder.bias") if k in state_dict]
        if len(bias_keys) == 2 and not torch.equal(state_dict[bias_keys[0]], state_dict[bias_keys[1]]):
            raise ConversionError(
                f"`{bias_keys[0]}` and `{bias_keys[1]}`: expected one tensor, as in the published model; found two "
                "that differ."
            )
        if bias_keys:
            converted["report_branch.head.decoder.bias"] = state_dict[bias_keys[0]]
            used.update(bias_keys)
        if POSITION_IDS_KEY in state_dict:
            position_ids = state_dict[POSITION_IDS_KEY]
            if not torch.equal(position_ids.flatten().long(), torch.arange(position_ids.numel())):
                found = position_ids.flatten()[:6].tolist()
                raise ConversionError(
                    f"`{POSITION_IDS_KEY}`: expected 0, 1, 2, ... as in a standard BERT; found {found}"
                    f"{' ...' if position_ids.numel() > 6 else ''}."
                )
            used.add(POSITION_IDS_KEY)
        used.update(k for k in UNUSED_PUBLISHED_KEYS if k in state_dict)

    return converted, sorted(set(state_dict) - used)


def config_from_state_dict(
    state_dict: dict[str, torch.Tensor], kind: str, base: MRMConfig | None = None
) -> MRMConfig:
    """An MRMConfig whose sizes are read off a published state dict; head counts and the rest come from `base`.

    A size whose key is absent keeps `base`'s value, so that `build_model` can name every missing key at once.
    """
    base = base if base is not None else MRMConfig()
    sizes = base.to_dict()
    for key in ("model_type", "transformers_version", "architectures", "auto_map"):
        sizes.pop(key, None)

    def shape(key: str) -> tuple[int, ...] | None:
        """The shape of `key`; for a layer's key (`blocks.0.…`), of the first layer that has it; None if absent."""
        if key in state_dict:
            return tuple(state_dict[key].shape)
        prefix, _, rest = key.partition(".0.")
        pattern = re.compile(rf"{re.escape(prefix)}\.(\d+)\.{re.escape(rest)}")
        layers = sorted((int(m.group(1)), k) for k in state_dict if rest and (m := pattern.fullmatch(k)))
        return tuple(state_dict[layers[0][1]].shape) if layers else None

    def depth(prefix: str) -> int:
        indices = {int(m.group(1)) for k in state_dict if (m := re.match(rf"{re.escape(prefix)}\.(\d+)\.", k))}
        return max(indices) + 1 if indices else 0

    def put(**found) -> None:
        sizes.update({name: value for name, value in found.items() if value is not None})

    def dim(key: str, axis: int) -> int | None:
        found = shape(key)
        return None if found is None else found[axis]

    patch_weight, pos_embed = shape("patch_embed.proj.weight"), shape("pos_embed")
    if patch_weight is not None:
        put(hidden_size=patch_weight[0], num_channels=patch_weight[1], patch_size=patch_weight[2])
    if pos_embed is not None:
        put(image_size=round((pos_embed[1] - 1) ** 0.5) * sizes["patch_size"])
    put(num_hidden_layers=depth("blocks") or None, intermediate_size=dim("blocks.0.mlp.fc1.weight", 0))
    if kind == "classifier":
        sizes.pop("id2label", None)
        sizes.pop("label2id", None)
        sizes["num_labels"] = dim("head.weight", 0) or base.num_labels
    if kind == "pretraining":
        patch, channels = sizes["patch_size"], sizes["num_channels"]
        prediction = dim("decoder_pred.weight", 0)
        if prediction is not None:
            reconstruction_patch = round((prediction / channels) ** 0.5)
            if reconstruction_patch**2 * channels != prediction or reconstruction_patch % patch:
                raise ConversionError(
                    f"`decoder_pred.weight`: expected (k * {patch})^2 * {channels} values per patch for a whole k; "
                    f"found {prediction}."
                )
            put(reconstruction_size=sizes["image_size"] * reconstruction_patch // patch)
        word_embeddings = shape(BERT + "embeddings.word_embeddings.weight")
        put(
            decoder_hidden_size=dim("decoder_embed.weight", 0),
            decoder_num_hidden_layers=depth("decoder_blocks") or None,
            decoder_intermediate_size=dim("decoder_blocks.0.mlp.fc1.weight", 0),
            report_vocab_size=None if word_embeddings is None else word_embeddings[0],
            report_hidden_size=None if word_embeddings is None else word_embeddings[1],
            report_num_hidden_layers=depth(BERT + "encoder.layer") or None,
            report_intermediate_size=dim(BERT + "encoder.layer.0.intermediate.dense.weight", 0),
            report_max_position_embeddings=dim(BERT + "embeddings.position_embeddings.weight", 0),
            report_type_vocab_size=dim(BERT + "embeddings.token_type_embeddings.weight", 0),
        )
    if sizes["reconstruction_size"] % sizes["image_size"]:
        # No decoder in the weights says otherwise (an encoder or a classifier at another resolution): the published
        # ratio, as MRMConfig derives it, rather than a pre-training setting the checkpoint does not have.
        sizes["reconstruction_size"] = 2 * sizes["image_size"]
    try:
        return MRMConfig(**sizes)
    except Exception as error:
        raise ConversionError(
            f"The sizes read from this {kind} checkpoint: expected ones that make a valid MRMConfig; found {error}"
        ) from error


def _optional_keys(kind: str) -> set[str]:
    """Keys a published checkpoint of `kind` lacks by design; they keep their fresh initialisation."""
    if kind == "encoder":  # the MAE encoder has no fine-tuning `fc_norm`
        return {"pooler.layernorm.weight", "pooler.layernorm.bias"}
    return set()


def build_model(state_dict: dict[str, torch.Tensor], kind: str | None = None, config: MRMConfig | None = None):
    """The HF model of a published state dict, fully checked: every key placed, every required key present."""
    kind = kind or detect_kind(state_dict)
    config = config_from_state_dict(state_dict, kind, config)
    if kind == "classifier":
        # Every published fine-tuning used BCE-with-logits (NIH, CheXpert, RSNA and COVID alike).
        config.problem_type = config.problem_type or "multi_label_classification"
    converted, unplaced = _convert(state_dict, kind)
    model = MODEL_CLASSES[kind](config)
    expected = model.state_dict()

    missing = sorted(set(expected) - set(converted) - _optional_keys(kind))
    unexpected = sorted(set(converted) - set(expected))
    wrong_shape = sorted(
        f"{k}: checkpoint {tuple(converted[k].shape)}, model {tuple(expected[k].shape)}"
        for k in set(converted) & set(expected)
        if converted[k].shape != expected[k].shape
    )
    problems = [_unplaced(unplaced)] if unplaced else []
    if missing:
        problems.append(f"missing required keys: {missing}")
    if unexpected:
        problems.append(f"keys the model does not have: {unexpected}")
    if wrong_shape:
        problems.append(f"shape mismatches: {wrong_shape}")
    if problems:
        raise ConversionError(
            f"This {kind} checkpoint: expected keys and shapes that fit {type(model).__name__}; found "
            + "; ".join(problems) + "."
        )

    model.load_state_dict(converted, strict=False)
    return model.eval()


def convert_checkpoint(
    checkpoint: str | Path,
    output_dir: str | Path,
    kind: str | None = None,
    config: MRMConfig | None = None,
    label_names: list[str] | None = None,
    overwrite: bool = False,
    tokenizer: str | Path | None = None,
):
    """Convert a published checkpoint file and save the HF model (safetensors + code for trust_remote_code), its image
    processor and, with `tokenizer`, the report tokenizer and the MRMProcessor."""
    output_dir = refuse_nonempty_output(output_dir, overwrite)
    state_dict = load_checkpoint(checkpoint)
    model = build_model(state_dict, kind, config)
    nonfinite = sorted(k for k, v in state_dict.items() if v.is_floating_point() and not torch.isfinite(v).all())
    if nonfinite:
        logger.warning(
            "warning: %d tensor(s) of %s hold NaN or infinite values: %s. They are converted as they are; the model "
            "computes NaN or inf wherever they are used.", len(nonfinite), checkpoint, nonfinite,
        )  # fmt: skip
    if label_names is not None:
        if not isinstance(model, MRMForImageClassification) or len(label_names) != model.config.num_labels:
            found = model.config.num_labels if isinstance(model, MRMForImageClassification) else "no classifier"
            raise ConversionError(
                f"Label names: expected one per output of the checkpoint ({found} outputs); found {len(label_names)}."
            )
        model.config.id2label = dict(enumerate(label_names))
        model.config.label2id = {name: i for i, name in enumerate(label_names)}
    processing = processing_for(model, tokenizer)
    model.save_pretrained(output_dir)
    processing.save_pretrained(output_dir)
    return model


# Keys a saved config.json may hold besides the fields of `MRMConfig().to_dict()`.
CONFIG_FILE_KEYS = {"auto_map", "num_labels", "torch_dtype"}


def read_config(path: str | Path) -> MRMConfig:
    """The MRMConfig in a `--config` JSON file, refusing what would silently build another model: unknown keys
    (a misspelt `num_attention_head` would leave the default 12 heads), another model_type, invalid values."""
    path = Path(path)
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise ConversionError(f"--config {path}: expected a readable file; found {error.strerror or error}.") from error
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ConversionError(f"--config {path}: expected valid JSON; found {error}.") from error
    if not isinstance(values, dict):
        raise ConversionError(
            f"--config {path}: expected a JSON object of MRMConfig fields; found a {type(values).__name__}."
        )
    if values.get("model_type", "mrm") != "mrm":
        raise ConversionError(f"--config {path}: expected model_type 'mrm'; found model_type {values['model_type']!r}.")
    known = set(MRMConfig().to_dict()) | CONFIG_FILE_KEYS
    unknown = sorted(set(values) - known)
    if unknown:
        hints = [f"{key!r} (did you mean {match[0]!r}?)" if (match := difflib.get_close_matches(key, known, 1)) else repr(key)
                 for key in unknown]  # fmt: skip
        raise ConversionError(
            f"--config {path}: expected only keys that MRMConfig knows; found {', '.join(hints)}."
        )
    try:
        return MRMConfig(**{k: v for k, v in values.items() if k not in ("model_type", "auto_map")})
    except Exception as error:
        raise ConversionError(f"--config {path}: expected values that make a valid MRMConfig; found {error}") from error


def processing_for(model, tokenizer: str | Path | None = None):
    """What a converted folder carries beside the model: the image processor of the view the model takes or, given the
    report tokenizer (the published `mimic_wordpiece.json` or a tokenizer folder), the `MRMProcessor` of both."""
    image_processor = encoder_image_processor(model.config.image_size)
    if tokenizer is None:
        return image_processor
    from transformers import AutoTokenizer

    from .tokenization_mrm import load_published_tokenizer

    path = Path(tokenizer)
    if path.is_file():
        loaded = load_published_tokenizer(path)
    elif path.is_dir():
        loaded = AutoTokenizer.from_pretrained(path)
    else:
        raise FileNotFoundError(f"--tokenizer {tokenizer}: expected a tokenizer file or folder; found nothing there.")
    if hasattr(model, "report_branch") and len(loaded) > model.config.report_vocab_size:
        raise ConversionError(
            f"--tokenizer {tokenizer}: expected at most {model.config.report_vocab_size} tokens (the checkpoint's "
            f"report vocabulary); found {len(loaded)}."
        )
    return processor_for_model(model, loaded, image_processor)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mrm_hf.convert", description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True, help="published .pth/.bin/.safetensors file")
    parser.add_argument("--output-dir", required=True, help="folder for the Hugging Face checkpoint")
    parser.add_argument("--kind", choices=KINDS, help="checkpoint format; detected from the keys when omitted")
    parser.add_argument("--config", help="config.json with non-published sizes (e.g. head counts); shapes are read off the weights")
    parser.add_argument("--label-names", help="comma-separated class names of a classifier, in output order")
    parser.add_argument("--overwrite", action="store_true", help="replace files in a non-empty output folder")
    parser.add_argument("--tokenizer", help="the report tokenizer to ship with the model: mimic_wordpiece.json or a "
                        "tokenizer folder; the folder then also holds the MRMProcessor")
    args = parser.parse_args(argv)
    labels = [name.strip() for name in args.label_names.split(",")] if args.label_names else None
    try:
        config = read_config(args.config) if args.config else None
        model = convert_checkpoint(args.checkpoint, args.output_dir, args.kind, config, labels, args.overwrite, args.tokenizer)
    except (ConversionError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"Wrote {type(model).__name__} ({sum(p.numel() for p in model.parameters()):,} parameters) to {args.output_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
