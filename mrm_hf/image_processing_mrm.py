"""Image processor of MRM (Masked Record Modeling, Zhou et al., ICLR 2023): chest radiographs to `pixel_values`.

A flat file: `save_pretrained` copies it beside the config for `trust_remote_code`, so it imports nothing from mrm_hf.

Choices, and why:
- Every input becomes one float32 channel in [0, 1] by its bit depth before anything else: 8-bit /255, 16-bit /65535
  (never clipped at 255), float must already lie in [0, 1]. Resizing then runs on that float channel (PIL mode "F"), so
  an 8-bit image and the same image stored at 16 bits (x257) give identical `pixel_values`. The published code resized
  8-bit RGB images, which PIL rounds after each of its two passes; the float path differs from it by about one gray
  level at most.
- Colour becomes luminance with PIL's `convert("L")` weights (ITU-R 601-2), exactly as the published `Grayscale(3)`
  did for 8-bit images. Alpha is dropped, as the published `pil_loader` (`convert("RGB")`) dropped it. Palettes are
  looked up first.
- The channel is replicated to 3 and normalised with the published single-channel statistics (mean 0.4978, std 0.2449).
- mode="evaluation" is the published fine-tuning eval: torchvision `Resize(224)` (short side to 224, its default
  interpolation, BILINEAR, on PIL images, so antialiased) then `CenterCrop(224)` with torchvision's rounding of the
  offset. mode="pretraining" resizes to 448 x 448 with BICUBIC, the interpolation of the published 448-pixel view.
- DICOM: Modality LUT (or rescale), then VOI LUT or window, scaled to [0, 1] by the range the window maps to (by the
  pixel range when the file has no window), and MONOCHROME1 inverted so that bone is bright.
- Paths, bytes and datasets image dicts are read by `load_radiograph`, which keeps 8-bit sources as mode "L" and
  stores deeper ones (16-bit files, DICOM) as "I;16", so `processor(path)` equals `processor(load_radiograph(path))`.
- This file is the package's one radiograph reader: `is_dicom`, `check_shape` (from the header, before decoding),
  `open_fast` (8-bit JPEG/PGM/PPM left undecoded for `draft`, the training transforms' and record preparation's fast
  path), `image_size` (from the header, DICOM included) and `image_problem` (the loaders' integrity checks: missing,
  truncated, unreadable, zero-filled) are what the data loaders, transforms and prediction call.
- Ambiguous 3-D inputs: numpy arrays are read as (H, W, C) like PIL's, tensors as (C, H, W) like torchvision's.
"""

import io
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from transformers.image_processing_backends import PilBackend
from transformers.image_processing_base import BatchFeature
from transformers.image_processing_outputs import SemanticSegmentationPostProcessorOutput
from transformers.image_utils import ChannelDimension, PILImageResampling, SizeDict
from transformers.processing_utils import ImagesKwargs, Unpack
from transformers.utils import logging


logger = logging.get_logger(__name__)

MRM_MEAN = 0.4978
MRM_STD = 0.2449

MODES = {
    "evaluation": {
        "size": {"shortest_edge": 224},
        "crop_size": {"height": 224, "width": 224},
        "do_center_crop": True,
        "resample": PILImageResampling.BILINEAR,
        "default_to_square": False,
    },
    "pretraining": {
        "size": {"height": 448, "width": 448},
        "crop_size": {"height": 448, "width": 448},
        "do_center_crop": False,
        "resample": PILImageResampling.BICUBIC,
        "default_to_square": True,
    },
    # The published SIIM-ACR segmentation: 512 x 512, bilinear, no crop; masks follow with nearest neighbour.
    "segmentation": {
        "size": {"height": 512, "width": 512},
        "crop_size": {"height": 512, "width": 512},
        "do_center_crop": False,
        "resample": PILImageResampling.BILINEAR,
        "default_to_square": True,
    },
}

MAX_ASPECT_RATIO = 100
"""Longest over shortest side accepted: radiographs are near square; a 30000x1 image is an attack or an accident."""

_EIGHT_BIT_MODES = {"1", "L", "LA", "La", "P", "PA", "RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr"}
_SIXTEEN_BIT_MODES = {"I;16", "I;16L", "I;16B", "I;16N"}
_LUMA_WEIGHTS = np.array([0.299, 0.587, 0.114])
DICOM_SUFFIXES = (".dcm", ".dicom")
_FAST_MAGIC = {b"\xff\xd8": "JPEG", b"P5": "PPM", b"P6": "PPM"}  # 8-bit JPEG, PGM and PPM
_ZERO_RUN = b"\x00" * 1024  # in a JPEG's coded data: a block of the file overwritten with zeros
IMAGE_CHECKS = ("none", "header", "full")


def _check_mode(mode: str) -> dict:
    """The preset of a processing mode."""
    if mode not in MODES:
        raise ValueError(f"mode: expected one of {', '.join(map(repr, MODES))}; found {mode!r}.")
    return MODES[mode]


