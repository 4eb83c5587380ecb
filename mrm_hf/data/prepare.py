"""Write image-report records once as resized 8-bit images in a `datasets` folder that pre-training reads directly.

    python -m mrm_hf.data.prepare --mimic_root /data/mimic-cxr-jpg --output_dir mimic-512
    python -m mrm_hf.data.prepare --training_csv training.csv --image_root /data --output_dir mimic-512
    python examples/run_pretraining.py --dataset disk --data_dir mimic-512 ...

Each image is decoded once (JPEGs at the coarsest DCT scale that keeps the short side at least `--short_side`),
made 8-bit grayscale (16-bit and DICOM sources through the image processor's conversion, then rounded to 8 bits),
brought to a short side of 512 pixels (bicubic, antialiased; smaller images keep their size), and stored in the
`image` column (a `datasets.Image`) as PGM (`--image_format pgm`, the default: lossless and decoded at memory
speed, about 0.3 MB per MIMIC image, so about 120 GB for MIMIC-CXR) or JPEG (`--image_format jpeg --quality 95`,
about 4x smaller and about 0.7 ms more per image to decode, as the published authors' 512 px copy). Every other column
of the loader is kept (report, subject_id, study_id, dicom_id, ...). The splits are `train` and, for MIMIC-CXR,
`validation`.

The work is split in shards of `--shard_size` records, written by `--num_proc` processes (all cores by default) under
`<output_dir>/_shards/` and each renamed into place only when complete; an interrupted run is resumed by running the
same command again, which skips the finished shards. When all are done they are joined into the final folder and
the shards removed. Images that cannot be read are left out, counted by reason in the summary printed at the end
and listed in `<output_dir>/prepare_report.json`.
"""

import argparse
import io
import json
import logging
import math
import os
import shutil
import sys
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path

import datasets
import numpy as np
from datasets import Dataset, DatasetDict, Image, concatenate_datasets, load_from_disk
from PIL import Image as PILImage
from tqdm.auto import tqdm

from ..image_processing_mrm import open_fast, to_grayscale
from ..utils import check_choice, setup_logging
from .mimic import load_mimic_cxr, load_training_csv, short_side_size


logger = logging.getLogger(__name__)

IMAGE_FORMATS = {"pgm": "PPM", "jpeg": "JPEG"}
SHARDS = "_shards"
REPORT = "prepare_report.json"
_UNREADABLE = (OSError, ValueError, SyntaxError, PILImage.DecompressionBombError)


