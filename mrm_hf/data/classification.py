"""Labelled chest X-rays for fine-tuning: the published MRM splits of NIH ChestX-ray14, CheXpert, RSNA Pneumonia and
the COVID-19 image data collection, and any CSV of image paths and labels, as `datasets.DatasetDict`s.

Every builder returns the splits `train`, `validation` and `test` (those it has) with the columns:
- `image`: a datasets `Image()` holding the absolute path, decoded on access. DICOM files (RSNA) get
  `Image(decode=False)`, because PIL cannot open them: rows hold `{"path", "bytes"}` dicts, which `MRMImageProcessor`
  (through `load_radiograph`) reads, windowing and MONOCHROME1 included.
- `labels`: `List(Value("float32"), length=C)`, one 0/1 value per class in the published order, for BCE with logits
  (`multi_label_classification`). Binary tasks (RSNA, COVID) have C = 1: the published NIH script uses BCE with logits
  and the RSNA and COVID scripts were never released, so one output keeps every task on that one loss. `load_csv`
  can instead give one integer class (`ClassLabel`) per image for softmax training.
- `image_path`: the image's path as the split list or CSV names it.
The class names are in the module constants and, for any built dataset, `label_names(dataset)`: they are stored in
each split's `info.description`, so they survive `save_to_disk`.

The split lists are never shipped: `split_dir` is the published `DatasetsSplits/` folder or one dataset's folder in it.
Images are found by indexing `data_dir` once: a listed name matches a file whose path ends with the whole name, else
with the name less its first folder (so `data_dir` may be the folder that holds `CheXpert-v1.0-small/` or that folder
itself). Bare file names (NIH, COVID) match anywhere below `data_dir`: the official `images_00X/images/`, the
published `root/<split>/all_classes/`, or any other layout. When several files match, the shallowest (then the first
in path order) is taken, with a warning.

Bad input is never read silently. A malformed list line or CSV row is skipped, counted and reported in one warning
naming the file and line numbers; listed images missing on disk are left out the same way; `strict=True` raises at
either instead. Missing or miscounted label columns always raise.
"""

import csv
import json
import os
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Literal, get_args

from datasets import ClassLabel, Dataset, DatasetDict, DatasetInfo, Features, Image, List, Value

from ..image_processing_mrm import DICOM_SUFFIXES, image_problem
from ..problem_types import MULTI_LABEL, SINGLE_LABEL, ProblemType
from ..utils import check_choice, check_columns
from .mimic import check_image_check
from .skips import left_out
from .splits import (
    ImageIndex,
    binary_label,
    list_file,
    malformed_lines,
    missing_images,
    published_lists,
    read_split_list,
    split_folder,
)


NIH_LABELS = (
    "Atelectasis",
    "Cardiomegaly",
    "Effusion",
    "Infiltration",
    "Mass",
    "Nodule",
    "Pneumonia",
    "Pneumothorax",
    "Consolidation",
    "Edema",
    "Emphysema",
    "Fibrosis",
    "Pleural_Thickening",
    "Hernia",
)
CHEXPERT_COMPETITION_LABELS = ("Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Pleural Effusion")
RSNA_LABELS = ("Pneumonia",)
COVID_LABELS = ("COVID-19",)  # task "covid": COVID-19 (1) vs any other finding (0)
VIRAL_LABELS = ("viral",)  # task "viral": viral (1) vs bacterial (0) pneumonia
COVID_TASKS = {"covid": COVID_LABELS, "viral": VIRAL_LABELS}

# What the published CheXpert lists imply for uncertain (-1) labels: the published code ships the lists, not the
# mapping; these values are inferred from each label's prevalence in the lists.
CHEXPERT_PUBLISHED_UNCERTAIN = {"Atelectasis": 1.0, "Cardiomegaly": 0.0, "Consolidation": 0.0, "Edema": 1.0,
                                "Pleural Effusion": 1.0}
UNCERTAIN_POLICIES = ("published", "ones", "zeros")
UncertainPolicy = Literal["published", "ones", "zeros"]

