"""Image/mask pairs for segmentation: SIIM-ACR pneumothorax on the published MRM splits, and any CSV of pairs.

Every loader returns a `DatasetDict` of the splits it has (`train`, `validation`, `test`) with the columns:
- `image_path`: the absolute path of the image (DICOM, PNG, JPEG, ...; read by `load_radiograph`);
- `mask_path`: the absolute path of a binary PNG mask (0/1 or 0/255, the image's size), or "" when the mask is RLE;
- `rle`: the image's run-length encoded masks (SIIM's `train-rle.csv`, one string per row, "-1" for none), or [];
- `name`: the id or path the split list or CSV gives.
Masks are read when a row is used (`read_pair`, which `mrm_hf.transforms.SegmentationTransform` calls); an image
with no positive pixel is valid.

SIIM-ACR as people have it: the Kaggle `stage_2` DICOMs (any folder layout: files are found by their id) with
`train-rle.csv`, or PNG/JPEG images with PNG masks named by id (the layout the published code reads). SIIM's RLE is
column-major; `train-rle.csv` gives each run's start relative to the end of the previous run ("relative"), the stage 2
`stage_2_train.csv` absolute 1-based starts ("absolute"). Images listed in a split but absent from disk, listed
images without a mask, RLE rows for images not on disk, and masks of another size than their image (read from the
file headers) are skipped, counted and named in one warning per kind, or raise with `strict=True`. Mask values other
than 0/1 or 0/255, and RLE runs that do not fit the image, raise when the row is read, naming the file.
"""

import csv
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from datasets import Dataset, DatasetDict, Features, List, Value
from PIL import Image

from ..image_processing_mrm import image_size, load_mask, load_radiograph
from ..utils import check_choice
from .skips import Skips, left_out
from .splits import ImageIndex, missing_images, published_lists, read_split_list, split_folder


SIIM_FOLDER = "SIIM-ACR_Pneumothorax"
SIIM_LABEL_FRACTIONS = (10, 100)  # the published repository deleted its SIIM-ACR train_1.txt in a later commit
IMAGE_SUFFIXES = (".dcm", ".dicom", ".png", ".jpg", ".jpeg")
RLE_ENCODINGS = ("relative", "absolute")
FEATURES = Features(
    {"image_path": Value("string"), "mask_path": Value("string"), "rle": List(Value("string")), "name": Value("string")}
)


# ---- run-length encoding ---------------------------------------------------------------------------------------------


def check_siim_label_fraction(label_fraction: int) -> int:
    """`label_fraction` if SIIM-ACR has a published training list for it, else a ValueError: the one check."""
    return check_choice("SIIM-ACR label_fraction (percent; train_1.txt was deleted upstream)", label_fraction,
                        SIIM_LABEL_FRACTIONS)


def check_rle_encoding(encoding: str) -> str:
    """`encoding` if it is one of `RLE_ENCODINGS`, else a ValueError: the one check of the choice."""
    return check_choice("rle_encoding", encoding, RLE_ENCODINGS)


def rle_decode(rle: str, height: int, width: int, encoding: str = "relative", name: str = "the RLE") -> np.ndarray:
    """SIIM's run-length encoding as an (height, width) uint8 mask of 0 and 1; "-1" (or "") is an empty mask.

    Pixels are numbered column by column (down the first column, then the next). "relative": each pair is (gap after
    the previous run, run length), as in `train-rle.csv`; "absolute": (1-based start, run length).
    """
    check_rle_encoding(encoding)
    mask = np.zeros(height * width, dtype=np.uint8)
    text = rle.strip()
    if text in ("", "-1"):
        return mask.reshape(width, height).T
    try:
        numbers = [int(token) for token in text.split()]
    except ValueError:
        raise ValueError(f"The RLE of {name}: expected integers; found {text[:60]!r}.") from None
    if len(numbers) % 2 or any(n < 0 for n in numbers):
        raise ValueError(f"The RLE of {name}: expected (start, length) pairs of non-negative integers; found "
                         f"{len(numbers)} numbers.")
    position = 0
    for start, length in zip(numbers[0::2], numbers[1::2]):
        position = position + start if encoding == "relative" else start - 1
        if position < 0 or position + length > mask.size:
            raise ValueError(
                f"The RLE of {name}: expected runs inside the {width}x{height} image ({mask.size} pixels); found one "
                f"ending at pixel {position + length}. It was written for an image of another size (resized images "
                "need masks, not the original RLE)."
            )
        mask[position : position + length] = 1
        position += length
    return mask.reshape(width, height).T


