"""MIMIC-CXR-JPG image-report records (and the published `training.csv`) as cached `datasets.Dataset`s.

The official PhysioNet layout (MIMIC-CXR-JPG v2.0.0; the reports ship with MIMIC-CXR v2.0.0):

    <root>/files/p10/p10000032/s50414267/02aa804e-bde0afdd-112c0b34-7bc16630-4e384014.jpg
    <root>/mimic-cxr-2.0.0-split.csv.gz       dicom_id, study_id, subject_id, split (train / validate / test)
    <root>/mimic-cxr-2.0.0-metadata.csv.gz    dicom_id, subject_id, study_id, ..., ViewPosition, Rows, Columns, ...
    <root>/mimic-cxr-2.0.0-chexpert.csv.gz    subject_id, study_id, 14 labels (1.0, 0.0, -1.0 or blank); optional
    mimic-cxr-reports.zip                     members files/p10/p10000032/s50414267.txt (or that tree unpacked)

The folder "pXX" is the first two digits of the subject id. Images are stored as paths and left undecoded
(`Image(decode=False)`: `{"path", "bytes"}` rows, which `MRMImageProcessor`, `load_radiograph` and the training
transforms read): `datasets` would otherwise decode each image before `set_transform`'s transform sees it, and a
corrupt file would stop training there without its name, where the transforms name it with its row (or skip it).

Records that cannot be used (image missing, unreadable or truncated; report missing, or empty under the section
policy) are skipped, counted per reason and reported in one warning; `strict=True` raises at the first one, naming it.
Image checks (`check_images`): "header" (default) opens the header and, for JPEG, looks for the end-of-image marker
that a truncated file lacks: 0.1-0.5 ms per image measured on a warm local disk, so minutes for all 377,110 images.
It cannot see a JPEG whose coded data is broken or zero-filled in the middle; training names (path and row) and skips
or raises any image that fails when it is read. "full" also refuses a JPEG with a run of 1024 zero bytes inside its
coded data (a block of the file overwritten with zeros decodes without error, as garbage), and decodes every image
(65 ms for a 3056x2544 JPEG here, about 7 hours on one core: use `num_proc`); "none" only checks that the file exists.

`load_mimic_cxr` columns: `image` (a path, undecoded), `report` (under the section policy), `subject_id`,
`study_id`, `dicom_id`, `view` (ViewPosition), `split` ("train", "validate" or "test"; "validation" is accepted as an
argument) and, when the CheXpert CSV is there, its 14 labels (float; None where blank). `reports=` points at the
reports zip or folder when they are not under `root` (as mimic-cxr-reports.zip, mimic-cxr-reports/files/ or
unpacked into files/ next to the images).

`load_training_csv` resolves relative image paths against `image_root` (default: the CSV's folder; the published
"./dataset/mimic_512/..." paths need the folder that holds "dataset") and reads subject, study and dicom ids from paths
in the MIMIC layout (else None).

`write_resized_copy` downscales (bicubic, antialiased; smaller images are re-encoded as they are; modes other than L
and RGB become L) to JPEG under `out_root`/files/ with the same layout, adding `suffix` to each name (the published
authors' copy used "-512"). Existing files are kept unless `overwrite`, and files are written under a temporary name
first, so an interrupted run resumes safely. Load the copy with `load_mimic_cxr(root, image_root=out_root,
image_suffix=suffix)`: CSVs and reports still come from `root`.

`num_proc` processes check (or resize) the images. The built dataset is cached by `datasets` under a fingerprint of
the arguments, the resolved paths and the size and modification time of the CSVs and the reports zip (or folder).
Images are not re-checked on a cached load: delete the cache (or use another `cache_dir`) after changing image files.
"""

import hashlib
import json
import logging
import os
import re
import zipfile
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any, Literal

import pandas as pd
from datasets import Dataset, Features, Image, Value
from datasets.exceptions import DatasetGenerationError
from PIL import Image as PILImage

from ..image_processing_mrm import IMAGE_CHECKS, image_problem
from ..utils import check_choice, check_columns
from .reports import ReportPolicy, check_report_policy, report_text
from .skips import Skips


logger = logging.getLogger(__name__)