SPLITS = ("train", "validation", "test")
NIH_FOLDER = "NIH_ChestX-ray"
CHEXPERT_FOLDER = "CheXpert"
RSNA_FOLDER = "RSNA_Pneumonia"
COVID_FOLDER = "COVID-19_Image_Data_Collection"
CHEXPERT_DATA_FOLDERS = ("CheXpert-v1.0-small", "CheXpert-v1.0")
RSNA_LABELS_CSV = "stage_2_train_labels.csv"
RSNA_TRAIN_IMAGES = "stage_2_train_images"
_NAMES_MARKER = "label_names="


def _check_splits(splits: Iterable[str] | None, available: Sequence[str]) -> list[str]:
    splits = list(available if splits is None else splits)
    unknown = [split for split in splits if split not in available]
    if unknown or not splits:
        raise ValueError(f"splits: expected a non-empty selection of {list(available)}; found {splits}.")
    return splits


# ---- finding images --------------------------------------------------------------------------------------------------


def _readable(rows: list[tuple[str, str, list]], source: str, check: str, strict: bool) -> list[tuple[str, str, list]]:
    """The rows whose image passes `check` ("none", "header", "full"; see `load_mimic_cxr`); DICOMs are left
    to the processor. Unreadable ones are raised (strict, or all of them) or left out with one warning."""
    check_image_check(check)
    kept, bad = [], []
    for row in rows:
        problem = None if row[0].lower().endswith(DICOM_SUFFIXES) else image_problem(row[0], check)
        if problem is None:
            kept.append(row)
        else:
            bad.append(f"{row[1]} ({problem})")
    left_out(source, bad, len(rows), f"images named in {source} cannot be read", strict, OSError)
    return kept


def _warn_ambiguous(index: ImageIndex):
    if index.ambiguous:
        name, matches = index.ambiguous[0]
        warnings.warn(
            f"{len(index.ambiguous)} listed names match more than one file under {index.root}; the shallowest (then "
            f"first in path order) was taken, e.g. {name!r} -> {matches[0]!r} (also {matches[1:]}).",
            UserWarning,
            stacklevel=3,
        )


# ---- datasets --------------------------------------------------------------------------------------------------------


def _image_feature(paths: Sequence[str]) -> Image:
    """`Image()`, or `Image(decode=False)` when any image is DICOM (PIL cannot decode it; the processor can)."""
    return Image(decode=not any(p.lower().endswith(DICOM_SUFFIXES) for p in paths))


def _dataset(rows: list[tuple[str, str, list]], names: Sequence[str], description: str, label_feature=None) -> Dataset:
    """A split from (absolute path, listed name, labels) rows."""
    paths = [row[0] for row in rows]
    features = Features(
        {
            "image": _image_feature(paths),
            "labels": label_feature or List(Value("float32"), length=len(names)),
            "image_path": Value("string"),
        }
    )
    info = DatasetInfo(description=f"{description} {_NAMES_MARKER}{json.dumps(list(names))}", features=features)
    data = {"image": paths, "labels": [row[2] for row in rows], "image_path": [row[1] for row in rows]}
    return Dataset.from_dict(data, features=features, info=info)


def _located(
    entries: list[tuple[str, list]], index: ImageIndex, source: str, strict: bool, check_images: str = "header"
) -> list[tuple[str, str, list]]:
    """(absolute path, name, labels) of the listed images found on disk and readable; others reported."""
    rows, missing = [], []
    for name, labels in entries:
        path = index.find(name)
        if path is None:
            missing.append(name)
        else:
            rows.append((path, name, labels))
    missing_images(source, str(index.root), missing, len(entries), strict)
    return _readable(rows, source, check_images, strict)


def _from_lists(
    lists: dict[str, Path],
    data_dir: str | os.PathLike,
    names: Sequence[str],
    description: str,
    strict: bool,
    check_images: str = "header",
) -> DatasetDict:
    """One split per published list, its images found below `data_dir`."""
    index = ImageIndex(data_dir)
    splits = {}
    for split, path in lists.items():
        entries = read_split_list(path, len(names), strict=strict)
        rows = _located(entries, index, str(path), strict, check_images)
        splits[split] = _dataset(rows, names, f"{description}, {split} ({path.name}).")
    _warn_ambiguous(index)
    return DatasetDict(splits)


