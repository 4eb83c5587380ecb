"""Segmentation with MRM, shared by `examples/run_segmentation.py`: UperNet on `MRMBackbone` with the published loss.

The published SIIM-ACR fine-tuning (an MMSegmentation 0.25 config): UperNet (768 channels, pool
scales 1, 2, 3, 6) and an auxiliary FCN head on the third pyramid level, each trained with sigmoid focal loss x 2.0
plus a Dice loss x 1.0 that leaves out the background, the auxiliary head at 0.4 of that. The model saves as a plain
`UperNetForSemanticSegmentation` folder (with the MRM image processor in segmentation mode), which
`AutoModelForSemanticSegmentation` and `pipeline("image-segmentation")` open after `import mrm_hf`, or with
`trust_remote_code=True` without it (the folder carries the code of its UperNet,
`modeling_mrm.UperNetForSemanticSegmentation`).
"""

import random
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from transformers import AutoConfig
from transformers.modeling_outputs import SemanticSegmenterOutput

from .configuration_mrm import MRMConfig, MRMUperNetConfig
from .data.segmentation import rle_decode
from .image_processing_mrm import MRM_MEAN, MRM_STD, MRMImageProcessor, load_mask, load_radiograph
from . import modeling_mrm
from .modeling_mrm import MRMBackbone


IGNORE_INDEX = 255
PUBLISHED_DECODER_CHANNELS = 768
PUBLISHED_POOL_SCALES = (1, 2, 3, 6)
PUBLISHED_AUXILIARY_CHANNELS = 256
PUBLISHED_AUXILIARY_WEIGHT = 0.4


# ---- data ------------------------------------------------------------------------------------------------------------


def read_pair(row: dict, rle_encoding: str = "relative") -> tuple[Image.Image, np.ndarray]:
    """A row's radiograph (PIL) and its 0/1 mask at the image's size; a bad mask raises naming its file."""
    image = load_radiograph(row["image_path"])
    if row["mask_path"]:
        mask = load_mask(row["mask_path"])
        if mask.shape != (image.height, image.width):
            raise ValueError(f"Expected the mask {row['mask_path']} at its image's size {image.width}x{image.height} "
                             f"({row['image_path']}); found {mask.shape[1]}x{mask.shape[0]}.")
    else:
        mask = np.zeros((image.height, image.width), dtype=np.uint8)
        for rle in row["rle"]:
            mask |= rle_decode(rle, image.height, image.width, rle_encoding, name=f"{row['name']} ({row['image_path']})")
    return image, mask


class SegmentationTransform:
    """`Dataset.set_transform` for image/mask rows: `pixel_values` and uint8 `labels` from the image processor, with
    the published random horizontal flip (probability 0.5) of both on the training split."""

    def __init__(self, image_processor: MRMImageProcessor, train: bool, flip_probability: float = 0.5,
                 rle_encoding: str = "relative"):
        self.image_processor, self.train = image_processor, train
        self.flip_probability, self.rle_encoding = flip_probability, rle_encoding

    def __call__(self, batch: dict[str, list]) -> dict[str, list]:
        rows = [dict(zip(batch, values)) for values in zip(*batch.values())]
        pairs = [read_pair(row, self.rle_encoding) for row in rows]
        features = self.image_processor([image for image, _ in pairs], segmentation_maps=[mask for _, mask in pairs],
                                        return_tensors="np")
        pixel_values, labels = list(features["pixel_values"]), list(features["labels"])
        if self.train:
            for index in range(len(rows)):
                if random.random() < self.flip_probability:
                    pixel_values[index] = pixel_values[index][..., ::-1].copy()
                    labels[index] = labels[index][..., ::-1].copy()
        return {"pixel_values": pixel_values, "labels": labels}


def collate_segmentation(examples: list[dict]) -> dict[str, torch.Tensor]:
    """`pixel_values` as float (batch, 3, H, W) and `labels` as uint8 (batch, H, W) class ids (compact for evaluation)."""
    return {
        "pixel_values": torch.stack([torch.as_tensor(example["pixel_values"]) for example in examples]),
        "labels": torch.stack([torch.as_tensor(example["labels"]) for example in examples]),
    }


# ---- the published loss ----------------------------------------------------------------------------------------------