def is_dicom(path: str | os.PathLike) -> bool:
    """Whether a file is DICOM, by its suffix or its DICM magic."""
    if Path(path).suffix.lower() in DICOM_SUFFIXES:
        return True
    with open(path, "rb") as file:
        header = file.read(132)
    return header[128:132] == b"DICM"


def _is_dicom_dataset(source) -> bool:
    """Whether `source` is a pydicom `Dataset` (read with `pydicom.dcmread`), without importing pydicom."""
    return any(cls.__module__.startswith("pydicom") and cls.__name__ == "Dataset" for cls in type(source).__mro__)


def _import_pydicom(name: str):
    """pydicom, or an ImportError saying which file needs it and how to install it."""
    try:
        import pydicom
    except ImportError as err:
        raise ImportError(
            f"{name}: expected pydicom to read this DICOM; found it not installed. pip install mrm-hf[dicom]"
        ) from err
    return pydicom


def _dicom_name(ds) -> str:
    return str(getattr(ds, "filename", None) or "<pydicom dataset>")


def _read_dicom(source, name: str) -> np.ndarray:
    """A single-frame DICOM (a path, a file object or a pydicom Dataset) as one float32 channel in [0, 1], windowed,
    with bone bright."""
    pydicom = _import_pydicom(name)
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    if _is_dicom_dataset(source):
        ds = source
    else:
        try:
            ds = pydicom.dcmread(source, force=True)
        except Exception as err:
            raise OSError(f"{name}: expected a readable DICOM; found {err}") from err
    if not any(tag in ds for tag in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
        raise OSError(f"{name}: expected DICOM pixel data; found none (a truncated file, or a DICOM that holds no "
                      "image)")
    try:
        pixels = ds.pixel_array
    except Exception as err:
        syntax = getattr(ds, "file_meta", {}).get("TransferSyntaxUID")
        compressed = syntax is not None and syntax.is_compressed
        hint = " (compressed DICOMs need pylibjpeg: pip install mrm-hf[dicom])" if compressed else ""
        raise OSError(f"{name}: expected DICOM pixels that decode; found {err}{hint}") from err

    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames != 1:
        raise ValueError(f"{name}: expected a single-frame radiograph; found {frames} frames.")
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    if photometric.startswith(("RGB", "YBR")):
        # pydicom already converted YBR to RGB.
        return _luminance(pixels.astype(np.float64) / (2 ** int(ds.BitsStored) - 1))
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise ValueError(f"{name}: expected a MONOCHROME1, MONOCHROME2 or RGB DICOM; found {photometric}.")

    values = apply_modality_lut(pixels, ds).astype(np.float64)
    low, high = _dicom_window_range(ds, apply_voi_lut)
    if low is None:
        low, high = values.min(), values.max()
    else:
        values = apply_voi_lut(values, ds).astype(np.float64)
    scaled = (values - low) / (high - low) if high > low else np.zeros_like(values)
    scaled = np.clip(scaled, 0.0, 1.0)
    if photometric == "MONOCHROME1":
        scaled = 1.0 - scaled
    return scaled.astype(np.float32)


def _dicom_window_range(ds, apply_voi_lut) -> tuple:
    """The (low, high) values the file's VOI LUT or window maps to, or (None, None) when it has neither."""
    lut = ds.get("VOILUTSequence")
    if lut and lut[0].get("LUTDescriptor") is not None and lut[0].get("LUTData") is not None:
        entries, first, _ = lut[0].LUTDescriptor
        outputs = apply_voi_lut(np.arange(first, first + (entries or 2**16)), ds)
        return float(outputs.min()), float(outputs.max())
    if ds.get("WindowCenter") is not None and ds.get("WindowWidth") is not None:
        # Infinite inputs land on the window's two ends, whatever its function and output range.
        low, high = apply_voi_lut(np.array([-np.inf, np.inf]), ds)
        return float(min(low, high)), float(max(low, high))
    return None, None


# ---- reading files: the one reader ---------------------------------------------------------------------------------


def _unpack(source) -> tuple[str, "bytes | str"]:
    """(name, bytes or path) of a path, bytes or datasets `{"bytes", "path"}` dict; the name is the path when known."""
    if isinstance(source, dict):
        name = source.get("path") or "<bytes>"
        source = source["bytes"] if source.get("bytes") is not None else source.get("path")
        if source is None:
            raise ValueError("image dict: expected a 'bytes' or 'path' value; found neither.")
        return name, source if isinstance(source, bytes) else os.fspath(source)
    if isinstance(source, bytes):
        return "<bytes>", source
    return os.fspath(source), os.fspath(source)


def _open(source: "bytes | str", name: str) -> Image.Image:
    """PIL's lazy open of bytes or a path (nothing decoded yet), its size checked from the header; errors name it."""
    try:
        image = Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)
    except Exception as err:
        raise OSError(f"{name}: expected a readable image; found {err}") from err
    check_shape(image.height, image.width, name)  # from the header, before decoding
    return image