def label_names(dataset: Dataset | DatasetDict) -> list[str]:
    """The class names of a dataset built here, in the order of its `labels`."""
    if isinstance(dataset, DatasetDict):
        dataset = next(iter(dataset.values()))
    feature = dataset.features.get("labels")
    if isinstance(feature, ClassLabel):
        return list(feature.names)
    description = dataset.info.description or ""
    if _NAMES_MARKER not in description:
        raise ValueError(f"The dataset's info.description: expected `{_NAMES_MARKER}`, as mrm_hf.data writes it; "
                         f"found {description!r}.")
    return json.loads(description.split(_NAMES_MARKER, 1)[1])


# ---- NIH ChestX-ray14 ------------------------------------------------------------------------------------------------


def load_nih(
    data_dir: str | os.PathLike,
    split_dir: str | os.PathLike,
    label_fraction: int = 100,
    splits: Sequence[str] | None = None,
    strict: bool = False,
    check_images: str = "header",
) -> DatasetDict:
    """NIH ChestX-ray14 on the published split (train 1/10/100%, val 11,219, test 22,433), 14 labels (`NIH_LABELS`).

    Images (`<id>.png`) are found anywhere below `data_dir`, e.g. the official `images_00X/images/` folders, and
    checked as `check_images` says ("header": a truncated file is left out; see `load_mimic_cxr`).
    """
    lists = published_lists(split_folder(split_dir, NIH_FOLDER), label_fraction, _check_splits(splits, SPLITS))
    description = f"NIH ChestX-ray14, MRM split, {label_fraction}% labels"
    return _from_lists(lists, data_dir, NIH_LABELS, description, strict, check_images)


# ---- CheXpert --------------------------------------------------------------------------------------------------------


def _chexpert_csv(data_dir: Path, name: str) -> Path:
    """The official `train.csv` or `valid.csv`, in `data_dir` or in its CheXpert-v1.0(-small) folder."""
    candidates = [data_dir / name] + [data_dir / folder / name for folder in CHEXPERT_DATA_FOLDERS]
    found = [path for path in candidates if path.is_file()]
    if not found:
        shown = [str(p) for p in candidates]
        raise FileNotFoundError(f"CheXpert {name}: expected the official file at one of {shown}; found none.")
    if len(found) > 1:
        raise ValueError(
            f"CheXpert {name}: expected one under {data_dir}; found {len(found)}: {[str(p) for p in found]}. Point "
            "`data_dir` at one."
        )
    return found[0]


def _read_header(path: Path) -> list[str]:
    with open(path, newline="", encoding="utf-8") as file:
        return next(csv.reader(file), [])


def _chexpert_label(raw: str, column: str, policy: UncertainPolicy) -> float | None:
    """A label from the official CSV: 1 and 0 as they are, blank as 0, -1 (uncertain) by `policy`; None if invalid."""
    if raw.strip() == "":
        return 0.0
    try:
        value = float(raw)
    except ValueError:
        return None
    if value in (0.0, 1.0):
        return value
    if value == -1.0:
        return {"ones": 1.0, "zeros": 0.0}.get(policy, CHEXPERT_PUBLISHED_UNCERTAIN[column])
    return None