SPLIT_CSV = "mimic-cxr-2.0.0-split.csv.gz"
METADATA_CSV = "mimic-cxr-2.0.0-metadata.csv.gz"
CHEXPERT_CSV = "mimic-cxr-2.0.0-chexpert.csv.gz"
REPORTS_ZIP = "mimic-cxr-reports.zip"
REPORTS_DIR = "mimic-cxr-reports"
CHEXPERT_LABELS = (
    "Atelectasis",
    "Cardiomegaly",
    "Consolidation",
    "Edema",
    "Enlarged Cardiomediastinum",
    "Fracture",
    "Lung Lesion",
    "Lung Opacity",
    "No Finding",
    "Pleural Effusion",
    "Pleural Other",
    "Pneumonia",
    "Pneumothorax",
    "Support Devices",
)
SPLITS = {"train": "train", "validate": "validate", "validation": "validate", "test": "test"}
ImageCheck = Literal["none", "header", "full"]
_INDEX_VERSION = 1  # bump when the records a build yields change, so old caches are not reused
_IMAGE_TAIL = re.compile(r"p\d\d/p\d+/s\d+/[^/]+$")
_RECORD_PATH = re.compile(r"p\d\d/p(\d+)/s(\d+)/([0-9a-f]{8}(?:-[0-9a-f]{8}){4})")
_REPORT_MEMBER = re.compile(r"(p\d\d/p\d+/s\d+)\.txt$")


class RecordError(ValueError):
    """A record that cannot be used, or no usable record at all."""


# ---- file checks ----------------------------------------------------------------------------------------------------


def _require(path: Path, what: str) -> Path:
    """`path`, or a FileNotFoundError that says what was expected there."""
    if not path.exists():
        raise FileNotFoundError(f"{path}: expected {what}; found no such file or folder.")
    return path


def check_image_check(check: str) -> str:
    """`check` if it names an image check (`IMAGE_CHECKS`), else a ValueError: every loader that checks images
    validates the choice here."""
    return check_choice("check_images", check, IMAGE_CHECKS)