def _read_file(source) -> "Image.Image | np.ndarray":
    """A path, bytes, a datasets `{"bytes", "path"}` dict or a pydicom Dataset as a loaded PIL image, or a DICOM as a
    float array."""
    if _is_dicom_dataset(source):
        return _read_dicom(source, _dicom_name(source))
    name, source = _unpack(source)
    if isinstance(source, bytes) and source[128:132] == b"DICM":
        return _read_dicom(io.BytesIO(source), name)
    if isinstance(source, str) and is_dicom(source):
        return _read_dicom(source, name)
    image = _open(source, name)
    try:
        image.load()
    except Exception as err:
        raise OSError(f"{name}: expected a readable image; found {err}") from err
    return image


def open_fast(image) -> Image.Image | None:
    """An 8-bit JPEG or PGM/PPM as a PIL image, not yet decoded when it came as a path, bytes or image dict (so that
    `draft` can still ask for a reduced DCT scale), its size checked from the header; None for every other input,
    which takes the exact path of `to_grayscale`."""
    if isinstance(image, Image.Image):
        if image.format not in ("JPEG", "PPM") or image.mode not in ("L", "RGB"):
            return None
        check_shape(image.height, image.width, getattr(image, "filename", "") or "<PIL image>")
        return image
    if not isinstance(image, (str, os.PathLike, bytes, dict)):
        return None
    name, source = _unpack(image)
    if isinstance(source, bytes):
        head = source[:2]
    else:
        with open(source, "rb") as file:
            head = file.read(2)
    if head not in _FAST_MAGIC:
        return None
    image = _open(source, name)  # the exact path's refusal of hostile sizes, before any decoding
    return image if image.mode in ("L", "RGB") else None


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """(height, width) of an image file from its header (DICOM included), without decoding the pixels."""
    name = os.fspath(path)
    if is_dicom(name):
        header = _import_pydicom(name).dcmread(name, stop_before_pixels=True)
        return int(header.Rows), int(header.Columns)
    with Image.open(name) as image:
        return image.height, image.width


def _jpeg_coded_data(data: bytes) -> bytes:
    """The bytes of a JPEG from its first start-of-scan to its last end-of-image marker (b"" if there is none)."""
    position = 2
    while position + 4 <= len(data) and data[position] == 0xFF:
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte
            position += 1
            continue
        length = int.from_bytes(data[position + 2 : position + 4], "big")
        if marker == 0xDA:
            return data[position + 2 + length : data.rfind(b"\xff\xd9")]
        position += 2 + length
    return b""


def image_problem(path: str | os.PathLike, check: str = "header") -> str | None:
    """Why the image file at `path` cannot be used ("missing image", "truncated image", "unreadable image",
    "zero-filled image"), or None. `check` (one of `IMAGE_CHECKS`): "none" only looks for the file; "header" opens
    the header and, for a JPEG, looks for the end-of-image marker that a truncated file lacks; "full" also refuses a
    JPEG with a run of 1024 zero bytes in its coded data and decodes the image."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        return "missing image"
    if check == "none":
        return None
    try:
        with Image.open(path) as image:
            if check == "full":
                if image.format == "JPEG":
                    with open(path, "rb") as file:
                        if _ZERO_RUN in _jpeg_coded_data(file.read()):
                            return "zero-filled image"
                image.load()
            elif image.format == "JPEG":
                with open(path, "rb") as file:
                    file.seek(max(0, os.path.getsize(path) - 1024))
                    if not file.read().rstrip(b"\x00\r\n ").endswith(b"\xff\xd9"):
                        return "truncated image"
            else:
                image.verify()
    except (OSError, SyntaxError, ValueError) as error:
        return "truncated image" if "truncated" in str(error) else "unreadable image"
    return None


# ---- pixels to one gray channel --------------------------------------------------------------------------------------


def _luminance(rgb: np.ndarray) -> np.ndarray:
    """Luminance of (H, W, 3) values in [0, 1], with PIL's `convert("L")` weights."""
    return (rgb[..., :3] @ _LUMA_WEIGHTS).astype(np.float32)


def check_shape(height: int, width: int, name: str) -> None:
    """Refuse empty images and absurd aspect ratios before anything is decoded or resized."""
    if height <= 0 or width <= 0:
        raise ValueError(f"{name}: expected a non-empty image; found the size {width}x{height}.")
    if max(height, width) > MAX_ASPECT_RATIO * min(height, width):
        raise ValueError(
            f"{name}: expected a radiograph with an aspect ratio of at most {MAX_ASPECT_RATIO}:1; found "
            f"{width}x{height} px."
        )