def read_chexpert_csv(
    path: str | os.PathLike, uncertain_policy: UncertainPolicy = "published", strict: bool = False
) -> list[tuple[str, list[float]]]:
    """The (Path, 5 competition labels) rows of an official CheXpert `train.csv` or `valid.csv`."""
    check_choice("uncertain_policy", uncertain_policy, UNCERTAIN_POLICIES)
    path = Path(path)
    check_columns(path, ["Path", *CHEXPERT_COMPETITION_LABELS], _read_header(path))
    entries, malformed, total = [], malformed_lines(path, strict), 0
    with open(path, newline="", encoding="utf-8") as file:
        reader = csv.DictReader(file)
        for row in reader:
            total += 1
            labels = [_chexpert_label(row[c] or "", c, uncertain_policy) for c in CHEXPERT_COMPETITION_LABELS]
            bad = [(c, row[c]) for c, label in zip(CHEXPERT_COMPETITION_LABELS, labels) if label is None]
            if bad or not row["Path"]:
                reason = f"{bad[0][0]} is {bad[0][1]!r}, not 1, 0, -1 or blank" if bad else "empty Path"
                text = ",".join(row[c] or "" for c in ["Path", *CHEXPERT_COMPETITION_LABELS])
                malformed.skip(f"line {reader.line_num}", reason, repr(text))
                continue
            entries.append((row["Path"], labels))
    malformed.finish(total)
    return entries


def load_chexpert(
    data_dir: str | os.PathLike,
    split_dir: str | os.PathLike | None = None,
    label_fraction: int = 100,
    uncertain_policy: UncertainPolicy = "published",
    splits: Sequence[str] | None = None,
    strict: bool = False,
) -> DatasetDict:
    """CheXpert's 5 competition labels (`CHEXPERT_COMPETITION_LABELS`), from the published lists or the official CSVs.

    With `split_dir`: the published split (train 1/10/100%, validation 5,000 taken from train, test = the official
    234-image valid set), whose labels already carry the published uncertain-label mapping. Without it: `train` from
    the official `train.csv` and `test` from `valid.csv` (the published test set), no validation split; uncertain (-1)
    labels become 1 ("ones"), 0 ("zeros") or, with "published", 1 for Atelectasis, Edema and Pleural Effusion and 0
    for Cardiomegaly and Consolidation; blanks become 0. Lateral views are kept, as in the published lists.
    """
    description = f"CheXpert, 5 competition labels, {label_fraction}% labels"
    if split_dir is not None:
        if uncertain_policy != "published":
            raise ValueError(f"uncertain_policy with split_dir: expected 'published' (the published lists already map "
                             f"uncertain labels the published way); found {uncertain_policy!r}. Build from the "
                             "official CSVs (split_dir=None) to choose another policy.")
        hint = (" The 100% list (about 218k lines) ships with the published code; or build from the official "
                "train.csv with split_dir=None.")
        folder = split_folder(split_dir, CHEXPERT_FOLDER)
        lists = published_lists(folder, label_fraction, _check_splits(splits, SPLITS), hint)
        return _from_lists(lists, data_dir, CHEXPERT_COMPETITION_LABELS, f"{description}, MRM split", strict)
    if label_fraction != 100:
        raise ValueError(f"label_fraction without split_dir: expected 100 (the official CSVs give 100% of the labels); "
                         f"found {label_fraction}. The published 1% and 10% subsets need `split_dir`.")
    data_dir = Path(data_dir)
    csvs = {"train": "train.csv", "test": "valid.csv"}
    # Each CSV is read (and uncertain_policy checked) before the image folder is walked.
    read = {}
    for split in _check_splits(splits, ("train", "test")):
        path = _chexpert_csv(data_dir, csvs[split])
        read[split] = path, read_chexpert_csv(path, uncertain_policy, strict)
    index = ImageIndex(data_dir)
    result = {}
    for split, (path, entries) in read.items():
        rows = _located(entries, index, str(path), strict)
        result[split] = _dataset(rows, CHEXPERT_COMPETITION_LABELS,
                                 f"{description}, official {path.name}, uncertain labels: {uncertain_policy}.")
    _warn_ambiguous(index)
    return DatasetDict(result)


# ---- RSNA Pneumonia --------------------------------------------------------------------------------------------------


