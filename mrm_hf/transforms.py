"""The published training augmentations of MRM, as callables for `datasets.Dataset.set_transform`, without torchvision.

Grayscale conversion and normalisation come from the `MRMImageProcessor` passed in. The random crop draws its numbers
with the same torch calls as torchvision's `RandomResizedCrop.get_params`, so under the same torch seed it picks the
same boxes.
"""

import math

import numpy as np
import torch
from PIL import Image
from torch.utils.data import get_worker_info

from .image_processing_mrm import MRMImageProcessor, resize_grayscale


INTERPOLATIONS = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
    "lanczos": Image.Resampling.LANCZOS,
}


def _resample(interpolation) -> Image.Resampling:
    """A PIL resampling filter from its name or value."""
    if isinstance(interpolation, str):
        if interpolation.lower() not in INTERPOLATIONS:
            raise ValueError(f"interpolation must be one of {sorted(INTERPOLATIONS)}; found {interpolation!r}")
        return INTERPOLATIONS[interpolation.lower()]
    return Image.Resampling(interpolation)


class RandomResizedCrop:
    """torchvision's RandomResizedCrop of an (H, W) float array or a PIL image, drawing from an optional generator."""

    def __init__(self, size, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), interpolation="bilinear", generator=None):
        self.size = (size, size) if isinstance(size, int) else tuple(size)
        if scale[0] > scale[1] or ratio[0] > ratio[1]:
            raise ValueError(f"expected scale and ratio as (min, max); found scale={scale}, ratio={ratio}")
        self.scale = tuple(scale)
        self.ratio = tuple(ratio)
        self.resample = _resample(interpolation)
        self.generator = generator

    def get_params(self, height: int, width: int, generator: torch.Generator | None = None) -> tuple[int, ...]:
        """The crop box (top, left, height, width): uniform area and log aspect ratio, 10 tries, then central."""
        generator = generator if generator is not None else self.generator
        area = height * width
        log_ratio = torch.log(torch.tensor(self.ratio))
        for _ in range(10):
            target_area = area * torch.empty(1).uniform_(self.scale[0], self.scale[1], generator=generator).item()
            aspect_ratio = torch.exp(torch.empty(1).uniform_(log_ratio[0], log_ratio[1], generator=generator)).item()
            w = int(round(math.sqrt(target_area * aspect_ratio)))
            h = int(round(math.sqrt(target_area / aspect_ratio)))
            if 0 < w <= width and 0 < h <= height:
                top = torch.randint(0, height - h + 1, size=(1,), generator=generator).item()
                left = torch.randint(0, width - w + 1, size=(1,), generator=generator).item()
                return top, left, h, w
        in_ratio = width / height
        if in_ratio < min(self.ratio):
            w, h = width, int(round(width / min(self.ratio)))
        elif in_ratio > max(self.ratio):
            w, h = int(round(height * max(self.ratio))), height
        else:
            w, h = width, height
        return (height - h) // 2, (width - w) // 2, h, w

    def __call__(self, image, generator: torch.Generator | None = None):
        """Crop a random box and resize it to `size`."""
        if isinstance(image, Image.Image):
            top, left, h, w = self.get_params(image.height, image.width, generator)
            return image.crop((left, top, left + w, top + h)).resize(self.size[::-1], resample=self.resample)
        top, left, h, w = self.get_params(*image.shape, generator)
        return resize_grayscale(image[top : top + h, left : left + w], self.size, self.resample)


class _SeededGenerator:
    """A torch.Generator from a seed, re-derived in each DataLoader worker so that workers do not repeat each other."""

    def __init__(self, seed: int | None):
        self.seed = seed
        self._generator = None
        self._worker = None

    def __call__(self) -> torch.Generator | None:
        if self.seed is None:
            return None
        info = get_worker_info()
        worker = None if info is None else info.id
        if self._generator is None or worker != self._worker:
            seed = self.seed
            if worker is not None:
                seed = int(np.random.SeedSequence([self.seed, worker]).generate_state(1)[0])
            self._generator = torch.Generator().manual_seed(seed)
            self._worker = worker
        return self._generator

    def __getstate__(self):
        return {"seed": self.seed, "_generator": None, "_worker": None}