def _map(function, items: list, num_proc: int | None) -> list:
    """`function` over `items`, in order, in `num_proc` processes when more than one."""
    if not num_proc or num_proc <= 1 or len(items) < 2:
        return [function(item) for item in items]
    with ProcessPoolExecutor(num_proc) as pool:
        return list(pool.map(function, items, chunksize=max(1, len(items) // (8 * num_proc))))


# ---- reports --------------------------------------------------------------------------------------------------------


def _find_reports(root: Path, reports: str | os.PathLike | None) -> Path:
    """The reports zip or the folder holding pXX/pXXXXXXXX/sXXXXXXXX.txt."""
    if reports is not None:
        path = _require(Path(reports), "the MIMIC-CXR reports (a .zip or a folder)")
        return path / "files" if (path / "files").is_dir() else path
    if (root / REPORTS_ZIP).is_file():
        return root / REPORTS_ZIP
    if (root / REPORTS_DIR / "files").is_dir():
        return root / REPORTS_DIR / "files"
    if next((root / "files").glob("p*/p*/s*.txt"), None) is not None:
        return root / "files"
    raise FileNotFoundError(
        f"{root}: expected the MIMIC-CXR reports, as {REPORTS_ZIP}, {REPORTS_DIR}/files/ or report files "
        f"files/pXX/pXXXXXXXX/sXXXXXXXX.txt; found none of them. Pass `reports=` to point elsewhere."
    )


def _study(subject_id: int, study_id: int) -> str:
    """The study's folder relative to files/: pXX/pXXXXXXXX/sXXXXXXXX."""
    return f"p{str(subject_id)[:2]}/p{subject_id}/s{study_id}"


class _Reports:
    """Report texts by (subject_id, study_id), from the reports zip or a folder."""

    def __init__(self, source: Path):
        self.source = source
        self.zip = zipfile.ZipFile(source) if source.is_file() else None
        self.members = {}
        if self.zip is not None:
            for name in self.zip.namelist():
                if match := _REPORT_MEMBER.search(name):
                    self.members[match.group(1)] = name

    def path(self, subject_id: int, study_id: int) -> str:
        study = _study(subject_id, study_id)
        if self.zip is not None:
            return f"{self.source}:{self.members.get(study, f'files/{study}.txt')}"
        return str(self.source / f"{study}.txt")

    def read(self, subject_id: int, study_id: int) -> str | None:
        study = _study(subject_id, study_id)
        if self.zip is not None:
            member = self.members.get(study)
            return None if member is None else self.zip.read(member).decode("utf-8", errors="replace")
        path = self.source / f"{study}.txt"
        return path.read_text(encoding="utf-8", errors="replace") if path.is_file() else None

    def close(self):
        if self.zip is not None:
            self.zip.close()


# ---- index ----------------------------------------------------------------------------------------------------------


def _read_csv(path: Path, columns: list[str]) -> pd.DataFrame:
    """The CSV's `columns`, failing with the columns found if any is absent."""
    check_columns(path, columns, pd.read_csv(path, nrows=0).columns.tolist())
    return pd.read_csv(path, usecols=columns, dtype={"dicom_id": str, "split": str, "ViewPosition": str})


def _mimic_index(root: Path, split: str | None, views: list[str] | None, with_chexpert: bool) -> pd.DataFrame:
    """One row per candidate image: ids, split, view and (optionally) CheXpert labels, in id order."""
    index = _read_csv(root / SPLIT_CSV, ["dicom_id", "study_id", "subject_id", "split"])
    metadata = _read_csv(root / METADATA_CSV, ["dicom_id", "ViewPosition"])
    index = index.merge(metadata, on="dicom_id", how="left")
    index["view"] = index.pop("ViewPosition").fillna("")
    if split is not None:
        index = index[index["split"] == split]
    if views is not None:
        kept = index["view"].isin(views)
        logger.info("%d of %d images are not in the views %s", (~kept).sum(), len(index), views)
        index = index[kept]
    if with_chexpert:
        labels = _read_csv(root / CHEXPERT_CSV, ["subject_id", "study_id", *CHEXPERT_LABELS])
        index = index.merge(labels, on=["subject_id", "study_id"], how="left")
    return index.sort_values(["subject_id", "study_id", "dicom_id"], kind="stable").reset_index(drop=True)


def _fingerprint(kind: str, options: dict[str, Any], files: list[Path]) -> str:
    """A cache key from the options and the size and modification time of the files read."""
    stats = [(str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in files]
    payload = json.dumps([kind, _INDEX_VERSION, options, stats], sort_keys=True, default=str)
    return f"{kind}-{hashlib.sha256(payload.encode()).hexdigest()[:32]}"


def _from_generator(generator, options: dict[str, Any], features: Features, fingerprint: str, cache_dir) -> Dataset:
    """Build (or reuse from the cache) the dataset; strict-mode errors surface as themselves."""
    try:
        return Dataset.from_generator(
            generator,
            features=features,
            gen_kwargs={"options": options},
            cache_dir=None if cache_dir is None else str(cache_dir),
            fingerprint=fingerprint,
        )
    except DatasetGenerationError as error:
        cause = error.__cause__
        while cause is not None and not isinstance(cause, RecordError):
            cause = cause.__cause__
        if cause is None:
            raise
        raise cause from None


def _label(value: Any) -> float | None:
    return None if pd.isna(value) else float(value)


def generate_mimic_records(options: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Yield the usable records of a MIMIC-CXR-JPG split, checking images and reports."""
    root, image_root = Path(options["root"]), Path(options["image_root"])
    rows = _mimic_index(root, options["split"], options["views"], options["chexpert"]).to_dict("records")
    suffix = options["image_suffix"]
    files = image_root / "files"
    paths = [str(files / _study(r["subject_id"], r["study_id"]) / f"{r['dicom_id']}{suffix}.jpg") for r in rows]
    problems = _map(partial(image_problem, check=options["check_images"]), paths, options["num_proc"])
    skips = Skips(root, options["strict"], RecordError, by_reason=True)
    reports = _Reports(Path(options["reports"]))
    try:
        for row, path, problem in zip(rows, paths, problems):
            subject_id, study_id = int(row["subject_id"]), int(row["study_id"])
            record = f"dicom_id {row['dicom_id']} (subject {subject_id}, study {study_id})"
            if problem is not None:
                skips.skip(record, problem, path)
                continue
            raw = reports.read(subject_id, study_id)
            text = None if raw is None else report_text(raw, options["report_sections"])
            if not text:
                reason = "missing report" if raw is None else "empty report"
                skips.skip(record, reason, reports.path(subject_id, study_id))
                continue
            yield {
                "image": path,
                "report": text,
                "subject_id": subject_id,
                "study_id": study_id,
                "dicom_id": row["dicom_id"],
                "view": row["view"],
                "split": row["split"],
                **{label: _label(row[label]) for label in CHEXPERT_LABELS if options["chexpert"]},
            }
    finally:
        reports.close()
    skips.finish(len(rows))


def load_mimic_cxr(
    root: str | os.PathLike,
    split: str | None = "train",
    views: tuple[str, ...] | None = ("PA", "AP"),
    report_sections: ReportPolicy = "full",
    reports: str | os.PathLike | None = None,
    image_root: str | os.PathLike | None = None,
    image_suffix: str = "",
    strict: bool = False,
    check_images: ImageCheck = "header",
    cache_dir: str | os.PathLike | None = None,
    num_proc: int | None = None,
) -> Dataset:
    """MIMIC-CXR-JPG image-report records of one split and views (None: all), one row per image."""
    root = _require(Path(root).resolve(), "the MIMIC-CXR-JPG root folder")
    image_root = Path(image_root).resolve() if image_root is not None else root
    check_choice("split", split, [*SPLITS, None])
    check_report_policy(report_sections)
    check_image_check(check_images)
    csvs = [_require(root / SPLIT_CSV, "the split CSV"), _require(root / METADATA_CSV, "the metadata CSV")]
    _require(image_root / "files", "the image folder")
    chexpert = (root / CHEXPERT_CSV).is_file()
    reports_source = _find_reports(root, reports).resolve()
    options = {
        "root": str(root),
        "image_root": str(image_root),
        "image_suffix": image_suffix,
        "reports": str(reports_source),
        "split": None if split is None else SPLITS[split],
        "views": None if views is None else sorted(v.upper() for v in views),
        "report_sections": report_sections,
        "chexpert": chexpert,
        "strict": strict,
        "check_images": check_images,
        "num_proc": num_proc,
    }
    features = {
        "image": Image(decode=False),
        "report": Value("string"),
        "subject_id": Value("int64"),
        "study_id": Value("int64"),
        "dicom_id": Value("string"),
        "view": Value("string"),
        "split": Value("string"),
        **{label: Value("float32") for label in CHEXPERT_LABELS if chexpert},
    }
    files = csvs + ([root / CHEXPERT_CSV] if chexpert else []) + [reports_source]
    fingerprint = _fingerprint("mimic-cxr", {k: v for k, v in options.items() if k != "num_proc"}, files)
    return _from_generator(generate_mimic_records, options, Features(features), fingerprint, cache_dir)


# ---- the published training.csv -------------------------------------------------------------------------------------


def generate_training_csv_records(options: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Yield the usable rows of a published-style `training.csv` (image_path, report_content)."""
    table = _read_csv(Path(options["path"]), ["image_path", "report_content"]).fillna("")
    image_root = Path(options["image_root"])
    paths = [str(Path(p) if Path(p).is_absolute() else (image_root / p).resolve()) for p in table["image_path"]]
    problems = _map(partial(image_problem, check=options["check_images"]), paths, options["num_proc"])
    skips = Skips(options["path"], options["strict"], RecordError, by_reason=True)
    for number, (path, report, problem) in enumerate(zip(paths, table["report_content"], problems), start=2):
        record = f"row {number} ({Path(path).name})"
        text = report_text(report, options["report_sections"]) if problem is None else None
        if problem is not None or not text:
            skips.skip(record, problem or ("missing report" if not report.strip() else "empty report"), path)
            continue
        match = _RECORD_PATH.search(Path(path).as_posix())
        yield {
            "image": path,
            "report": text,
            "subject_id": int(match.group(1)) if match else None,
            "study_id": int(match.group(2)) if match else None,
            "dicom_id": match.group(3) if match else None,
        }
    skips.finish(len(table))


def load_training_csv(
    path: str | os.PathLike,
    image_root: str | os.PathLike | None = None,
    report_sections: ReportPolicy = "full",
    strict: bool = False,
    check_images: ImageCheck = "header",
    cache_dir: str | os.PathLike | None = None,
    num_proc: int | None = None,
) -> Dataset:
    """The published `training.csv` (image_path, report_content) as image-report records."""
    path = _require(Path(path).resolve(), "the training CSV")
    check_report_policy(report_sections)
    check_image_check(check_images)
    options = {
        "path": str(path),
        "image_root": str(Path(image_root).resolve() if image_root is not None else path.parent),
        "report_sections": report_sections,
        "strict": strict,
        "check_images": check_images,
        "num_proc": num_proc,
    }
    features = Features(
        {
            "image": Image(decode=False),
            "report": Value("string"),
            "subject_id": Value("int64"),
            "study_id": Value("int64"),
            "dicom_id": Value("string"),
        }
    )
    fingerprint = _fingerprint("training-csv", {k: v for k, v in options.items() if k != "num_proc"}, [path])
    return _from_generator(generate_training_csv_records, options, features, fingerprint, cache_dir)


# ---- resized copy ---------------------------------------------------------------------------------------------------


def short_side_size(width: int, height: int, short_side: int) -> tuple[int, int] | None:
    """The (width, height) that brings the short side down to `short_side`, keeping the aspect; None if no larger."""
    scale = short_side / min(width, height)
    if scale >= 1:
        return None
    return (short_side, round(height * scale)) if width <= height else (round(width * scale), short_side)


def _resize_one(job: tuple[str, str], short_side: int, quality: int, overwrite: bool) -> str | None:
    """Write `job`'s source with its short side at most `short_side`; return the problem, if any."""
    source, target = job
    if not overwrite and os.path.isfile(target):
        return None
    problem = image_problem(source, "header")
    if problem is not None:
        return problem
    try:
        with PILImage.open(source) as image:
            size = short_side_size(*image.size, short_side)
            if size is not None:
                image = image.resize(size, PILImage.Resampling.BICUBIC)
            else:
                image.load()
            if image.mode not in ("L", "RGB"):
                image = image.convert("L")
            os.makedirs(os.path.dirname(target), exist_ok=True)
            partial_target = f"{target}.partial"
            image.save(partial_target, format="JPEG", quality=quality)
            os.replace(partial_target, target)
    except (OSError, SyntaxError, ValueError) as error:
        return "truncated image" if "truncated" in str(error) else "unreadable image"
    return None


def write_resized_copy(
    dataset_or_root: Dataset | str | os.PathLike,
    out_root: str | os.PathLike,
    short_side: int = 512,
    suffix: str = "",
    quality: int = 95,
    overwrite: bool = False,
    strict: bool = False,
    num_proc: int | None = None,
) -> Path:
    """Copy the images of a MIMIC-CXR-JPG root (or a dataset) under `out_root`, short side at most `short_side`."""
    out_root, source = Path(out_root), dataset_or_root
    if isinstance(source, Dataset):
        sources = [item["path"] for item in source.cast_column("image", Image(decode=False))["image"]]
        relative = []
        for path in sources:
            match = _IMAGE_TAIL.search(Path(path).as_posix())
            if match is None:
                raise ValueError(f"Image path of the dataset: expected one ending in pXX/pXXXXXXXX/sXXXXXXXX/<name>; "
                                 f"found {path}.")
            relative.append(match.group(0))
    else:
        files = _require(Path(source) / "files", "the image folder of the MIMIC-CXR-JPG root")
        sources = sorted(str(p) for p in files.rglob("*.jpg"))
        relative = [Path(p).relative_to(files).as_posix() for p in sources]
    targets = [str(out_root / "files" / (str(Path(r).with_suffix("")) + f"{suffix}.jpg")) for r in relative]
    problems = _map(
        partial(_resize_one, short_side=short_side, quality=quality, overwrite=overwrite),
        list(zip(sources, targets)),
        num_proc,
    )
    where = "the dataset" if isinstance(source, Dataset) else source
    skips = Skips(where, strict, RecordError, "images", by_reason=True)
    for path, name, problem in zip(sources, relative, problems):
        if problem is not None:
            skips.skip(name, problem, path)
    skips.finish(len(sources))
    return out_root


__all__ = [
    "CHEXPERT_LABELS",
    "RecordError",
    "load_mimic_cxr",
    "load_training_csv",
    "write_resized_copy",
]
