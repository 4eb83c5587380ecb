"""Drawing: the reconstruction figure of pre-training (original, masked input and reconstruction, one row per sample),
and `tint`, how every overlay of the project draws a mask over a radiograph."""

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

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


TILE = 256
"""Least side of a tile, in pixels: small views are enlarged (nearest neighbour, so patches stay sharp) to read at a
glance."""
CAPTION = (
    "Reconstruction: the visible patches are the original's, pasted back; each hidden patch is predicted and, as the "
    "loss normalises every target patch (norm-pix), shown with the true patch's mean and variance."
)


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def _wrap(draw: ImageDraw.ImageDraw, text: str, font, width: int) -> list[str]:
    lines, line = [], ""
    for word in text.split():
        candidate = f"{line} {word}".strip()
        if line and draw.textlength(candidate, font=font) > width:
            lines.append(line)
            line = word
        else:
            line = candidate
    return [*lines, line] if line else lines


def save_reconstruction_figure(
    model: MRMForPreTraining,
    pixel_values: torch.Tensor,
    image_processor: MRMImageProcessor,
    path,
    seed: int = 0,
    is_main_process: bool = True,
) -> Path:
    """A PNG grid, one row per sample: original | masked input | reconstruction, under column titles, with a caption
    that says what the reconstruction shows (visible patches pasted back; predictions at the true patch's mean and
    variance under norm-pix). Tiles are at least `TILE` px.

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
    side = pixel_values.shape[-1]
    scale = max(1, -(-TILE // side))  # a whole factor, so every patch is a block of pixels
    tile = side * scale

    def to_image(tensor: torch.Tensor) -> Image.Image:
        gray = (tensor.cpu() * std + mean).clamp(0, 1).mean(0)  # three identical channels
        image = Image.fromarray((gray.numpy() * 255).round().astype(np.uint8), mode="L")
        return image.resize((tile, tile), Image.Resampling.NEAREST)

    percent = round(100 * model.config.mask_ratio)
    titles = ("original", f"masked input ({percent}% hidden)", "reconstruction")
    pad = 12
    title_font, caption_font = _font(max(14, tile // 14)), _font(max(12, tile // 18))
    width = 3 * tile + 4 * pad
    measure = ImageDraw.Draw(Image.new("L", (1, 1)))
    caption = _wrap(measure, CAPTION, caption_font, width - 2 * pad)
    title_height = int(title_font.size * 1.6) if hasattr(title_font, "size") else 16
    line_height = int(caption_font.size * 1.4) if hasattr(caption_font, "size") else 14
    height = title_height + len(pixel_values) * (tile + pad) + pad + len(caption) * line_height + pad
    figure = Image.new("L", (width, height), color=255)
    draw = ImageDraw.Draw(figure)
    for column, title in enumerate(titles):
        left = pad + column * (tile + pad)
        draw.text((left + (tile - draw.textlength(title, font=title_font)) / 2, pad // 3), title, fill=0,
                  font=title_font)  # fmt: skip
    for row in range(len(pixel_values)):
        for column, images in enumerate(columns):
            figure.paste(to_image(images[row]), (pad + column * (tile + pad), title_height + row * (tile + pad)))
    top = title_height + len(pixel_values) * (tile + pad) + pad // 2
    for number, line in enumerate(caption):
        draw.text((pad, top + number * line_height), line, fill=0, font=caption_font)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.save(path)
    return path


def tint(image: np.ndarray, mask: np.ndarray, colour=(255, 0, 0)) -> np.ndarray:
    """An (H, W) gray or (H, W, 3) uint8 image as RGB, half `colour` where `mask` is on: how every overlay of the
    project draws a mask."""
    rgb = np.asarray(image)
    rgb = (np.repeat(rgb[..., None], 3, axis=-1) if rgb.ndim == 2 else rgb).astype(np.float32)
    on = np.asarray(mask, dtype=bool)
    rgb[on] = 0.5 * rgb[on] + 0.5 * np.asarray(colour, dtype=np.float32)
    return rgb.astype(np.uint8)


__all__ = ["CAPTION", "reconstruct", "save_reconstruction_figure", "tint"]