def focal_loss(logits: torch.Tensor, labels: torch.Tensor, gamma: float = 2.0, alpha: float = 0.5) -> torch.Tensor:
    """MMSegmentation's sigmoid focal loss: every class a sigmoid against its one-hot target, averaged over classes
    and labelled pixels (IGNORE_INDEX left out)."""
    valid = (labels != IGNORE_INDEX).unsqueeze(1)
    target = F.one_hot(torch.where(valid[:, 0], labels, 0), logits.shape[1]).permute(0, 3, 1, 2).to(logits.dtype)
    probability = logits.sigmoid()
    one_minus_pt = (1 - probability) * target + probability * (1 - target)
    weight = (alpha * target + (1 - alpha) * (1 - target)) * one_minus_pt.pow(gamma)
    loss = F.binary_cross_entropy_with_logits(logits, target, reduction="none") * weight * valid
    return loss.sum() / (valid.sum() * logits.shape[1]).clamp(min=1)


def dice_loss(logits: torch.Tensor, labels: torch.Tensor, class_weight=(0.0, 1.0), smooth: float = 1.0,
              exponent: float = 2.0) -> torch.Tensor:
    """The published Dice loss: softmax probabilities, per image and class 1 - (2|P.T| + 1) / (sum P^2 + sum T^2 + 1),
    weighted per class (background 0), summed over classes, divided by their number, averaged over images."""
    num_classes = logits.shape[1]
    valid = (labels != IGNORE_INDEX).flatten(1)
    probability = logits.softmax(dim=1).flatten(2)
    target = F.one_hot(labels.long().clamp(0, num_classes - 1), num_classes).permute(0, 3, 1, 2).flatten(2)
    target = target.to(probability.dtype)
    numerator = 2 * (probability * target * valid[:, None]).sum(-1) + smooth
    denominator = (probability.pow(exponent) + target.pow(exponent)).sum(-1) + smooth
    per_class = 1 - numerator / denominator  # (batch, classes)
    weights = torch.as_tensor(class_weight, dtype=per_class.dtype, device=per_class.device)
    return ((per_class * weights).sum(dim=1) / num_classes).mean()


