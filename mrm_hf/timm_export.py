"""Export an MRM encoder or fine-tuned classifier to timm's ViT layout and Hub folder format.

    python -m mrm_hf.timm_export --checkpoint mrm-base --output-dir mrm-base-timm

The folder holds `model.safetensors` (timm's `VisionTransformer` keys) and `config.json` (`architecture`, `model_args`,
`pretrained_cfg`), so `timm.create_model("local-dir:mrm-base-timm", pretrained=True)` (or `hf-hub:` once uploaded)
builds timm's `vit_base_patch16_224` with average pooling and `fc_norm`, the published fine-tuning model, and gives
the features (`num_classes=0`) or logits of `MRMModel`'s `pooler_output` or `MRMForImageClassification`.

The conversion is the inverse of `convert.py`'s renames, as pure functions over state dicts. With average pooling
timm has no final `norm` (its `fc_norm` takes the pooled tokens), so the encoder's final LayerNorm is not exported:
it does not touch the pooled features. A pre-training folder's encoder has no trained pooling LayerNorm; it is
exported as `MRMModel` loads it, the identity LayerNorm (weight 1, bias 0) the published fine-tuning started from.
"""

import argparse
import json
import re
import sys
from pathlib import Path

import torch

from .configuration_mrm import MRMConfig
from .convert import BLOCK_RENAMES, ENCODER_RENAMES, ConversionError, load_mrm_config, refuse_nonempty_output
from .image_processing_mrm import MRM_MEAN, MRM_STD
from .modeling_mrm import MRMForImageClassification, MRMModel


TIMM_ARCHITECTURE = "vit_base_patch16_224"
TIMM_LAYER_NORM_EPS = 1e-6  # timm's ViT builds its LayerNorms with this epsilon; a config cannot change it
TIMM_ACTIVATIONS = {"gelu": "gelu"}  # HF activation name -> timm act_layer name of the same function


def timm_model_args(config: MRMConfig, num_classes: int) -> dict:
    """timm `VisionTransformer` arguments of the same network, or a ConversionError naming what timm cannot build."""
    problems = []
    if config.layer_norm_eps != TIMM_LAYER_NORM_EPS:
        problems.append(f"layer_norm_eps is {config.layer_norm_eps}, timm's ViT uses {TIMM_LAYER_NORM_EPS}")
    if config.hidden_act not in TIMM_ACTIVATIONS:
        problems.append(f"hidden_act is {config.hidden_act!r}, expected one of {sorted(TIMM_ACTIVATIONS)}")
    if int(config.hidden_size * (config.intermediate_size / config.hidden_size)) != config.intermediate_size:
        problems.append(f"intermediate_size {config.intermediate_size} is not what timm's mlp_ratio gives for "
                        f"hidden_size {config.hidden_size}")
    if problems:
        raise ConversionError(
            "This MRM layout: expected one that timm's ViT can build; found " + "; ".join(problems) + "."
        )
    return {
        "img_size": config.image_size,
        "patch_size": config.patch_size,
        "in_chans": config.num_channels,
        "embed_dim": config.hidden_size,
        "depth": config.num_hidden_layers,
        "num_heads": config.num_attention_heads,
        "mlp_ratio": config.intermediate_size / config.hidden_size,
        "qkv_bias": config.qkv_bias,
        "act_layer": TIMM_ACTIVATIONS[config.hidden_act],
        "class_token": True,
        "global_pool": "avg",
        "fc_norm": True,
        "num_classes": num_classes,
    }