def record_image(source, short_side: int = 512) -> PILImage.Image:
    """One image (a path, bytes or an image dict) as 8-bit grayscale with its short side at most `short_side`."""
    image = open_fast(source)
    if image is not None:
        width, height = image.size
        target = short_side_size(width, height, short_side)
        if image.format == "JPEG":
            reduction = next(s for s in (8, 4, 2, 1) if s == 1 or min(width, height) // s >= short_side)
            image.draft("L", (width // reduction, height // reduction) if reduction > 1 else None)
        gray = image if image.mode == "L" else image.convert("L")
    else:
        values = to_grayscale(source)
        gray = PILImage.fromarray(np.round(values * 255.0).astype(np.uint8))
        target = short_side_size(gray.width, gray.height, short_side)
    return gray.resize(target, PILImage.Resampling.BICUBIC) if target is not None else gray.copy()


def encode(image: PILImage.Image, image_format: str = "pgm", quality: int = 95) -> bytes:
    """An 8-bit grayscale image as PGM or JPEG bytes."""
    buffer = io.BytesIO()
    image.save(buffer, format=IMAGE_FORMATS[image_format], **({"quality": quality} if image_format == "jpeg" else {}))
    return buffer.getvalue()


def _reason(error: Exception) -> str:
    if isinstance(error, FileNotFoundError):
        return "missing image"
    return "truncated image" if "truncated" in str(error) else "unreadable image"


def write_shard(rows: list[dict], features, folder: str, short_side: int, image_format: str, quality: int) -> int:
    """Write one shard of records to `folder` (through a temporary name); return how many images it read."""
    datasets.disable_progress_bars()
    kept, skipped = [], []
    for row in rows:
        source = row["image"]
        try:
            data = encode(record_image(source, short_side), image_format, quality)
        except _UNREADABLE as error:
            name = (source.get("path") or "<bytes>") if isinstance(source, dict) else str(source)
            skipped.append({"image": name, "reason": _reason(error), "error": str(error)})
            continue
        kept.append({**row, "image": {"bytes": data, "path": None}})
    folder = Path(folder)
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    if kept:  # a shard without a readable image holds only its skipped.json
        Dataset.from_list(kept, features=features).save_to_disk(str(partial / "records"))
    (partial / "skipped.json").write_text(json.dumps(skipped))
    os.replace(partial, folder)
    return len(rows)


def _check_options(work: Path, options: dict) -> None:
    """Record the options of a new run, or check that a resumed one uses the same."""
    path = work / "options.json"
    if path.is_file():
        found = json.loads(path.read_text())
        if found != options:
            raise ValueError(
                f"{work}: expected shards of a run with this run's options ({options}); found shards of a run with "
                f"other options ({found}). Use another --output_dir, or delete that folder to start again."
            )
    else:
        work.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(options, sort_keys=True))


def prepare_records(
    records: Dataset | DatasetDict,
    output_dir: str | os.PathLike,
    short_side: int = 512,
    image_format: str = "pgm",
    quality: int = 95,
    shard_size: int = 500,
    num_proc: int | None = None,
    keep_shards: bool = False,
) -> DatasetDict:
    """Write `records` (an `image` column plus any others) resized to `output_dir`; resume from finished shards."""
    check_choice("image_format", image_format, sorted(IMAGE_FORMATS))
    if shard_size < 1 or short_side < 1:
        raise ValueError(f"shard_size and short_side: expected positive values; found {shard_size} and "
                         f"{short_side}.")
    records = records if isinstance(records, DatasetDict) else DatasetDict(train=records)
    output_dir, num_proc = Path(output_dir), num_proc or os.cpu_count() or 1
    work = output_dir / SHARDS
    if (output_dir / "dataset_dict.json").is_file() and not work.exists():
        logger.info("%s is already prepared", output_dir)
        return load_from_disk(str(output_dir))
    for name, split in records.items():
        if "image" not in split.column_names:
            raise ValueError(f"The {name!r} split: expected an `image` column; found {split.column_names}.")
        if isinstance(split.features["image"], Image) and split.features["image"].decode:
            records[name] = split.cast_column("image", Image(decode=False))
    options = {
        "short_side": short_side,
        "image_format": image_format,
        "quality": quality,
        "shard_size": shard_size,
        "records": {name: len(split) for name, split in records.items()},
    }
    _check_options(work, options)

    shards, todo = {}, []
    for name, split in records.items():
        features = split.features.copy()
        features["image"] = Image()
        shards[name] = [work / name / f"{index:05d}" for index in range(math.ceil(len(split) / shard_size))]
        for index, folder in enumerate(shards[name]):
            if not folder.is_dir():
                start = index * shard_size
                todo.append((name, range(start, min(start + shard_size, len(split))), features, folder))
    total = sum(len(split) for split in records.values())
    progress = tqdm(total=total, initial=total - sum(len(rows) for _, rows, _, _ in todo), unit="image", desc="prepare")

    def job(item):
        name, rows, features, folder = item
        folder.parent.mkdir(parents=True, exist_ok=True)
        return records[name].select(rows).to_list(), features, str(folder), short_side, image_format, quality

    try:
        if num_proc <= 1:
            for item in todo:
                progress.update(write_shard(*job(item)))
        else:
            with ProcessPoolExecutor(num_proc) as pool:
                pending, queue = set(), iter(todo)
                for item in queue:  # at most two shards per process in flight, so memory stays bounded
                    pending.add(pool.submit(write_shard, *job(item)))
                    while len(pending) >= 2 * num_proc:
                        done, pending = wait(pending, return_when=FIRST_COMPLETED)
                        progress.update(sum(future.result() for future in done))
                for future in pending:
                    progress.update(future.result())
    except KeyboardInterrupt:
        finished = sum(folder.is_dir() for folders in shards.values() for folder in folders)
        print(
            f"Interrupted with {finished} of {sum(map(len, shards.values()))} shards written to {work}; "
            "run the same command again to resume.",
            file=sys.stderr,
        )
        raise
    finally:
        progress.close()

    skipped, prepared = [], DatasetDict()
    for name, folders in shards.items():
        for folder in folders:
            skipped += json.loads((folder / "skipped.json").read_text())
        parts = [load_from_disk(str(folder / "records")) for folder in folders if (folder / "records").is_dir()]
        if not parts:
            raise ValueError(
                f"The {name!r} split: expected at least one readable image; found none (the reasons are in "
                f"{work / name})."
            )
        prepared[name] = concatenate_datasets(parts)
    prepared.save_to_disk(str(output_dir))
    counts = Counter(item["reason"] for item in skipped)
    report = {
        "records": {name: len(split) for name, split in prepared.items()},
        "skipped": dict(counts),
        "skipped_images": skipped,
        **{k: v for k, v in options.items() if k != "records"},
    }
    (output_dir / REPORT).write_text(json.dumps(report, indent=1))
    if not keep_shards:
        shutil.rmtree(work)
    summary = ", ".join(f"{name}: {len(split)}" for name, split in prepared.items())
    print(f"Prepared {summary} records in {output_dir}.")
    if skipped:
        details = ", ".join(f"{reason}: {count}" for reason, count in sorted(counts.items()))
        message = (
            f"Left out {len(skipped)} of {total} images that could not be read ({details}); see {output_dir / REPORT}"
        )
        logger.warning(message)
        print(message)
    return load_from_disk(str(output_dir))


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line of `python -m mrm_hf.data.prepare`."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--mimic_root", help="MIMIC-CXR-JPG root (split, metadata CSVs and files/).")
    source.add_argument("--training_csv", help="A published-format training.csv (image_path, report_content).")
    source.add_argument("--dataset_dir", help="A datasets folder (save_to_disk) with `image` and `report` columns.")
    parser.add_argument("--output_dir", required=True, help="Where the prepared records are written.")
    parser.add_argument("--reports", help="MIMIC-CXR reports zip or folder, if not under --mimic_root.")
    parser.add_argument("--views", default="PA,AP", help="MIMIC-CXR views to keep, comma-separated ('' for all).")
    parser.add_argument("--report_sections", default="full", help="full, findings_impression or impression.")
    parser.add_argument("--image_root", help="The folder the CSV's image paths are relative to.")
    parser.add_argument("--short_side", type=int, default=512, help="Short side of the stored images (pixels).")
    parser.add_argument("--image_format", choices=sorted(IMAGE_FORMATS), default="pgm")
    parser.add_argument("--quality", type=int, default=95, help="JPEG quality (with --image_format jpeg).")
    parser.add_argument("--shard_size", type=int, default=500, help="Records per shard (the unit of resuming).")
    parser.add_argument("--num_proc", type=int, default=os.cpu_count(), help="Processes (default: all cores).")
    parser.add_argument("--keep_shards", action="store_true", help="Keep the shards folder after joining it.")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> DatasetDict:
    args = parse_arguments(argv)
    setup_logging()

    # Images are checked here, while they are decoded, not by the loaders.
    if args.mimic_root:
        views = tuple(v.strip() for v in args.views.split(",") if v.strip()) or None
        options = dict(views=views, report_sections=args.report_sections, reports=args.reports, check_images="none")
        records = DatasetDict(
            train=load_mimic_cxr(args.mimic_root, split="train", **options),
            validation=load_mimic_cxr(args.mimic_root, split="validate", **options),
        )
    elif args.training_csv:
        records = DatasetDict(
            train=load_training_csv(
                args.training_csv,
                image_root=args.image_root,
                report_sections=args.report_sections,
                check_images="none",
            )
        )
    else:
        loaded = load_from_disk(args.dataset_dir)
        records = loaded if isinstance(loaded, DatasetDict) else DatasetDict(train=loaded)
    return prepare_records(
        records,
        args.output_dir,
        short_side=args.short_side,
        image_format=args.image_format,
        quality=args.quality,
        shard_size=args.shard_size,
        num_proc=args.num_proc,
        keep_shards=args.keep_shards,
    )


if __name__ == "__main__":
    main()