def _scale_sixteen_bit(values: np.ndarray, bits_stored: int | None, name: str = "the image") -> np.ndarray:
    """16-bit values as float32 in [0, 1]: /65535, or /(2**bits_stored - 1) when the file stores fewer bits (a 12-bit
    detector's PNG); warns when the values clearly use fewer bits and none were stated."""
    top = int(values.max()) if values.size else 0
    if bits_stored is None:
        if 0 < top < 4096:
            warnings.warn(
                f"{name} is 16-bit but its largest value is {top} (< 4096): it likely holds 12-bit (or fewer) data, "
                "which scaled by 65535 is near-black. Pass bits_stored=12 (or the depth stored) to MRMImageProcessor.",
                UserWarning,
                stacklevel=2,
            )
        return values.astype(np.float32) / 65535.0
    if not 1 <= bits_stored <= 16:
        raise ValueError(f"bits_stored: expected a depth between 1 and 16; found {bits_stored}.")
    limit = 2**bits_stored - 1
    if top > limit:
        raise ValueError(f"{name}: expected values of at most {limit} (bits_stored={bits_stored}); found {top}.")
    return values.astype(np.float32) / limit


def _scale_by_depth(values: np.ndarray, bits_stored: int | None, name: str) -> np.ndarray:
    """Pixel values as float32 in [0, 1]: 8-bit /255, 16-bit /65535 (or by `bits_stored`), bool as 0/1, float
    checked to lie in [0, 1]; errors name `name`."""
    if values.dtype == np.uint8:
        return values.astype(np.float32) / 255.0
    if values.dtype == np.uint16:
        return _scale_sixteen_bit(values, bits_stored, name)
    if values.dtype == np.bool_:
        return values.astype(np.float32)
    if np.issubdtype(values.dtype, np.floating):
        low, high = float(np.min(values)), float(np.max(values))
        if not (0.0 <= low and high <= 1.0):
            raise ValueError(f"{name}: expected float pixel values in [0, 1]; found the range [{low}, {high}].")
        return values.astype(np.float32)
    raise ValueError(
        f"{name}: expected pixel values of dtype uint8, uint16, bool or float in [0, 1]; found {values.dtype}."
    )


def _pil_to_gray(image: Image.Image, bits_stored: int | None = None) -> np.ndarray:
    """A PIL image of any common mode as one float32 channel in [0, 1]."""
    name = getattr(image, "filename", "") or "<PIL image>"
    check_shape(image.height, image.width, name)  # from the header, before decoding
    try:
        image.load()
    except Exception as err:
        raise OSError(f"{name}: expected a readable image; found {err}") from err
    mode = image.mode
    if mode in _SIXTEEN_BIT_MODES:
        return _scale_sixteen_bit(np.asarray(image).astype(np.uint16), bits_stored, name)
    if mode == "I":
        # Older Pillows open 16-bit PNGs as "I".
        values = np.asarray(image)
        low, high = int(values.min()), int(values.max())
        if low < 0 or high > 65535:
            raise ValueError(f"{name}: expected mode 'I' values in the 16-bit range [0, 65535]; found [{low}, {high}].")
        return _scale_sixteen_bit(values.astype(np.uint16), bits_stored, name)
    if mode == "F":
        return _scale_by_depth(np.asarray(image, dtype=np.float32), None, name)
    if mode in ("P", "PA"):
        image = image.convert("RGBA")
    if mode in _EIGHT_BIT_MODES:
        return np.asarray(image.convert("L")).astype(np.float32) / 255.0
    modes = sorted(_EIGHT_BIT_MODES | _SIXTEEN_BIT_MODES | {"I", "F"})
    raise ValueError(f"{name}: expected a PIL image of mode {modes}; found {mode!r}.")


def _array_to_gray(
    values: np.ndarray,
    input_data_format=None,
    channels_first_if_ambiguous=False,
    bits_stored: int | None = None,
    name: str = "the array",
) -> np.ndarray:
    """An (H, W), (H, W, C) or (C, H, W) array, C in {1, 3, 4}, as one float32 channel in [0, 1]; errors name
    `name`."""
    if values.size == 0:
        raise ValueError(f"{name}: expected a non-empty image; found the shape {values.shape}.")
    if values.ndim == 3:
        first, last = values.shape[0] in (1, 3, 4), values.shape[-1] in (1, 3, 4)
        if input_data_format is not None:
            channels_first = ChannelDimension(input_data_format) == ChannelDimension.FIRST
        elif first or last:
            channels_first = first and (channels_first_if_ambiguous or not last)
        else:
            raise ValueError(
                f"{name}: expected the shape (H, W), (H, W, C) or (C, H, W), C in 1, 3, 4; found {values.shape}."
            )
        if channels_first:
            values = np.moveaxis(values, 0, -1)
        if values.shape[-1] == 1:
            values = values[..., 0]
        elif values.shape[-1] in (3, 4):
            values = values[..., :3]
        else:
            raise ValueError(f"{name}: expected 1, 3 or 4 channels; found the shape {values.shape}.")
    elif values.ndim != 2:
        raise ValueError(f"{name}: expected one image of 2 or 3 dimensions; found the shape {values.shape}.")
    check_shape(values.shape[0], values.shape[1], name)
    if values.ndim == 2:
        return _scale_by_depth(values, bits_stored, name)
    if values.dtype == np.uint8:
        # PIL's integer conversion, exactly as the published Grayscale(3) on 8-bit images.
        return _pil_to_gray(Image.fromarray(np.ascontiguousarray(values)))
    return _luminance(_scale_by_depth(values, bits_stored, name))


