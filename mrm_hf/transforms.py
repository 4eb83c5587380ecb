"""The published training augmentations of MRM, as callables for `datasets.Dataset.set_transform`, without torchvision.

Grayscale conversion and normalisation come from the `MRMImageProcessor` passed in. The random crop draws its numbers
with the same torch calls as torchvision's `RandomResizedCrop.get_params`, so under the same torch seed it picks the
same boxes.

Decoding only what the crop needs (`fast_decode=True`, the default): an 8-bit JPEG (or a PGM/PPM, the format of
`python -m mrm_hf.data.prepare` records) is opened without decoding, the crop box is drawn from its header size, and
the JPEG is then decoded in grayscale at the coarsest DCT scale (1/2, 1/4 or 1/8, PIL's `draft`) that still leaves the
box at least the output size, and the box is resized on 8 bits (as the published pipeline resized 8-bit images) and
flipped. Decoded in full, the box is cropped and resized by torch's antialiased uint8 interpolation (bicubic or
bilinear: PIL's filter, within 2 gray levels of PIL's rounding); decoded at a reduced scale, the box, mapped to the
reduced image, is resized by PIL straight from it. The boxes are the published ones (the same draws in the same
order), but the pixels are not bit-identical to a full decode followed by PIL's crop and resize: the DCT-domain
reduction is not PIL's antialiasing filter, the reduced-scale resize reads the pixels just outside the box instead of
repeating its edge, and colour JPEGs take libjpeg's luma (Y) instead of PIL's `convert("L")`. On the real NIH
radiographs re-encoded as JPEG, against `fast_decode=False`, the mean difference stays under 1 gray level and the 99th
percentile under 3 (tests/test_data_path.py); single pixels at sharp edges can differ by more. PNG, TIFF, 16-bit,
DICOM, arrays and tensors keep the exact float path of the processor; `fast_decode=False` gives that path for JPEGs.

On the accelerator (`--augment_on_device`): `DecodeTransform` only decodes each image to a fixed (S, S) uint8 tensor
and keeps its original size; `DeviceAugmentation` then draws the same boxes and flips as the CPU path would for the
same generator (on the original size), and crops, resizes (PIL's filter taps, as dense matrices), flips and normalises
the batch on its device.

Seeding (`seed`, an int or a shared `SeededDraws`, on both paths): each image's crop and flip come from a generator
keyed by (seed, epoch, sample index) when the batch carries the `sample_index` column, so they change every epoch, differ between
samples (hence between DataLoader workers and processes) and are the same after a resume; see `mrm_hf.data.seeding`.
Without a seed they come from torch's global generator.
"""

import logging
import math

import numpy as np
import torch
from PIL import Image

from .data.mimic import RecordError
from .data.seeding import SAMPLE_INDEX, SeededDraws
from .data.segmentation import read_pair
from .image_processing_mrm import MRMImageProcessor, open_fast, resize_grayscale, to_grayscale
from .utils import check_choice


logger = logging.getLogger(__name__)
BAD_IMAGE_POLICIES = ("raise", "skip")

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
        return INTERPOLATIONS[check_choice("interpolation", interpolation.lower(), sorted(INTERPOLATIONS))]
    return Image.Resampling(interpolation)


_TORCH_MODES = {Image.Resampling.BICUBIC: "bicubic", Image.Resampling.BILINEAR: "bilinear"}


def _draft_scale(image: Image.Image, size: tuple[int, int] | None) -> float:
    """Ask a not yet decoded JPEG for grayscale at the coarsest DCT scale leaving at least size (width, height);
    the scale it will be decoded at (1 when it is not a JPEG or is already decoded)."""
    if image.format != "JPEG":
        return 1.0
    width = image.width
    drafted = image.draft("L", size)
    return 1.0 if drafted is None else width / drafted[1][2]