class _TrainingTransform:
    """Training: RandomResizedCrop and flip of grayscale images, then the processor's 3 channels and normalisation.
    Evaluation (`train=False`): the processor's deterministic view."""

    def __init__(
        self,
        image_processor: MRMImageProcessor,
        size: int,
        scale: tuple[float, float],
        ratio: tuple[float, float],
        interpolation,
        hflip: float,
        image_column: str,
        seed: int | None,
        train: bool,
        eval_kwargs: dict,
    ):
        self.image_processor = image_processor
        self.train = train
        self.eval_kwargs = eval_kwargs
        self.crop = RandomResizedCrop(size, scale=scale, ratio=ratio, interpolation=interpolation)
        self.hflip = hflip
        self.image_column = image_column
        self.generator = _SeededGenerator(seed)

    def augment(self, image) -> np.ndarray:
        """One image as an augmented (size, size) grayscale float array in [0, 1]."""
        generator = self.generator()
        gray = self.crop(self.image_processor.convert_to_grayscale(image), generator=generator)
        if torch.rand(1, generator=generator) < self.hflip:
            gray = gray[:, ::-1]
        return gray

    def pixel_values(self, images: list) -> torch.Tensor:
        """A batch of images as (N, 3, size, size) normalised pixel values."""
        if not self.train:
            return self.image_processor(images, return_tensors="pt", **self.eval_kwargs)["pixel_values"]
        grays = [np.ascontiguousarray(self.augment(image)) for image in images]
        return self.image_processor(grays, do_resize=False, do_center_crop=False, return_tensors="pt")["pixel_values"]

    def __call__(self, batch: dict) -> dict:
        """A batch dict (or one example) with `pixel_values` in place of the image column; other columns kept."""
        if self.image_column not in batch:
            raise KeyError(f"expected an image column {self.image_column!r}; found the columns {sorted(batch)}")
        images = batch[self.image_column]
        single = not isinstance(images, (list, tuple))
        pixel_values = self.pixel_values([images] if single else images)
        output = {key: value for key, value in batch.items() if key != self.image_column}
        output["pixel_values"] = pixel_values[0] if single else list(pixel_values)
        return output


class PretrainingTransform(_TrainingTransform):
    """The published pre-training view: RandomResizedCrop(448, scale 0.2-1, bicubic), flip, Grayscale(3), normalise;
    with `train=False`, the whole image resized to size x size (bicubic)."""

    def __init__(
        self,
        image_processor: MRMImageProcessor,
        size: int = 448,
        scale: tuple[float, float] = (0.2, 1.0),
        interpolation="bicubic",
        hflip: float = 0.5,
        image_column: str = "image",
        seed: int | None = None,
        train: bool = True,
    ):
        eval_kwargs = {"mode": "pretraining", "size": {"height": size, "width": size}}
        super().__init__(
            image_processor, size, scale, (3 / 4, 4 / 3), interpolation, hflip, image_column, seed, train, eval_kwargs
        )


class FineTuningTransform(_TrainingTransform):
    """The published fine-tuning views: train RandomResizedCrop(224) bilinear + flip; eval the evaluation mode."""

    def __init__(
        self,
        image_processor: MRMImageProcessor,
        train: bool = True,
        size: int = 224,
        scale: tuple[float, float] = (0.08, 1.0),
        ratio: tuple[float, float] = (3 / 4, 4 / 3),
        interpolation="bilinear",
        hflip: float = 0.5,
        image_column: str = "image",
        seed: int | None = None,
    ):
        eval_kwargs = {
            "mode": "evaluation",
            "size": {"shortest_edge": size},
            "crop_size": {"height": size, "width": size},
        }
        super().__init__(
            image_processor, size, scale, ratio, interpolation, hflip, image_column, seed, train, eval_kwargs
        )


__all__ = ["FineTuningTransform", "PretrainingTransform", "RandomResizedCrop"]