def to_grayscale(image, input_data_format=None, bits_stored: int | None = None) -> np.ndarray:
    """Any supported radiograph input as an (H, W) float32 array in [0, 1]; `bits_stored` is the depth of 16-bit data
    that stores fewer bits (12 for most detectors' PNGs), as DICOM's BitsStored says it."""
    if isinstance(image, (str, os.PathLike, bytes, dict)) or _is_dicom_dataset(image):
        image = _read_file(image)
    if isinstance(image, Image.Image):
        return _pil_to_gray(image, bits_stored)
    if isinstance(image, torch.Tensor):
        image = image.detach().cpu()
        if image.dtype in (torch.bfloat16, torch.float16):
            image = image.float()
        # Tensors are (C, H, W) by torchvision's convention, arrays (H, W, C) by PIL's.
        return _array_to_gray(
            image.numpy(), input_data_format, channels_first_if_ambiguous=True, bits_stored=bits_stored,
            name="the tensor",
        )
    if isinstance(image, np.ndarray):
        return _array_to_gray(image, input_data_format, bits_stored=bits_stored)
    raise TypeError(f"image: expected a PIL image, numpy array, torch tensor, path, bytes, image dict or pydicom "
                    f"Dataset; found {type(image)}.")


def load_radiograph(source, bits_stored: int | None = None) -> Image.Image:
    """A radiograph as a grayscale PIL image: mode "L" from 8-bit sources, "I;16" (0..65535 is [0, 1]) otherwise."""
    readable = isinstance(source, (str, os.PathLike, bytes, dict)) or _is_dicom_dataset(source)
    image = _read_file(source) if readable else source
    gray = to_grayscale(image, bits_stored=bits_stored)
    eight_bit = (isinstance(image, Image.Image) and image.mode in _EIGHT_BIT_MODES) or (
        isinstance(image, (np.ndarray, torch.Tensor)) and str(image.dtype).split(".")[-1] in ("uint8", "bool")
    )
    if eight_bit:
        return Image.fromarray(np.round(gray * 255.0).astype(np.uint8))
    return Image.fromarray(np.round(gray * 65535.0).astype(np.uint16))


def resize_grayscale(gray: np.ndarray, size: tuple[int, int], resample) -> np.ndarray:
    """Resize an (H, W) float array in [0, 1] to size (height, width) with PIL, clipped to [0, 1]."""
    height, width = size
    if gray.shape == (height, width):
        return gray
    resized = Image.fromarray(np.ascontiguousarray(gray, dtype=np.float32)).resize((width, height), resample=resample)
    # Clip the bicubic overshoot, as the published pipeline's uint8 images did.
    return np.clip(np.asarray(resized), 0.0, 1.0)


