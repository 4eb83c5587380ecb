"""Checkpoints that appear only once complete, and resuming that names what is wrong with a checkpoint.

Both pre-training loops write each checkpoint under `.partial-<name>/` and rename it when every process has written
its part (`staging_folder`, `publish_checkpoint`); `resolve_checkpoint` finds the newest complete one.
"""

import contextlib
import json
import logging
import os
import shutil
import zipfile
from pathlib import Path

from safetensors import safe_open


logger = logging.getLogger(__name__)


# Files that a checkpoint holds once complete, whatever the backend (DeepSpeed and FSDP lay weights out otherwise) and
# with or without a tokenizer (--image_only): Trainer writes trainer_state.json last, accelerate's save_state the random
# states.
CHECKPOINT_FILES = {
    "checkpoint-": ("trainer_state.json",),
    "step_": ("random_states_*.pkl",),
}


def checkpoint_problems(folder: Path, required: tuple[str, ...]) -> list[str]:
    """What keeps `folder` from being a complete checkpoint: required files missing, JSON files that do not parse."""
    problems = []
    for pattern in required:
        found = sorted(folder.glob(pattern))
        if not found:
            problems.append(f"no {pattern}")
        for path in found:
            if path.suffix == ".json":
                try:
                    json.loads(path.read_text())
                except (OSError, ValueError) as error:
                    problems.append(f"{path.name} does not parse ({error})")
    return problems


def resolve_checkpoint(
    resume: str | None, output_dir: str | Path, prefix: str, required: tuple[str, ...] | None = None
) -> Path | None:
    """The checkpoint folder to resume from: `resume` itself, or for "last" the newest complete `<prefix>N` in
    output_dir (incomplete ones, from a run killed while saving with an older version, are skipped and named)."""
    if not resume or resume.lower() in ("false", "none"):
        return None
    required = CHECKPOINT_FILES.get(prefix, ()) if required is None else required
    if resume.lower() in ("last", "true"):
        found = [
            (int(p.name[len(prefix) :]), p)
            for p in Path(output_dir).glob(f"{prefix}*")
            if p.is_dir() and p.name[len(prefix) :].isdigit()
        ]
        if not found:
            raise FileNotFoundError(
                f"--resume_from_checkpoint {resume}: expected a {prefix}N folder in {output_dir}; found no "
                f"{prefix}N folder."
            )
        skipped = []
        for _, folder in sorted(found, reverse=True):
            problems = checkpoint_problems(folder, required)
            if not problems:
                if skipped:
                    logger.warning("--resume_from_checkpoint %s: resuming from %s; skipped the incomplete %s",
                                   resume, folder, "; ".join(skipped))  # fmt: skip
                return folder
            skipped.append(f"{folder.name} ({', '.join(problems)})")
        raise FileNotFoundError(
            f"--resume_from_checkpoint {resume}: expected a complete {prefix}N folder in {output_dir} (with "
            f"{', '.join(required)}); found only incomplete ones: {'; '.join(skipped)}."
        )
    folder = Path(resume)
    if not folder.is_dir():
        raise FileNotFoundError(
            f"--resume_from_checkpoint {resume}: expected a checkpoint folder; found no such folder."
        )
    problems = checkpoint_problems(folder, required)
    if problems:
        raise FileNotFoundError(
            f"--resume_from_checkpoint {resume}: expected a complete checkpoint (with {', '.join(required)}); "
            f"found {', '.join(problems)}."
        )
    return folder


def staging_folder(final: Path) -> Path:
    """Where a checkpoint is written before `publish_checkpoint` renames it to `final`: `.partial-<name>/<name>`."""
    final = Path(final)
    return final.parent / f".partial-{final.name}" / final.name


def publish_checkpoint(staging: Path, final: Path, is_main_process: bool = True, wait_for_everyone=None) -> Path:
    """Give a fully written checkpoint its final name in one rename, once every process has written its part, so a
    run killed while saving never leaves a `final` folder that looks like a checkpoint."""
    staging, final = Path(staging), Path(final)
    if wait_for_everyone is not None:
        wait_for_everyone()
    if is_main_process:
        if final.exists():
            shutil.rmtree(final)  # an older save of the same step
        os.replace(staging, final)
        if staging.parent.name.startswith(".partial-"):
            shutil.rmtree(staging.parent, ignore_errors=True)
    if wait_for_everyone is not None:
        wait_for_everyone()
    return final


def unreadable_checkpoint_files(folder: Path) -> list[str]:
    """Files of a checkpoint that cannot be read back: torch saves that are not whole zip archives, safetensors whose
    header does not parse."""
    bad = []
    for path in sorted(Path(folder).iterdir()):
        try:
            if path.suffix in (".pt", ".pth", ".bin", ".pkl"):
                with zipfile.ZipFile(path) as archive:
                    broken = archive.testzip()
                if broken is not None:
                    bad.append(f"{path.name} (member {broken} fails its CRC)")
            elif path.suffix == ".safetensors":
                with safe_open(path, "pt") as weights:
                    weights.keys()
        except Exception as error:  # noqa: BLE001 (any failure to read is the finding)
            bad.append(f"{path.name} ({type(error).__name__}: {error})")
    return bad


@contextlib.contextmanager
def reading_checkpoint(folder):
    """Turn a failure to load a checkpoint into an error that names its unreadable files."""
    try:
        yield
    except Exception as error:
        bad = unreadable_checkpoint_files(Path(folder))
        if not bad:
            raise
        raise ValueError(
            f"Cannot resume from {folder}: expected complete, readable checkpoint files; found unreadable "
            f"{'; '.join(bad)}. Resume from an earlier checkpoint."
        ) from error


__all__ = [
    "CHECKPOINT_FILES",
    "publish_checkpoint",
    "reading_checkpoint",
    "resolve_checkpoint",
    "staging_folder",
    "unreadable_checkpoint_files",
]