def rle_encode(mask: np.ndarray, encoding: str = "relative") -> str:
    """The inverse of `rle_decode`: a 2-D 0/1 mask as SIIM's run-length encoding, "-1" when empty."""
    check_rle_encoding(encoding)
    flat = np.asarray(mask, dtype=bool).T.reshape(-1)
    if not flat.any():
        return "-1"
    edges = np.flatnonzero(np.diff(np.concatenate([[0], flat.astype(np.int8), [0]])))
    starts, ends = edges[0::2], edges[1::2]
    numbers, previous_end = [], 0
    for start, end in zip(starts, ends):
        numbers += [int(start - previous_end) if encoding == "relative" else int(start + 1), int(end - start)]
        previous_end = end
    return " ".join(map(str, numbers))


def read_rle_csv(path: str | os.PathLike, strict: bool = False) -> dict[str, list[str]]:
    """SIIM's `ImageId, EncodedPixels` CSV as {image id: its RLE strings} (several rows for several regions)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: expected the RLE CSV; found no such file.")
    rles: dict[str, list[str]] = {}
    malformed, total = Skips(path, strict, ValueError, what="lines", kind="malformed"), 0
    with open(path, newline="", encoding="utf-8") as file:
        reader = csv.reader(file)
        header = [column.strip() for column in next(reader, [])]
        if "ImageId" not in header or "EncodedPixels" not in header:
            raise ValueError(f"{path}: expected the columns ImageId and EncodedPixels; found {header}.")
        id_column, rle_column = header.index("ImageId"), header.index("EncodedPixels")
        for row in reader:
            total += 1
            if len(row) != len(header) or not row[id_column].strip():
                malformed.skip(f"line {reader.line_num}", detail=repr(",".join(row)),
                               expected=f"{len(header)} fields and an ImageId", found=f"{len(row)} fields")
                continue
            rles.setdefault(row[id_column].strip(), []).append(row[rle_column].strip())
    malformed.finish(total)
    return rles


# ---- reading a row ---------------------------------------------------------------------------------------------------


def read_pair(row: dict, rle_encoding: str = "relative") -> tuple[Image.Image, np.ndarray]:
    """A row's radiograph (PIL) and its 0/1 mask at the image's size; a bad mask raises naming its file."""
    image = load_radiograph(row["image_path"])
    if row["mask_path"]:
        mask = load_mask(row["mask_path"])
        if mask.shape != (image.height, image.width):
            raise ValueError(f"{row['mask_path']}: expected its image's size {image.width}x{image.height} "
                             f"({row['image_path']}); found {mask.shape[1]}x{mask.shape[0]}.")
    else:
        mask = np.zeros((image.height, image.width), dtype=np.uint8)
        for rle in row["rle"]:
            name = f"{row['name']} ({row['image_path']})"
            mask |= rle_decode(rle, image.height, image.width, rle_encoding, name=name)
    return image, mask


# ---- checks ----------------------------------------------------------------------------------------------------------


def _skipped(source: str, reason: str, names: list[str], total: int, strict: bool):
    """Raise (strict, or nothing left) or warn once about the rows of `source` left out for `reason`."""
    left_out(source, names, total, f"rows of {source} {reason}", strict, ValueError)


def _check_sizes(rows: list[dict], source: str, strict: bool) -> list[dict]:
    """The rows whose PNG mask has its image's size; the others reported (RLE masks are checked when decoded)."""
    kept, mismatched = [], []
    for row in rows:
        if row["mask_path"]:
            image_shape, mask_shape = image_size(row["image_path"]), image_size(row["mask_path"])
            if image_shape != mask_shape:
                mismatched.append(f"{row['mask_path']} is {mask_shape[1]}x{mask_shape[0]}, its image "
                                  f"{row['image_path']} {image_shape[1]}x{image_shape[0]}")
                continue
        kept.append(row)
    _skipped(source, "have a mask of another size than their image", mismatched, len(rows), strict)
    return kept


def _dataset(rows: list[dict]) -> Dataset:
    return Dataset.from_list(rows, features=FEATURES)


# ---- SIIM-ACR --------------------------------------------------------------------------------------------------------


def _index_by_id(root: Path, exclude: Path | None = None) -> dict[str, str]:
    """{file stem: absolute path} of the image files below root (the shallowest when a stem repeats)."""
    index = ImageIndex(root)
    found = {}
    for name, candidates in index.by_name.items():
        stem, suffix = os.path.splitext(name)
        if suffix.lower() not in IMAGE_SUFFIXES:
            continue
        for parts in candidates:
            path = index.root.joinpath(*parts)
            if exclude is not None and path.is_relative_to(exclude):
                continue
            found.setdefault(stem, str(path))
            break
    return found