def _load_gray(image: Image.Image, action):
    """`action` on the decoded 8-bit grayscale image, decoding errors naming the file."""
    try:
        return action(image if image.mode == "L" else image.convert("L"))
    except OSError as err:
        name = getattr(image, "filename", "") or "<bytes>"
        raise OSError(f"{name}: expected a readable image; found {err}") from err


def draft_crop(image: Image.Image, box: tuple[int, int, int, int], size: tuple[int, int], resample) -> np.ndarray:
    """The box (top, left, height, width) of an 8-bit image resized to size (height, width) as a uint8 array, decoding
    a JPEG at the coarsest DCT scale that leaves the box at least `size`."""
    top, left, height, width = box
    out_height, out_width = size
    reduction = next(s for s in (8, 4, 2, 1) if s == 1 or (height // s >= out_height and width // s >= out_width))
    request = (image.width // reduction, image.height // reduction) if reduction > 1 else None
    scale = _draft_scale(image, request)
    if scale == 1 and resample in _TORCH_MODES:
        # Decoded in full: crop, then torch's antialiased uint8 resize (PIL's filter within 2 gray levels, 2-3x faster).
        def crop_and_resize(gray):
            pixels = torch.from_numpy(np.array(gray))[top : top + height, left : left + width]
            mode = _TORCH_MODES[resample]
            resized = torch.nn.functional.interpolate(pixels[None, None], size, mode=mode, antialias=True)
            return resized[0, 0].numpy()

        return _load_gray(image, crop_and_resize)
    region = (left / scale, top / scale, (left + width) / scale, (top + height) / scale)
    return _load_gray(image, lambda gray: np.array(gray.resize((out_width, out_height), resample, box=region)))


class RandomResizedCrop:
    """torchvision's RandomResizedCrop of an (H, W) float array or a PIL image, drawing from an optional generator."""

    def __init__(self, size, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), interpolation="bilinear", generator=None):
        self.size = (size, size) if isinstance(size, int) else tuple(size)
        if scale[0] > scale[1] or ratio[0] > ratio[1]:
            raise ValueError(
                f"RandomResizedCrop: expected scale and ratio as (min, max); found scale={scale}, ratio={ratio}."
            )
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


def _image_name(image) -> str:
    """The file an image came from, as far as it says."""
    if isinstance(image, dict):
        return str(image.get("path") or "<image bytes>")
    if isinstance(image, (str, bytes)):
        return image if isinstance(image, str) else "<image bytes>"
    return getattr(image, "filename", "") or f"<{type(image).__name__}>"


class _TrainingTransform:
    """Training: RandomResizedCrop and flip of grayscale images, then the processor's 3 channels and normalisation.
    Evaluation (`train=False`): the processor's deterministic view.

    An image that cannot be read (corrupt, truncated, refused as hostile) is named with its sample index and, by
    `on_bad_image`, raised as a `RecordError` ("raise") or logged, counted in `skipped` and given as None
    `pixel_values` ("skip"), which `DataCollatorForMRM` leaves out of the batch. A `datasets` image column decodes
    before the transform sees it, so cast it to `Image(decode=False)` (as the pre-training scripts do) for
    its failures to reach the transform."""

    def __init__(
        self,
        image_processor: MRMImageProcessor,
        size: int,
        scale: tuple[float, float],
        ratio: tuple[float, float],
        interpolation,
        hflip: float,
        image_column: str,
        seed: "int | SeededDraws | None",
        train: bool,
        eval_kwargs: dict,
        fast_decode: bool = True,
        on_bad_image: str = "raise",
    ):
        self.on_bad_image = check_choice("on_bad_image", on_bad_image, BAD_IMAGE_POLICIES)
        self.skipped = 0
        self.image_processor = image_processor
        self.fast_decode = fast_decode
        self.train = train
        self.eval_kwargs = eval_kwargs
        self.crop = RandomResizedCrop(size, scale=scale, ratio=ratio, interpolation=interpolation)
        self.hflip = hflip
        self.image_column = image_column
        self.draws = seed if isinstance(seed, SeededDraws) else SeededDraws(seed)

    def augment(self, image, generator: torch.Generator | None = None) -> np.ndarray:
        """One image as an augmented (size, size) grayscale array: uint8 from 8-bit JPEG/PGM (see the module's
        docstring), else float in [0, 1] from the processor's exact path."""
        fast = open_fast(image) if self.fast_decode else None
        if fast is not None:
            box = self.crop.get_params(fast.height, fast.width, generator)
            gray = draft_crop(fast, box, self.crop.size, self.crop.resample)
        else:
            gray = self.crop(self.image_processor.convert_to_grayscale(image), generator=generator)
        if torch.rand(1, generator=generator) < self.hflip:
            gray = gray[:, ::-1]
        return gray

    def pixel_values(self, images: list, indices: list | None = None) -> list:
        """A batch of images as (3, size, size) normalised pixel values, one tensor per image (None for a skipped
        unreadable image); `indices` key each sample's draws and name the sample in errors."""
        indices = [None] * len(images) if indices is None else list(indices)
        if not self.train:
            return self._each(images, indices, lambda image, _: self.image_processor(
                image, return_tensors="pt", **self.eval_kwargs)["pixel_values"][0])  # fmt: skip
        generators = self.draws.for_samples(indices, "crop")
        if not isinstance(generators, list):
            generators = [generators] * len(images)

        def read(image, position):  # one image at a time: its 3 channels stay in the cache while they are normalised
            gray = torch.from_numpy(np.ascontiguousarray(self.augment(image, generators[position])))[None]
            return self.image_processor.grayscale_to_pixel_values(gray)[0]

        return self._each(images, indices, read)

    def _each(self, images: list, indices: list, read) -> list:
        """`read(image, position)` for each image; a failure is named and raised or skipped (`on_bad_image`)."""
        results = []
        for position, (image, index) in enumerate(zip(images, indices)):
            try:
                results.append(read(image, position))
            except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
                where = _image_name(image) + ("" if index is None else f" (row {index})")
                message = f"{where}: expected a readable radiograph; found {type(error).__name__}: {error}"
                if self.on_bad_image == "raise":
                    hint = " (on_bad_image='skip', the scripts' default without --strict, skips it)."
                    raise RecordError(message + hint) from error
                self.skipped += 1
                logger.warning("Skipping an image (%d so far in this process): %s", self.skipped, message)
                results.append(None)
        return results

    def __call__(self, batch: dict) -> dict:
        """A batch dict (or one example) with `pixel_values` in place of the image column; other columns kept."""
        if self.image_column not in batch:
            raise KeyError(
                f"batch: expected the image column {self.image_column!r}; found the columns {sorted(batch)}."
            )
        images = batch[self.image_column]
        single = not isinstance(images, (list, tuple))
        indices = batch.get(SAMPLE_INDEX)
        if indices is not None and single:
            indices = [indices]
        pixel_values = self.pixel_values([images] if single else images, indices)
        output = {key: value for key, value in batch.items() if key != self.image_column}
        output["pixel_values"] = pixel_values[0] if single else pixel_values
        return output


class PretrainingTransform(_TrainingTransform):
    """The published pre-training view: RandomResizedCrop(448, scale 0.2-1, bicubic), flip, Grayscale(3), normalise;
    with `train=False`, the whole image resized to size x size (bicubic). `fast_decode=False`: decode every image in
    full first (the exact path; see the module's docstring for what differs otherwise)."""

    def __init__(
        self,
        image_processor: MRMImageProcessor,
        size: int = 448,
        scale: tuple[float, float] = (0.2, 1.0),
        interpolation="bicubic",
        hflip: float = 0.5,
        image_column: str = "image",
        seed: "int | SeededDraws | None" = None,
        train: bool = True,
        fast_decode: bool = True,
        on_bad_image: str = "raise",
    ):
        eval_kwargs = {"mode": "pretraining", "size": {"height": size, "width": size}}
        super().__init__(
            image_processor, size, scale, (3 / 4, 4 / 3), interpolation, hflip, image_column, seed, train, eval_kwargs,
            fast_decode=fast_decode,
            on_bad_image=on_bad_image,
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
        seed: "int | SeededDraws | None" = None,
        fast_decode: bool = True,
        on_bad_image: str = "raise",
    ):
        eval_kwargs = {
            "mode": "evaluation",
            "size": {"shortest_edge": size},
            "crop_size": {"height": size, "width": size},
        }
        super().__init__(
            image_processor, size, scale, ratio, interpolation, hflip, image_column, seed, train, eval_kwargs,
            fast_decode=fast_decode,
            on_bad_image=on_bad_image,
        )


class SegmentationTransform:
    """`Dataset.set_transform` for image/mask rows (`mrm_hf.data.segmentation`): `pixel_values` and uint8 `labels`
    from the image processor, with the published random horizontal flip (probability 0.5) of both on the training
    split.

    Seeding (`seed`, an int or a shared `SeededDraws`, as the classification transforms take it): each image's flip
    comes from a generator keyed by (seed, epoch, sample index) when the batch carries the `sample_index` column, so
    it changes every epoch, differs between samples and workers and is the same after a resume; without a seed it
    comes from torch's global generator."""

    def __init__(self, image_processor: MRMImageProcessor, train: bool, flip_probability: float = 0.5,
                 rle_encoding: str = "relative", seed: "int | SeededDraws | None" = None):
        self.image_processor, self.train = image_processor, train
        self.flip_probability, self.rle_encoding = flip_probability, rle_encoding
        self.draws = seed if isinstance(seed, SeededDraws) else SeededDraws(seed)

    def __call__(self, batch: dict[str, list]) -> dict[str, list]:
        rows = [dict(zip(batch, values)) for values in zip(*batch.values())]
        pairs = [read_pair(row, self.rle_encoding) for row in rows]
        features = self.image_processor([image for image, _ in pairs], segmentation_maps=[mask for _, mask in pairs],
                                        return_tensors="np")
        pixel_values, labels = list(features["pixel_values"]), list(features["labels"])
        if self.train:
            generators = self.draws.for_samples(batch.get(SAMPLE_INDEX), "flip")
            if not isinstance(generators, list):
                generators = [generators] * len(rows)
            for index, generator in enumerate(generators):
                if torch.rand(1, generator=generator) < self.flip_probability:
                    pixel_values[index] = pixel_values[index][..., ::-1].copy()
                    labels[index] = labels[index][..., ::-1].copy()
        return {"pixel_values": pixel_values, "labels": labels}


# ---- augmentation on the accelerator (--augment_on_device) -----------------------------------------------------------


class DecodeTransform:
    """The DataLoader's only job under `--augment_on_device`: each image decoded to an (S, S) uint8 grayscale tensor
    (`decoded_images`; resized bicubic to the square, so the aspect ratio is not kept) and its original (height, width)
    (`original_sizes`), on which `DeviceAugmentation` draws the boxes. JPEGs decode at the coarsest DCT scale that
    still leaves at least S pixels on each side; other inputs take the processor's exact path, then 8 bits."""

    def __init__(self, size: int = 512, image_column: str = "image", interpolation="bicubic"):
        self.size = size
        self.image_column = image_column
        self.resample = _resample(interpolation)

    def decode(self, image) -> tuple[np.ndarray, tuple[int, int]]:
        """One image as an (S, S) uint8 array and its original (height, width)."""
        side = self.size
        fast = open_fast(image)
        if fast is not None:
            original = (fast.height, fast.width)
            _draft_scale(fast, (side, side))
            return _load_gray(fast, lambda gray: np.array(gray.resize((side, side), self.resample))), original
        gray = to_grayscale(image)
        resized = resize_grayscale(gray, (side, side), self.resample)
        return np.round(resized * 255.0).astype(np.uint8), gray.shape

    def __call__(self, batch: dict) -> dict:
        """A batch dict (or one example) with `decoded_images` and `original_sizes` in place of the image column."""
        if self.image_column not in batch:
            raise KeyError(
                f"batch: expected the image column {self.image_column!r}; found the columns {sorted(batch)}."
            )
        images = batch[self.image_column]
        single = not isinstance(images, (list, tuple))
        decoded = [self.decode(image) for image in ([images] if single else images)]
        output = {key: value for key, value in batch.items() if key != self.image_column}
        arrays = [torch.from_numpy(array) for array, _ in decoded]
        sizes = [torch.tensor(original) for _, original in decoded]
        output["decoded_images"] = arrays[0] if single else arrays
        output["original_sizes"] = sizes[0] if single else sizes
        return output


def _bicubic(x: torch.Tensor) -> torch.Tensor:
    """PIL's bicubic kernel (a = -0.5)."""
    x = x.abs()
    near = ((1.5 * x - 2.5) * x) * x + 1.0
    far = ((-0.5 * x + 2.5) * x - 4.0) * x + 2.0
    return torch.where(x < 1.0, near, torch.where(x < 2.0, far, torch.zeros_like(x)))


def _bilinear(x: torch.Tensor) -> torch.Tensor:
    """PIL's bilinear (triangle) kernel."""
    return (1.0 - x.abs()).clamp(min=0.0)


_KERNELS = {Image.Resampling.BICUBIC: (_bicubic, 2.0), Image.Resampling.BILINEAR: (_bilinear, 1.0)}


def resampling_matrices(starts: torch.Tensor, ends: torch.Tensor, in_size: int, out_size: int, resample):
    """PIL's resampling of the boxes [start, end) of a length-`in_size` axis, cropped, to `out_size` pixels,
    antialiased when shrinking, as (N, out_size, in_size) matrices: output i weighs input j of the box by
    kernel((j + 0.5 - center_i) / filterscale), center_i = start + (i + 0.5) * (end - start) / out_size,
    filterscale = max(that step, 1), and each row sums to 1."""
    if resample not in _KERNELS:
        raise ValueError(f"On-device resizing: expected bicubic or bilinear; found {Image.Resampling(resample).name}")
    kernel, support = _KERNELS[resample]
    starts, ends = starts.double(), ends.double()
    step = (ends - starts) / out_size
    filterscale = step.clamp(min=1.0)
    outputs = torch.arange(out_size, device=starts.device, dtype=torch.float64)
    pixels = torch.arange(in_size, device=starts.device, dtype=torch.float64)
    centers = starts[:, None] + (outputs + 0.5) * step[:, None]
    offsets = pixels + 0.5 - centers[:, :, None]
    weights = kernel(offsets / filterscale[:, None, None])
    # Only the pixels of the box count, as when it is cropped first (the published crop, then resize).
    inside = (pixels >= starts.floor()[:, None]) & (pixels < ends.ceil()[:, None])
    taps = (offsets.abs() < support * filterscale[:, None, None]) & inside[:, None, :]
    weights = torch.where(taps, weights, torch.zeros_like(weights))
    return (weights / weights.sum(-1, keepdim=True)).float()


class DeviceAugmentation:
    """The published training view, batched on the training device: for each image, in batch order, the box of
    `RandomResizedCrop.get_params` on its original size and then the flip draw (the CPU path's draws, in its order,
    so the same generator gives the same boxes and flips); the box, mapped onto the decoded (S, S) image, is resized
    with PIL's filter taps (as two batched matrix products), flipped, and normalised by the image processor.

    Call it on a batch holding `decoded_images` (N, S, S) uint8 and `original_sizes` (N, 2) (from `DecodeTransform`
    and the collator); it returns the batch with `pixel_values` instead. Boxes are drawn with the call's `generator`,
    else from `seed` (an int, or the `SeededDraws` the collator holds) keyed by the batch's `sample_index`: then each
    sample gets the very box and flip the CPU path gives it in the same epoch, on any process and after a resume.
    Without either, torch's global RNG draws."""

    def __init__(
        self,
        image_processor: MRMImageProcessor,
        size: int = 448,
        scale: tuple[float, float] = (0.2, 1.0),
        ratio: tuple[float, float] = (3 / 4, 4 / 3),
        interpolation="bicubic",
        hflip: float = 0.5,
        seed: "int | SeededDraws | None" = None,
    ):
        self.image_processor = image_processor
        self.crop = RandomResizedCrop(size, scale=scale, ratio=ratio, interpolation=interpolation)
        if self.crop.resample not in _KERNELS:
            raise ValueError(f"On-device resizing: expected bicubic or bilinear; found {interpolation!r}")
        self.hflip = hflip
        self.draws = seed if isinstance(seed, SeededDraws) else SeededDraws(seed)

    def draw(self, original_sizes, generator=None) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, 4) boxes (top, left, height, width) on the original sizes and (N,) flips, drawn as the CPU path does,
        from one generator for the batch or one per image (a list)."""
        sizes = torch.as_tensor(original_sizes).tolist()
        generators = generator if isinstance(generator, list) else [generator] * len(sizes)
        boxes, flips = [], []
        for (height, width), generator in zip(sizes, generators):
            boxes.append(self.crop.get_params(height, width, generator))
            flips.append(bool(torch.rand(1, generator=generator) < self.hflip))
        return torch.tensor(boxes, dtype=torch.long).reshape(-1, 4), torch.tensor(flips, dtype=torch.bool)

    def __call__(self, batch: dict, generator: torch.Generator | None = None) -> dict:
        batch = dict(batch)
        indices = batch.pop(SAMPLE_INDEX, None)
        if generator is None:
            generator = self.draws.for_samples(None if indices is None else indices.tolist(), "crop")
        for key in ("decoded_images", "original_sizes"):
            if key not in batch:
                raise KeyError(f"batch: expected {key!r} (from DecodeTransform); found the keys {sorted(batch)}.")
        images, original_sizes = batch.pop("decoded_images"), batch.pop("original_sizes")
        if images.dim() != 3:
            raise ValueError(f"batch['decoded_images']: expected the shape (N, S, S); found {tuple(images.shape)}.")
        boxes, flips = self.draw(original_sizes.cpu(), generator)
        device = images.device
        boxes, flips, sizes = boxes.to(device), flips.to(device), original_sizes.to(device).double()
        top, left, height, width = boxes.double().unbind(1)
        rows = images.shape[1] / sizes[:, 0]  # decoded pixels per original pixel
        columns = images.shape[2] / sizes[:, 1]
        out_height, out_width = self.crop.size
        resample = self.crop.resample
        with torch.autocast(device.type, enabled=False):
            y0, y1, x0, x1 = top * rows, (top + height) * rows, left * columns, (left + width) * columns
            along_y = resampling_matrices(y0, y1, images.shape[1], out_height, resample)
            along_x = resampling_matrices(x0, x1, images.shape[2], out_width, resample)
            along_x = torch.where(flips[:, None, None], along_x.flip(1), along_x)
            grays = torch.bmm(torch.bmm(along_y, images.float()), along_x.transpose(1, 2))
            grays = (grays / 255.0).clamp(0.0, 1.0)
            batch["pixel_values"] = self.image_processor.grayscale_to_pixel_values(grays)
        return batch


__all__ = [
    "DecodeTransform",
    "DeviceAugmentation",
    "FineTuningTransform",
    "PretrainingTransform",
    "RandomResizedCrop",
    "SegmentationTransform",
]
