"""Segmentation with MRM, shared by `examples/run_segmentation.py`: UperNet on `MRMBackbone` with the published loss.
(The image/mask rows are read by `mrm_hf.data.segmentation`, augmented by `mrm_hf.transforms.SegmentationTransform` and
batched by `mrm_hf.data.collator.collate_segmentation`.)

The published SIIM-ACR fine-tuning (an MMSegmentation 0.25 config): UperNet (768 channels, pool
scales 1, 2, 3, 6) and an auxiliary FCN head on the third pyramid level, each trained with sigmoid focal loss x 2.0
plus a Dice loss x 1.0 that leaves out the background, the auxiliary head at 0.4 of that. The model saves as a plain
`UperNetForSemanticSegmentation` folder (with the MRM image processor in segmentation mode), which
`AutoModelForSemanticSegmentation` and `pipeline("image-segmentation")` open after `import mrm_hf`, or with
`trust_remote_code=True` without it (the folder carries the code of its UperNet,
`modeling_mrm.UperNetForSemanticSegmentation`).
"""

import torch
import torch.nn.functional as F
from transformers.modeling_outputs import SemanticSegmenterOutput

from . import modeling_mrm
from .configuration_mrm import MRMUperNetConfig
from .convert import load_mrm_config
from .modeling_mrm import MRMBackbone


IGNORE_INDEX = 255
PUBLISHED_DECODER_CHANNELS = 768
PUBLISHED_POOL_SCALES = (1, 2, 3, 6)
PUBLISHED_AUXILIARY_CHANNELS = 256
PUBLISHED_AUXILIARY_WEIGHT = 0.4


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
                raise ValueError(f"labels: expected the shape (batch, height, width) = {(logits.shape[0], *size)}; "
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
    backbone_config = load_mrm_config(model_name_or_path)
    backbone_config.drop_path_rate = drop_path_rate
    if out_indices is not None:
        backbone_config.out_indices = list(out_indices)
    backbone, info = MRMBackbone.from_pretrained(model_name_or_path, config=backbone_config, output_loading_info=True)
    missing = [key for key in info["missing_keys"] if not key.startswith("neck.")]
    if missing:
        raise ValueError(f"{model_name_or_path}: expected an MRM encoder, pre-training model or classifier checkpoint, "
                         f"with every encoder weight; found none for {missing[:10]}.")
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


__all__ = [
    "UperNetWithPublishedLoss",
    "build_segmentation_model",
    "dice_loss",
    "focal_loss",
    "published_loss",
]