def to_timm_state_dict(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """An `MRMModel` or `MRMForImageClassification` state dict in timm's ViT layout (avg pooling with fc_norm)."""
    encoder_renames = {target: source for source, target in ENCODER_RENAMES.items() if not source.startswith("norm.")}
    block_renames = {target: source for source, target in BLOCK_RENAMES.items()}
    converted, unplaced = {}, []
    for key, tensor in state_dict.items():
        name = key.removeprefix("image_encoder.")
        block = re.fullmatch(r"layers\.(\d+)\.(.+)\.(weight|bias)", name)
        if name in encoder_renames:
            converted[encoder_renames[name]] = tensor
        elif name in ("layernorm.weight", "layernorm.bias"):
            continue  # timm's avg-pool ViT has no final norm: fc_norm replaces it
        elif block is not None and block.group(2) in block_renames:
            index, part, kind = block.groups()
            converted[f"blocks.{index}.{block_renames[part]}.{kind}"] = tensor
        elif key in ("classifier.weight", "classifier.bias"):
            converted["head." + key.split(".")[1]] = tensor
        else:
            unplaced.append(key)
    if unplaced:
        raise ConversionError(
            f"This state dict: expected keys that timm's ViT has a place for; found {len(unplaced)} key(s) with no "
            f"place in timm's ViT: {unplaced}."
        )
    return converted


def timm_pretrained_cfg(config: MRMConfig, num_classes: int) -> dict:
    """timm's data config of the encoder's view: the published evaluation view (resize the short side, centre crop)."""
    cfg = {
        "tag": "mrm",
        "custom_load": False,
        "input_size": [config.num_channels, config.image_size, config.image_size],
        "fixed_input_size": True,
        "interpolation": "bilinear",
        "crop_pct": 1.0,
        "crop_mode": "center",
        "mean": [MRM_MEAN] * config.num_channels,
        "std": [MRM_STD] * config.num_channels,
        "num_classes": num_classes,
        "pool_size": None,
        "first_conv": "patch_embed.proj",
        "classifier": "head",
        "license": "mit",
    }
    if num_classes and config.id2label:
        cfg["label_names"] = [config.id2label[i] for i in sorted(config.id2label)]
    return cfg


def load_encoder_or_classifier(checkpoint: str | Path):
    """The model to export from an MRM folder: its classifier if it has one, else its encoder."""
    path = Path(checkpoint)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"--checkpoint {checkpoint}: expected an MRM folder with config.json; found none there (convert a "
            "published .pth first with `python -m mrm_hf.convert --checkpoint FILE --output-dir FOLDER`)."
        )
    config = load_mrm_config(path, where=f"--checkpoint {checkpoint}")
    classifier = any(name.endswith("ForImageClassification") for name in config.architectures or [])
    model_class = MRMForImageClassification if classifier else MRMModel
    model, loading = model_class.from_pretrained(path, output_loading_info=True)
    # An encoder taken from a pre-training folder has no trained pooling norm (fc_norm): that one starts at (1, 0).
    missing = [key for key in loading["missing_keys"] if not key.startswith(("pooler.layernorm.", "image_encoder.pooler."))]
    if classifier:
        missing = loading["missing_keys"]
    if missing:
        raise ConversionError(f"--checkpoint {checkpoint}: expected every encoder weight in the folder; found "
                              f"{len(missing)} missing, e.g. {sorted(missing)[:5]}. Nothing was written.")
    return model


def export_to_timm(checkpoint: str | Path, output_dir: str | Path, overwrite: bool = False):
    """Write `config.json` and `model.safetensors` of the timm ViT equivalent to an MRM folder's encoder or classifier."""
    from safetensors.torch import save_file

    output_dir = refuse_nonempty_output(output_dir, overwrite)
    model = load_encoder_or_classifier(checkpoint)
    config = model.config
    num_classes = config.num_labels if isinstance(model, MRMForImageClassification) else 0
    model_args = timm_model_args(config, num_classes)
    state_dict = to_timm_state_dict(model.state_dict())
    timm_config = {
        "architecture": TIMM_ARCHITECTURE,
        "num_classes": num_classes,
        "num_features": config.hidden_size,
        "global_pool": "avg",
        "model_args": model_args,
        "pretrained_cfg": timm_pretrained_cfg(config, num_classes),
    }
    output_dir.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in state_dict.items()}, str(output_dir / "model.safetensors"),
              metadata={"format": "pt"})
    (output_dir / "config.json").write_text(json.dumps(timm_config, indent=2) + "\n")
    return model, state_dict


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mrm_hf.timm_export", description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True,
                        help="an MRM folder: an encoder, pre-training model or classifier")
    parser.add_argument("--output-dir", required=True, help="folder for timm's model.safetensors and config.json")
    parser.add_argument("--overwrite", action="store_true", help="replace files in a non-empty output folder")
    args = parser.parse_args(argv)
    try:
        model, _ = export_to_timm(args.checkpoint, args.output_dir, args.overwrite)
    except (ValueError, FileNotFoundError) as error:  # ConversionError included
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"Wrote timm's ViT equivalent of {type(model).__name__} to {args.output_dir}")
    return 0


__all__ = ["export_to_timm", "main", "to_timm_state_dict", "timm_model_args", "timm_pretrained_cfg"]


if __name__ == "__main__":
    sys.exit(main())
