"""The published MRM split lists (`DatasetsSplits/`) and the images they name, shared by the classification and
segmentation loaders.

A split list holds one `name label_1 ... label_C` line per image; `published_lists` picks a dataset's training list by
label fraction and its evaluation lists. Images are found by indexing a folder once (`ImageIndex`): a listed name
matches a file whose path ends with the whole name, else with the name less its first folder. Malformed lines and
listed images missing on disk are skipped, counted and reported in one warning, or raised in strict mode.
"""

import os
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from ..utils import check_choice
from .skips import Skips, left_out


LABEL_FRACTIONS = {1: "train_1.txt", 10: "train_10.txt", 100: "train_list.txt"}
EVALUATION_LISTS = {"validation": "val_list.txt", "test": "test_list.txt"}
_BINARY = {"0": 0, "1": 1}


class SplitListError(ValueError):
    """A malformed line of a split list or row of a label CSV, raised in strict mode."""


def malformed_lines(path: Path, strict: bool) -> Skips:
    """The malformed lines of a split list or label CSV: raised as `SplitListError` in strict mode, else warned."""
    return Skips(path, strict, SplitListError, what="lines", kind="malformed")


def binary_label(token: str) -> int | None:
    """0 or 1 from "0", "1", "0.0" or "1.0"; None for anything else."""
    try:
        value = float(token)
    except ValueError:
        return None
    return int(value) if value in (0.0, 1.0) else None


# ---- split lists ----------------------------------------------------------------------------------------------------


def read_split_list(path: str | os.PathLike, num_labels: int, strict: bool = False) -> list[tuple[str, list[int]]]:
    """The (name, 0/1 labels) entries of a published split list: one `name label_1 ... label_C` line per image."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: expected a split list; found no such file.")
    entries, malformed, total = [], malformed_lines(path, strict), 0
    with open(path, encoding="utf-8") as file:
        for number, line in enumerate(file, start=1):
            fields = line.split()
            if not fields:
                continue
            total += 1
            if len(fields) != 1 + num_labels:
                malformed.skip(f"line {number}", detail=repr(line.strip()), expected=f"a name and {num_labels} labels",
                               found=f"{len(fields)} fields")
                continue
            labels = list(map(_BINARY.get, fields[1:]))
            if None in labels:
                labels = [binary_label(token) for token in fields[1:]]
                bad = [token for token, label in zip(fields[1:], labels) if label is None]
                if bad:
                    malformed.skip(f"line {number}", f"label {bad[0]!r} is not 0 or 1", repr(line.strip()))
                    continue
            entries.append((fields[0], labels))
    malformed.finish(total)
    return entries


def split_folder(split_dir: str | os.PathLike, folder: str) -> Path:
    """The dataset's folder of split lists: `split_dir/folder` when it exists, else `split_dir` itself."""
    split_dir = Path(split_dir)
    if not split_dir.is_dir():
        raise FileNotFoundError(f"{split_dir}: expected the folder of published split lists; found no such folder.")
    return split_dir / folder if (split_dir / folder).is_dir() else split_dir


def list_file(folder: Path, name: str, hint: str = "") -> Path:
    path = folder / name
    if not path.is_file():
        found = sorted(p.name for p in folder.glob("*.txt"))
        raise FileNotFoundError(f"{path}: expected a split list; found no such file (the folder holds {found}).{hint}")
    return path


def published_lists(folder: Path, label_fraction: int, splits: Sequence[str], hint: str = "") -> dict[str, Path]:
    """The list file of each requested split, the training one chosen by `label_fraction` (1, 10 or 100 percent)."""
    check_choice("label_fraction (percent)", label_fraction, LABEL_FRACTIONS)
    names = {"train": LABEL_FRACTIONS[label_fraction], **EVALUATION_LISTS}
    return {split: list_file(folder, names[split], hint if split == "train" else "") for split in splits}


# ---- finding images --------------------------------------------------------------------------------------------------


class ImageIndex:
    """Every file below a folder, walked once, found by the tail of a listed name."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root).resolve()
        if not self.root.is_dir():
            raise FileNotFoundError(f"{self.root}: expected the image folder; found no such folder.")
        self.by_name: dict[str, list[tuple[str, ...]]] = {}
        seen = set()
        for folder, subfolders, files in os.walk(self.root, followlinks=True):
            real = os.path.realpath(folder)
            if real in seen:  # walked already: a symbolic link loop, or a second link to the same folder
                subfolders[:] = []
                continue
            seen.add(real)
            subfolders[:] = sorted(d for d in subfolders if not d.startswith("."))
            relative = Path(folder).relative_to(self.root).parts
            for name in files:
                self.by_name.setdefault(name, []).append((*relative, name))
        for candidates in self.by_name.values():
            candidates.sort(key=lambda parts: (len(parts), parts))
        self.ambiguous: list[tuple[str, list[str]]] = []

    def find(self, name: str) -> str | None:
        """The absolute path of the file `name` (a relative path) names, or None."""
        parts = PurePosixPath(name.replace("\\", "/")).parts
        candidates = self.by_name.get(parts[-1], [])
        for keep in dict.fromkeys((len(parts), max(len(parts) - 1, 1))):
            matches = [c for c in candidates if c[len(c) - keep :] == parts[len(parts) - keep :]]
            if matches:
                if len(matches) > 1:
                    self.ambiguous.append((name, ["/".join(m) for m in matches]))
                return str(self.root.joinpath(*matches[0]))
        return None


def missing_images(source: str, data_dir: str, missing: list[str], total: int, strict: bool):
    """Raise (strict, or nothing found) or warn about the listed images that are not on disk."""
    description = f"images named in {source} are not under {data_dir}"
    left_out(source, missing, total, description, strict, FileNotFoundError, "; is `data_dir` right?")


__all__ = [
    "EVALUATION_LISTS",
    "LABEL_FRACTIONS",
    "ImageIndex",
    "SplitListError",
    "binary_label",
    "list_file",
    "malformed_lines",
    "missing_images",
    "published_lists",
    "read_split_list",
    "split_folder",
]