def read_rsna_labels(path: str | os.PathLike, strict: bool = False) -> list[tuple[str, list[int]]]:
    """One (stage_2_train_images/<patientId>.dcm, [Target]) per patient of `stage_2_train_labels.csv`, in file order."""
    path = Path(path)
    check_columns(path, ["patientId", "Target"], _read_header(path))
    targets: dict[str, int] = {}
    malformed, total = malformed_lines(path, strict), 0
    with open(path, newline="", encoding="utf-8") as file:
        reader = csv.DictReader(file)
        for row in reader:
            total += 1
            patient, target = row["patientId"] or "", binary_label(row["Target"] or "")
            if not patient or target is None:
                malformed.skip(f"line {reader.line_num}", detail=repr(f"{patient},{row['Target']}"),
                               expected="a patientId and a 0/1 Target")
            elif targets.setdefault(patient, target) != target:
                malformed.skip(f"line {reader.line_num}", f"Target differs from the patient's earlier Target "
                               f"{targets[patient]}", repr(f"{patient},{row['Target']}"))
    malformed.finish(total)
    return [(f"{RSNA_TRAIN_IMAGES}/{patient}.dcm", [target]) for patient, target in targets.items()]


def load_rsna(
    data_dir: str | os.PathLike,
    split_dir: str | os.PathLike | None = None,
    label_fraction: int = 100,
    splits: Sequence[str] | None = None,
    strict: bool = False,
) -> DatasetDict:
    """RSNA Pneumonia, one label (`RSNA_LABELS`), from the published lists or the official labels CSV.

    With `split_dir`: the published split (train 1/10/100%, validation 1,500 from stage 2 train, test 3,000 from
    `stage_2_test_images`). Without it: `train` only, every patient of `stage_2_train_labels.csv` (several box rows
    per patient become one label). Images are DICOM, so `image` is `Image(decode=False)`; see the module docstring.
    """
    description = f"RSNA Pneumonia, {label_fraction}% labels"
    if split_dir is not None:
        lists = published_lists(split_folder(split_dir, RSNA_FOLDER), label_fraction, _check_splits(splits, SPLITS))
        return _from_lists(lists, data_dir, RSNA_LABELS, f"{description}, MRM split", strict)
    if label_fraction != 100:
        raise ValueError(f"label_fraction without split_dir: expected 100 (the official labels CSV gives 100% of the "
                         f"labels); found {label_fraction}. The published 1% and 10% subsets need `split_dir`.")
    _check_splits(splits, ("train",))
    path = Path(data_dir) / RSNA_LABELS_CSV
    if not path.is_file():
        raise FileNotFoundError(f"{path}: expected the official RSNA labels; found no such file.")
    index = ImageIndex(data_dir)
    rows = _located(read_rsna_labels(path, strict), index, str(path), strict)
    _warn_ambiguous(index)
    return DatasetDict({"train": _dataset(rows, RSNA_LABELS, f"{description}, official {path.name}.")})


# ---- COVID-19 image data collection ----------------------------------------------------------------------------------


def load_covid(
    data_dir: str | os.PathLike,
    split_dir: str | os.PathLike,
    task: Literal["covid", "viral"] = "covid",
    split_index: int = 1,
    splits: Sequence[str] | None = None,
    strict: bool = False,
) -> DatasetDict:
    """One of the five published random splits of the COVID-19 image data collection (ieee8023), one label.

    task "covid": COVID-19 (1) vs not (0), `COVID_LABELS`; task "viral": viral (1) vs bacterial (0) pneumonia,
    `VIRAL_LABELS`. Lists are `<task><split_index>/is<task>_{train,val,test}.txt`; images are found below `data_dir`
    (the collection's `images/` folder). The first line of `viral1/isviral_test.txt` is corrupt and is reported.
    """
    check_choice("task", task, COVID_TASKS)
    check_choice("split_index", split_index, range(1, 6))
    folder = split_folder(split_dir, COVID_FOLDER) / f"{task}{split_index}"
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: expected the published split folder; found no such folder.")
    files = {"train": "train", "validation": "val", "test": "test"}
    lists = {s: list_file(folder, f"is{task}_{files[s]}.txt") for s in _check_splits(splits, SPLITS)}
    description = f"COVID-19 image data collection, task {task}, split {split_index}"
    return _from_lists(lists, data_dir, COVID_TASKS[task], description, strict)


# ---- any CSV ---------------------------------------------------------------------------------------------------------


