"""The reconstruction figure of pre-training: original, masked input and reconstruction, one row per sample."""

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from .image_processing_mrm import MRMImageProcessor
from .modeling_mrm import MRMForPreTraining


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
    model: MRMForPreTraining,
    pixel_values: torch.Tensor,
    image_processor: MRMImageProcessor,
    path,
    seed: int = 0,
    is_main_process: bool = True,
) -> Path:
    """A PNG grid, one row per sample: original | masked input | reconstruction.

    In a run of several processes, call it on every one: a sharded (FSDP, DeepSpeed ZeRO-3) model's forward gathers
    its weights from all of them. Only the main process writes the file.
    """
    noise = torch.rand(pixel_values.shape[0], model.config.num_patches, generator=torch.Generator().manual_seed(seed))
    device = next(model.parameters()).device
    columns = reconstruct(model, pixel_values.to(device), noise.to(device))
    path = Path(path)
    if not is_main_process:
        return path
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
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.save(path)
    return path


__all__ = ["reconstruct", "save_reconstruction_figure"]