def load_siim(
    data_dir: str | os.PathLike,
    split_dir: str | os.PathLike,
    label_fraction: int = 100,
    rle_csv: str | os.PathLike | None = None,
    mask_dir: str | os.PathLike | None = None,
    rle_encoding: str = "relative",
    splits: Sequence[str] = ("train", "validation", "test"),
    strict: bool = False,
) -> DatasetDict:
    """SIIM-ACR pneumothorax on the published MRM splits (`train_10.txt` or `train_list.txt`, `val_list.txt`,
    `test_list.txt`): images found below `data_dir` by id, masks from `rle_csv` or PNGs `<id>.png` below `mask_dir`."""
    check_siim_label_fraction(label_fraction)
    if (rle_csv is None) == (mask_dir is None):
        raise ValueError("SIIM-ACR masks: expected one source, rle_csv (train-rle.csv) or mask_dir (PNG masks); "
                         f"found rle_csv={rle_csv!r}, mask_dir={mask_dir!r}.")
    check_rle_encoding(rle_encoding)
    lists = published_lists(split_folder(split_dir, SIIM_FOLDER), label_fraction, list(splits))
    mask_root = Path(mask_dir).resolve() if mask_dir is not None else None
    images = _index_by_id(Path(data_dir), exclude=mask_root)
    if mask_root is not None:
        masks = {stem: path for stem, path in _index_by_id(mask_root).items() if path.lower().endswith(".png")}
        rles = {}
    else:
        masks, rles = {}, read_rle_csv(rle_csv, strict)
        orphans = sorted(image_id for image_id in rles if image_id not in images)
        _skipped(str(rle_csv), f"name images that are not under {data_dir}", orphans, len(rles), strict)

    result = {}
    for split, path in lists.items():
        ids = [name for name, _ in read_split_list(path, 0, strict=strict)]
        missing = [image_id for image_id in ids if image_id not in images]
        missing_images(str(path), str(data_dir), missing, len(ids), strict)
        present = [image_id for image_id in ids if image_id in images]
        unannotated = [image_id for image_id in present if image_id not in (masks if mask_root else rles)]
        where = f"a mask <id>.png under {mask_dir}" if mask_root else f"a row in {rle_csv}"
        _skipped(str(path), f"list images without {where}", unannotated, len(present), strict)
        rows = [
            {"image_path": images[i], "mask_path": masks.get(i, ""), "rle": rles.get(i, []), "name": i}
            for i in present
            if i in (masks if mask_root else rles)
        ]
        result[split] = _dataset(_check_sizes(rows, str(path), strict))
    return DatasetDict(result)


# ---- CSV of pairs ----------------------------------------------------------------------------------------------------


def load_segmentation_csv(
    train_csv: str | os.PathLike,
    validation_csv: str | os.PathLike | None = None,
    test_csv: str | os.PathLike | None = None,
    image_column: str = "image_path",
    mask_column: str = "mask_path",
    strict: bool = False,
) -> DatasetDict:
    """Image/mask pairs from CSVs with an image path column and a mask path column, relative to each CSV's folder."""
    result = {}
    for split, path in {"train": train_csv, "validation": validation_csv, "test": test_csv}.items():
        if path is None:
            continue
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: expected the {split} CSV; found no such file.")
        with open(path, newline="", encoding="utf-8") as file:
            reader = csv.DictReader(file)
            found = reader.fieldnames or []
            if image_column not in found or mask_column not in found:
                raise ValueError(f"{path}: expected the columns {image_column!r} and {mask_column!r}; found {found}. "
                                 "Pass --image_column/--mask_column.")
            entries = [(row[image_column], row[mask_column]) for row in reader]
        rows, missing_images, missing_masks = [], [], []
        for image, mask in entries:
            image_path, mask_path = (path.parent / image).resolve(), (path.parent / mask).resolve()
            if not image_path.is_file():
                missing_images.append(str(image_path))
            elif not mask_path.is_file():
                missing_masks.append(str(mask_path))
            else:
                rows.append({"image_path": str(image_path), "mask_path": str(mask_path), "rle": [], "name": image})
        _skipped(str(path), "name an image file that does not exist", missing_images, len(entries), strict)
        _skipped(str(path), "name a mask file that does not exist", missing_masks, len(entries), strict)
        result[split] = _dataset(_check_sizes(rows, str(path), strict))
    return DatasetDict(result)


__all__ = [
    "RLE_ENCODINGS",
    "SIIM_LABEL_FRACTIONS",
    "check_rle_encoding",
    "check_siim_label_fraction",
    "load_segmentation_csv",
    "load_siim",
    "read_pair",
    "read_rle_csv",
    "rle_decode",
    "rle_encode",
]