def _check_default_label_columns(path: Path, image_column: str, columns: list[str]) -> None:
    """With no label columns named, every column but the image one is a 0/1 label: name those that are not, and
    say how to pick the label columns (a metadata column is likelier than a typo)."""
    not_binary = {}
    with open(path, newline="", encoding="utf-8") as file:
        reader = csv.DictReader(file)
        for row in reader:
            for column in columns:
                if column not in not_binary and binary_label(row[column] or "") is None:
                    not_binary[column] = (reader.line_num, row[column])
    if not not_binary:
        return
    binary = [c for c in columns if c not in not_binary]
    found = ", ".join(f"{c} ({value!r} on line {line})" for c, (line, value) in not_binary.items())
    fix = f"e.g. --label_columns {','.join(binary)}" if binary else "no column of this CSV holds only 0/1"
    raise ValueError(
        f"{path}: expected 0/1 in every column but {image_column!r}, as each is read as a label when no label columns "
        f"are named; found other values in {len(not_binary)}: {found}. Name the label columns with --label_columns "
        f"(run_classification.py) or label_columns=[...] (load_csv): {fix}."
    )


def _read_label_csv(
    path: Path,
    image_column: str,
    label_columns: list[str] | None,
    problem_type: ProblemType,
    num_labels: int | None,
    strict: bool,
) -> tuple[list[str], list[tuple[str, list | int]]]:
    """The label columns and the (image path, labels) rows of one CSV; malformed rows reported."""
    header = _read_header(path)
    check_columns(path, [image_column], header)
    columns = label_columns if label_columns is not None else [c for c in header if c != image_column]
    check_columns(path, columns, header)
    if label_columns is None and problem_type == "multi_label_classification":
        _check_default_label_columns(path, image_column, columns)
    if problem_type == "single_label_classification" and len(columns) != 1:
        raise ValueError(f"{path}, single-label classification: expected one integer class column; found "
                         f"{len(columns)} label columns {columns}. Pass `label_columns=[<the class column>]`.")
    if problem_type == "multi_label_classification" and num_labels is not None and len(columns) != num_labels:
        raise ValueError(f"{path}: expected {num_labels} label columns (num_labels); found {len(columns)}: "
                         f"{columns}.")
    entries, malformed, total = [], malformed_lines(path, strict), 0
    with open(path, newline="", encoding="utf-8") as file:
        reader = csv.DictReader(file)
        for row in reader:
            total += 1
            text = ",".join(row[c] or "" for c in [image_column, *columns])
            image = row[image_column] or ""
            if not image.strip():
                malformed.skip(f"line {reader.line_num}", f"empty {image_column}", repr(text))
                continue
            if problem_type == "multi_label_classification":
                labels = [binary_label(row[c] or "") for c in columns]
                bad = [c for c, label in zip(columns, labels) if label is None]
                if bad:
                    malformed.skip(f"line {reader.line_num}", f"{bad[0]} is {row[bad[0]]!r}, not 0 or 1", repr(text))
                    continue
                entries.append((image, labels))
            else:
                raw = row[columns[0]] or ""
                try:
                    value = float(raw)
                except ValueError:
                    value = -1.0
                if not value.is_integer() or value < 0 or (num_labels is not None and value >= num_labels):
                    expected = f"0 .. {num_labels - 1}" if num_labels is not None else "0, 1, 2, ..."
                    reason = f"{columns[0]} is {raw!r}, not a class id {expected}"
                    malformed.skip(f"line {reader.line_num}", reason, repr(text))
                    continue
                entries.append((image, int(value)))
    malformed.finish(total)
    return columns, entries