def published_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Focal x 2.0 + Dice x 1.0 (background weight 0), the published decode-head loss."""
    return 2.0 * focal_loss(logits, labels) + 1.0 * dice_loss(logits, labels)


class UperNetWithPublishedLoss(modeling_mrm.UperNetForSemanticSegmentation):
    """UperNet on `MRMBackbone` (`modeling_mrm.UperNetForSemanticSegmentation`) trained with the published loss on
    both heads (the auxiliary one at `config.auxiliary_loss_weight`). Its weights are a plain UperNet's: the saved
    folder loads as one."""

    accepts_loss_kwargs = False

    def forward(self, pixel_values: torch.Tensor, labels: torch.Tensor | None = None,
                output_hidden_states: bool | None = None, **kwargs) -> SemanticSegmenterOutput:
        outputs = self.backbone(pixel_values, output_hidden_states=output_hidden_states)
        size = pixel_values.shape[2:]
        logits = F.interpolate(self.decode_head(outputs.feature_maps), size=size, mode="bilinear", align_corners=False)
        loss = None
        if labels is not None:
            labels = labels.to(logits.device).long()
            if labels.shape != (logits.shape[0], *size):
                raise ValueError(f"Expected labels of shape (batch, height, width) = {(logits.shape[0], *size)}; "
                                 f"found {tuple(labels.shape)}.")
            loss = published_loss(logits.float(), labels)
            if self.auxiliary_head is not None:
                auxiliary = F.interpolate(self.auxiliary_head(outputs.feature_maps), size=size, mode="bilinear",
                                          align_corners=False)
                loss = loss + self.config.auxiliary_loss_weight * published_loss(auxiliary.float(), labels)
        return SemanticSegmenterOutput(loss=loss, logits=logits, hidden_states=outputs.hidden_states)

    def save_pretrained(self, save_directory, *args, **kwargs):
        # Only the training loss differs from modeling_mrm's UperNet, whose weights and config these are: save as that
        # class, so that the folder carries its code (modeling_mrm.py, configuration_mrm.py) for trust_remote_code,
        # not this module's, and config.json names the UperNet class that opens it.
        self.__class__ = modeling_mrm.UperNetForSemanticSegmentation
        try:
            return self.save_pretrained(save_directory, *args, **kwargs)
        finally:
            self.__class__ = UperNetWithPublishedLoss


def build_segmentation_model(
    model_name_or_path: str,
    label_names: tuple[str, str] = ("background", "foreground"),
    drop_path_rate: float = 0.1,
    decoder_channels: int = PUBLISHED_DECODER_CHANNELS,
    auxiliary_channels: int = PUBLISHED_AUXILIARY_CHANNELS,
    out_indices: list[int] | None = None,
) -> UperNetWithPublishedLoss:
    """UperNet (new heads and neck) on the encoder of any MRM checkpoint; every encoder weight must load."""
    backbone_config = AutoConfig.from_pretrained(model_name_or_path)
    if not isinstance(backbone_config, MRMConfig):
        raise ValueError(f"Expected an MRM checkpoint (model_type 'mrm') at {model_name_or_path}; found model_type "
                         f"{backbone_config.model_type!r}. Convert published .pth files with `python -m mrm_hf.convert`.")
    backbone_config.drop_path_rate = drop_path_rate
    if out_indices is not None:
        backbone_config.out_indices = list(out_indices)
    backbone, info = MRMBackbone.from_pretrained(model_name_or_path, config=backbone_config, output_loading_info=True)
    missing = [key for key in info["missing_keys"] if not key.startswith("neck.")]
    if missing:
        raise ValueError(f"{model_name_or_path} lacks encoder weights: {missing[:10]}. Expected an MRM encoder, "
                         "pre-training model or classifier checkpoint.")
    config = MRMUperNetConfig(
        backbone_config=backbone.config,
        hidden_size=decoder_channels,
        pool_scales=list(PUBLISHED_POOL_SCALES),
        auxiliary_channels=auxiliary_channels,
        auxiliary_loss_weight=PUBLISHED_AUXILIARY_WEIGHT,
        num_labels=len(label_names),
        id2label=dict(enumerate(label_names)),
        label2id={name: index for index, name in enumerate(label_names)},
    )
    model = UperNetWithPublishedLoss(config)
    model.backbone.load_state_dict(backbone.state_dict())
    model.backbone.embeddings.position_embeddings.requires_grad_(True)
    return model


# ---- evaluation ------------------------------------------------------------------------------------------------------


def pack_masks(masks) -> list[bytes]:
    """Each (H, W) 0/1 mask as the bytes of `np.packbits` of its pixels: the compact input of the `mask_dice` metric."""
    masks = np.asarray(masks)
    return [row.tobytes() for row in np.packbits(masks.reshape(len(masks), -1) != 0, axis=1)]


def tint(image: np.ndarray, mask: np.ndarray, colour=(255, 0, 0)) -> np.ndarray:
    """An (H, W) gray or (H, W, 3) uint8 image as RGB, half `colour` where `mask` is on: how every overlay of the
    project draws a mask."""
    rgb = np.asarray(image)
    rgb = (np.repeat(rgb[..., None], 3, axis=-1) if rgb.ndim == 2 else rgb).astype(np.float32)
    on = np.asarray(mask, dtype=bool)
    rgb[on] = 0.5 * rgb[on] + 0.5 * np.asarray(colour, dtype=np.float32)
    return rgb.astype(np.uint8)


def write_overlay(path, pixel_values: np.ndarray, true_mask: np.ndarray, predicted_mask: np.ndarray) -> Path:
    """A PNG of three panels: the image, the true mask (green) and the predicted mask (red) over it."""
    gray = np.clip(pixel_values[0] * MRM_STD + MRM_MEAN, 0.0, 1.0)
    gray = (gray * 255).astype(np.uint8)
    panels = [tint(gray, np.zeros_like(gray)), tint(gray, true_mask, (0, 255, 0)), tint(gray, predicted_mask)]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.concatenate(panels, axis=1)).save(path)
    return path


__all__ = [
    "SegmentationTransform",
    "UperNetWithPublishedLoss",
    "build_segmentation_model",
    "collate_segmentation",
    "dice_loss",
    "focal_loss",
    "pack_masks",
    "published_loss",
    "read_pair",
    "tint",
    "write_overlay",
]