def center_crop_grayscale(gray: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """torchvision's CenterCrop of an (H, W) array: zero padding when too small, offsets rounded half to even."""
    crop_height, crop_width = size
    height, width = gray.shape
    if crop_height > height or crop_width > width:
        pad_height, pad_width = max(crop_height - height, 0), max(crop_width - width, 0)
        gray = np.pad(gray, ((pad_height // 2, (pad_height + 1) // 2), (pad_width // 2, (pad_width + 1) // 2)))
        height, width = gray.shape
    top = int(round((height - crop_height) / 2.0))
    left = int(round((width - crop_width) / 2.0))
    return gray[top : top + crop_height, left : left + crop_width]


def load_mask(source, name: str | None = None) -> np.ndarray:
    """A binary mask (path, PIL image or array) as an (H, W) uint8 array of 0 and 1; 0/255 masks are accepted.

    Any other value, or channels that differ, raises naming `name` (default: the path).
    """
    if name is None:
        name = str(source) if isinstance(source, (str, os.PathLike)) else "the mask"
    if isinstance(source, (str, os.PathLike)):
        try:
            with Image.open(source) as image:
                mask = np.asarray(image.convert("L") if image.mode in ("1", "P") else image)
        except FileNotFoundError:
            raise FileNotFoundError(f"{name}: expected a mask file; found no file there.") from None
    elif isinstance(source, Image.Image):
        mask = np.asarray(source.convert("L") if source.mode in ("1", "P") else source)
    else:
        mask = np.asarray(source)
    if mask.ndim == 3:
        if not (mask == mask[..., :1]).all():
            raise ValueError(f"{name}: expected a one-channel binary mask; found {mask.shape[-1]} differing channels.")
        mask = mask[..., 0]
    if mask.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D mask; found the shape {mask.shape}.")
    values = set(np.unique(mask).tolist())
    if values <= {0, 1}:
        return mask.astype(np.uint8)
    if values <= {0, 255}:
        return (mask == 255).astype(np.uint8)
    shown = sorted(values)[:10]
    raise ValueError(f"{name}: expected a binary mask with the values 0/1 or 0/255; found the values {shown}"
                     f"{' ...' if len(values) > 10 else ''}.")


def _output_size(height: int, width: int, size: SizeDict) -> tuple[int, int]:
    """The resized (height, width): the given one, or torchvision's Resize(int) short-side rule."""
    if size.height and size.width:
        return size.height, size.width
    if size.shortest_edge and not size.longest_edge:
        short, long = min(height, width), max(height, width)
        new_long = int(size.shortest_edge * long / short)
        if new_long * size.shortest_edge > Image.MAX_IMAGE_PIXELS:
            raise ValueError(
                f"size (shortest_edge={size.shortest_edge}): expected a resized image of at most "
                f"{Image.MAX_IMAGE_PIXELS} pixels (PIL's MAX_IMAGE_PIXELS); found a {width}x{height} image, whose "
                f"long side would become {new_long}."
            )
        return (size.shortest_edge, new_long) if height <= width else (new_long, size.shortest_edge)
    raise ValueError(f"size: expected the keys (height, width) or (shortest_edge); found {dict(size)}.")


class MRMImageProcessorKwargs(ImagesKwargs, total=False):
    """
    mode (`str`): "evaluation" (resize the short side, center crop), "pretraining" (resize to a square) or
        "segmentation" (resize to 512 x 512); picks the published defaults of size, crop_size, resample and
        do_center_crop that are not given explicitly.
    bits_stored (`int`): the bits a 16-bit image really stores (12 for most detectors' PNGs), as DICOM's BitsStored;
        16-bit values are then scaled by 2**bits_stored - 1 instead of 65535. None: 16 (with a warning when the
        values clearly use 12 bits or fewer).
    """

    mode: str | None
    bits_stored: int | None


# Keys a saved preprocessor_config.json holds besides the keywords; transformers writes them, and passes them back.
_SAVED_METADATA = {"image_processor_type", "auto_map", "processor_class", "feature_extractor_type"}


def _note_convert_rgb(value) -> None:
    """`do_convert_rgb=False` cannot keep colour here: say so once rather than let it pass as if it did."""
    if value is False:
        logger.warning_once(
            "MRMImageProcessor: do_convert_rgb=False is kept as set, but it changes nothing here: every image is read "
            "as grayscale luminance and repeated on 3 channels (the published Grayscale(3)), the input the encoder "
            "was trained on."
        )


class MRMImageProcessor(PilBackend):
    """Chest radiographs (any bit depth, colour mode, or DICOM) to normalised 3-channel `pixel_values`.

    `do_convert_rgb` is accepted and kept as transformers' image processors keep it, so that shared configs and
    keywords load; for MRM, "to RGB" is always grayscale luminance on 3 identical channels, whatever its value.
    """

    valid_kwargs = MRMImageProcessorKwargs
    model_input_names = ["pixel_values"]

    mode = "evaluation"
    do_resize = True
    size = MODES["evaluation"]["size"]
    default_to_square = False
    resample = PILImageResampling.BILINEAR
    do_center_crop = True
    crop_size = MODES["evaluation"]["crop_size"]
    # Pixels are scaled to [0, 1] by their bit depth when read, so a fixed rescale factor has no place.
    do_rescale = False
    rescale_factor = None
    do_normalize = True
    image_mean = [MRM_MEAN] * 3
    image_std = [MRM_STD] * 3
    bits_stored = None
    do_convert_rgb = None

    def __init__(self, mode: str = "evaluation", **kwargs: Unpack[MRMImageProcessorKwargs]):
        # transformers keeps unknown keywords as attributes and saves them, so a wrong one (`image_size=64`) would be
        # ignored until the model met a view of the wrong size; refuse it, naming those that count.
        unknown = sorted(set(kwargs) - set(self.valid_kwargs.__annotations__) - _SAVED_METADATA)
        if unknown:
            raise TypeError(
                f"MRMImageProcessor: expected keywords among {sorted(self.valid_kwargs.__annotations__)}; found "
                f"{unknown}. The view's size is `size` and `crop_size` (evaluation: size={{'shortest_edge': N}}, "
                "crop_size={'height': N, 'width': N}; mrm_hf.processing_mrm.encoder_image_processor(N) makes it)."
            )
        _note_convert_rgb(kwargs.get("do_convert_rgb"))
        for key, value in _check_mode(mode).items():
            if kwargs.get(key) is None:
                kwargs[key] = value
        super().__init__(mode=mode, **kwargs)

    def preprocess(
        self, images, segmentation_maps=None, **kwargs: Unpack[MRMImageProcessorKwargs]
    ) -> BatchFeature:
        """Preprocess an image or a batch of images; `mode` switches to that mode's published defaults.

        segmentation_maps: one binary mask (0/1 or 0/255, the image's size) per image, returned as `labels`, resized
            and cropped as the images are but with nearest neighbour.
        """
        _note_convert_rgb(kwargs.get("do_convert_rgb", self.do_convert_rgb))
        mode = kwargs.get("mode")
        if mode is not None and mode != self.mode:
            for key, value in _check_mode(mode).items():
                kwargs.setdefault(key, value)
        return super().preprocess(images, segmentation_maps, **kwargs)

    def _preprocess_image_like_inputs(self, images, segmentation_maps=None, **kwargs) -> BatchFeature:
        """`pixel_values` of the images and, given masks, their `labels` (uint8 0/1 maps at the output size)."""
        images = self._prepare_image_like_inputs(images, **kwargs)
        features = self._preprocess(images, **kwargs)
        if segmentation_maps is None:
            return features
        masks = segmentation_maps if isinstance(segmentation_maps, (list, tuple)) else [segmentation_maps]
        if len(masks) != len(images):
            raise ValueError(
                f"segmentation_maps: expected one mask per image; found {len(images)} images and {len(masks)} masks."
            )
        labels = []
        for index, (image, mask) in enumerate(zip(images, masks)):
            name = str(mask) if isinstance(mask, (str, os.PathLike)) else f"segmentation_maps[{index}]"
            mask = load_mask(mask, name)
            if mask.shape != image.shape[-2:]:
                raise ValueError(
                    f"{name}: expected a mask at its image's size (height, width) {tuple(image.shape[-2:])}; found "
                    f"{mask.shape}."
                )
            label = mask.astype(np.float32)
            if kwargs["do_resize"]:
                label = resize_grayscale(label, _output_size(*label.shape, kwargs["size"]), Image.Resampling.NEAREST)
            if kwargs["do_center_crop"]:
                label = center_crop_grayscale(label, (kwargs["crop_size"].height, kwargs["crop_size"].width))
            labels.append(label.astype(np.uint8))
        features["labels"] = np.stack(labels)
        return BatchFeature(data=dict(features), tensor_type=kwargs.get("return_tensors"))

    def post_process_semantic_segmentation(
        self, outputs, target_sizes=None, return_segmentation_scores: bool = False
    ) -> list:
        """One (height, width) map of class ids per image: the logits resized (bilinear) to target_sizes, arg-max.

        With `return_segmentation_scores`, each item is a `SemanticSegmentationPostProcessorOutput` that also holds
        the (resized) logits as `segmentation_scores`, as transformers' segmentation processors return.
        """
        logits = outputs.logits
        if target_sizes is not None and len(target_sizes) != len(logits):
            raise ValueError(
                f"target_sizes: expected one size per image; found {len(target_sizes)} for {len(logits)} images."
            )
        results = []
        for index, image_logits in enumerate(logits):
            if target_sizes is not None:
                size = tuple(int(side) for side in target_sizes[index])
                image_logits = torch.nn.functional.interpolate(
                    image_logits[None].float(), size=size, mode="bilinear", align_corners=False
                )[0]
            segmentation = image_logits.argmax(dim=0)
            if return_segmentation_scores:
                segmentation = SemanticSegmentationPostProcessorOutput(
                    data={"segmentation": segmentation, "segmentation_scores": image_logits}
                )
            results.append(segmentation)
        return results

    def fetch_images(self, image_url_or_urls):
        """Paths, bytes, datasets image dicts and pydicom Datasets as PIL images (DICOM included); images pass
        through."""
        if isinstance(image_url_or_urls, (list, tuple)):
            return [self.fetch_images(item) for item in image_url_or_urls]
        if isinstance(image_url_or_urls, (str, os.PathLike, bytes, dict)) or _is_dicom_dataset(image_url_or_urls):
            if self.bits_stored is not None:  # raw values, scaled once by `convert_to_grayscale`
                return _read_file(image_url_or_urls)
            return load_radiograph(image_url_or_urls)
        return image_url_or_urls

    def _prepare_images_structure(self, images, expected_ndims: int = 3) -> list:
        """A flat list of single images; 4-D arrays and nested lists are batches, 2-D and 3-D arrays one image."""
        images = self.fetch_images(images)
        if isinstance(images, (list, tuple)):
            flat = [image for item in images for image in self._prepare_images_structure(item)]
            if not flat:
                raise ValueError("images: expected at least one image; found an empty list.")
            return flat
        if isinstance(images, (np.ndarray, torch.Tensor)) and images.ndim == 4:
            return list(images)
        return [images]

    def convert_to_grayscale(self, image, input_data_format=None) -> np.ndarray:
        """Any supported input as an (H, W) float32 array in [0, 1]."""
        return to_grayscale(image, input_data_format, self.bits_stored)

    def process_image(self, image, input_data_format=None, **kwargs) -> np.ndarray:
        """One input as a (1, H, W) float32 array in [0, 1]."""
        return self.convert_to_grayscale(image, input_data_format)[None]

    def resize(self, image: np.ndarray, size: SizeDict, resample=None, **kwargs) -> np.ndarray:
        """Resize a (C, H, W) float array in [0, 1], channel by channel, with PIL."""
        new_size = _output_size(image.shape[-2], image.shape[-1], size)
        resample = self.resample if resample is None else resample
        return np.stack([resize_grayscale(channel, new_size, resample) for channel in image])

    def center_crop(self, image: np.ndarray, size: SizeDict, **kwargs) -> np.ndarray:
        """torchvision's CenterCrop of a (C, H, W) array."""
        if size.height is None or size.width is None:
            raise ValueError(f"crop_size: expected the keys (height, width); found {dict(size)}.")
        return np.stack([center_crop_grayscale(channel, (size.height, size.width)) for channel in image])

    def _preprocess(
        self,
        images: list[np.ndarray],
        do_resize: bool,
        size: SizeDict,
        resample,
        do_center_crop: bool,
        crop_size: SizeDict,
        do_rescale: bool,
        do_normalize: bool,
        image_mean,
        image_std,
        do_pad: bool | None = None,
        pad_size: SizeDict | None = None,
        return_tensors=None,
        **kwargs,
    ) -> BatchFeature:
        """Resize, crop, replicate to 3 channels and normalise grayscale (1, H, W) images in [0, 1]."""
        if do_rescale:
            raise ValueError("do_rescale: expected False (MRMImageProcessor scales pixels by their bit depth when it "
                             "reads them); found True.")
        processed = []
        for image in images:
            if do_resize:
                image = self.resize(image, size, resample)
            if do_center_crop:
                image = self.center_crop(image, crop_size)
            image = np.repeat(image, 3, axis=0)
            if do_normalize:
                image = self.normalize(image, image_mean, image_std)
            processed.append(image.astype(np.float32, copy=False))
        if do_pad:
            processed = self.pad(processed, pad_size=pad_size)
        return BatchFeature(data={"pixel_values": processed}, tensor_type=return_tensors)

    def grayscale_to_pixel_values(self, grays: torch.Tensor) -> torch.Tensor:
        """(N, H, W) grayscale crops already resized elsewhere (uint8 0..255, or float in [0, 1]) as (N, 3, H, W)
        float32 pixel values: the last two steps of `preprocess` only, channels replicated and (with do_normalize)
        normalised, on the tensor's own device. The training transforms and the on-device augmentation end here."""
        if grays.dim() != 3:
            raise ValueError(
                f"grays: expected grayscale crops of shape (N, H, W); found the shape {tuple(grays.shape)}."
            )
        values = grays.float() / 255.0 if grays.dtype == torch.uint8 else grays.float()
        if not self.do_normalize:
            return values.unsqueeze(1).expand(-1, 3, -1, -1).contiguous()
        # Channel by channel into one output: about half the time of a broadcast over the replicated channels.
        output = values.new_empty(values.shape[0], 3, *values.shape[1:])
        for channel, (mean, std) in enumerate(zip(self.image_mean, self.image_std)):
            torch.sub(values, float(np.float32(mean)), out=output[:, channel]).div_(float(np.float32(std)))
        return output


def _refuse_dicom_in_pil(fp, filename=None):
    """PIL cannot read DICOM, and transformers' stock image pipelines open paths with PIL (`load_image`) before any
    image processor sees them: say what reads the file rather than "cannot identify image file". Files that are not
    DICOM go on to PIL's other readers (SyntaxError is PIL's "not mine")."""
    name = filename or "this file"
    fp.seek(128)
    marker = fp.read(4)
    if marker != b"DICM":
        raise SyntaxError(f"{name}: expected a DICOM file (b'DICM' at byte 128); found {marker!r}.")
    raise UnidentifiedImageError(
        f"{name}: expected an image PIL can read; found a DICOM file, which PIL (and so transformers' load_image, "
        "which its stock image pipelines call) cannot read. With mrm-hf installed (pip install \"mrm-hf[dicom]\"), "
        "`import mrm_hf` and the image pipelines of MRM models read DICOM; without it, pass the pixel values: "
        "MRMImageProcessor reads DICOM paths itself (with pydicom)."
    )


# Registered last, so PIL tries it only after its own readers; it claims DICOM files alone.
Image.register_open("MRM-DICOM", _refuse_dicom_in_pil, lambda prefix: True)

__all__ = [
    "DICOM_SUFFIXES",
    "IMAGE_CHECKS",
    "MRMImageProcessor",
    "check_shape",
    "image_problem",
    "image_size",
    "is_dicom",
    "load_mask",
    "load_radiograph",
    "open_fast",
    "to_grayscale",
]

MRMImageProcessor.register_for_auto_class("AutoImageProcessor")