def load_csv(
    train_csv: str | os.PathLike,
    validation_csv: str | os.PathLike | None = None,
    test_csv: str | os.PathLike | None = None,
    image_column: str = "image_path",
    label_columns: Sequence[str] | str | None = None,
    problem_type: ProblemType = "multi_label_classification",
    num_labels: int | None = None,
    class_names: Sequence[str] | None = None,
    image_root: str | os.PathLike | None = None,
    strict: bool = False,
    check_images: str = "header",
) -> DatasetDict:
    """Images and labels from CSVs with an image path column and either 0/1 label columns or one class-id column.

    problem_type "multi_label_classification": every label column (default: every column but `image_column`) holds
    0/1, giving `labels` as C floats; a binary task is one column, C = 1. "single_label_classification": one column of
    integer class ids 0 .. num_labels-1 (default: the largest id + 1), giving `labels` as a `ClassLabel` named by
    `class_names`. Relative image paths are read against `image_root`, by default each CSV's own folder.
    """
    check_choice("problem_type", problem_type, get_args(ProblemType))
    if isinstance(label_columns, str):
        label_columns = [label_columns]
    label_columns = None if label_columns is None else list(label_columns)
    if label_columns is not None and len(set(label_columns)) != len(label_columns):
        raise ValueError(f"label_columns: expected distinct names; found {label_columns}.")
    if class_names is not None:
        if problem_type != "single_label_classification":
            raise ValueError("class_names: expected only with single-label classification (multi-label classes are "
                             f"named by `label_columns`); found class_names={list(class_names)} with problem_type "
                             f"{problem_type!r}.")
        if num_labels is not None and len(class_names) != num_labels:
            raise ValueError(f"class_names: expected {num_labels} names (num_labels); found {len(class_names)}: "
                             f"{list(class_names)}.")
        num_labels = len(class_names)
    csvs = {"train": train_csv, "validation": validation_csv, "test": test_csv}
    parsed = {}
    for split, path in csvs.items():
        if path is None:
            continue
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: expected the {split} CSV; found no such file.")
        parsed[split] = (path, *_read_label_csv(path, image_column, label_columns, problem_type, num_labels, strict))
    columns = next(iter(parsed.values()))[1]
    for split, (path, found, _) in parsed.items():
        if found != columns:
            raise ValueError(f"{path}: expected the label columns of the first CSV, {columns}; found {found}.")

    if problem_type == "single_label_classification":
        if num_labels is None:
            num_labels = 1 + max((label for *_, entries in parsed.values() for _, label in entries), default=1)
        label_feature = ClassLabel(names=list(class_names) if class_names else None, num_classes=num_labels)
        names = label_feature.names
    else:
        label_feature, names = None, columns

    result = {}
    for split, (path, _, entries) in parsed.items():
        root = Path(image_root) if image_root is not None else path.parent
        rows, missing = [], []
        for image, labels in entries:
            absolute = Path(image) if Path(image).is_absolute() else root / image
            if absolute.is_file():
                rows.append((str(absolute.resolve()), image, labels))
            else:
                missing.append(image)
        missing_images(str(path), str(root), missing, len(entries), strict)
        rows = _readable(rows, str(path), check_images, strict)
        result[split] = _dataset(rows, names, f"Images and labels from {path.name} ({problem_type}).", label_feature)
    return DatasetDict(result)


# ---- what a run does with the loaded splits --------------------------------------------------------------------------

def problem_type_of(data: DatasetDict) -> str:
    """multi_label_classification for `labels` as a list of floats (BCE), single_label for a ClassLabel (softmax)."""
    feature = data["train"].features.get("labels")
    if isinstance(feature, ClassLabel):
        return SINGLE_LABEL
    if isinstance(feature, List) and getattr(feature.feature, "dtype", "").startswith("float"):
        return MULTI_LABEL
    raise ValueError(f"The train split's `labels`: expected a ClassLabel (single-label) or a list of floats "
                     f"(multi-label); found {feature}.")


def label_subset(train: Dataset, label_fraction: int, seed: int) -> Dataset:
    """`label_fraction` percent of the training images (at least one), drawn with `seed`, stratified by class where
    the labels are class ids: the label-efficiency protocol for data that has no published lists."""
    count = max(1, round(len(train) * label_fraction / 100))
    if count >= len(train):
        return train
    stratify = "labels" if isinstance(train.features["labels"], ClassLabel) else None
    if stratify and count < train.features["labels"].num_classes:
        stratify = None  # too few images to hold every class
    return train.train_test_split(train_size=count, seed=seed, stratify_by_column=stratify)["train"]
