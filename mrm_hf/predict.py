"""Score a folder of radiographs with an MRM classifier or segmenter: `python -m mrm_hf.predict` (or `mrm-hf-predict`).

    python -m mrm_hf.predict MODEL_DIR studies/ more/*.png --output_dir predictions [--csv list.csv --csv_column path]

- Inputs: folders (searched recursively for DICOM, PNG, JPEG and TIFF files, and suffix-less DICOM files), globs,
  files, and a CSV column of paths (relative to the CSV's folder). DICOM, 8- and 16-bit PNG/TIFF and JPEG are read
  by the model's MRMImageProcessor, exactly as `processor(path)` and the pipelines read them.
- Output (`--output_dir`): `predictions.csv`, one row per image: its path, the DICOM's StudyInstanceUID,
  SeriesInstanceUID, SOPInstanceUID and ViewPosition when it has them, and a score per finding (classifiers, as the
  image-classification pipeline scores them) or each class's mask area in pixels and as a fraction of the image
  (segmenters, which also write `masks/` at the image's size and `overlays/`). `--explain` (classifiers) writes a
  figure per image to `explanations/` (`mrm_hf.explain`). Rows are appended batch by batch, so an interrupted run
  keeps what it did, and running the same command again skips the paths already in `predictions.csv`.
- Files that cannot be read never stop the run: they are listed with the reason at the end and in `failures.csv`
  (each run's own failures; they are tried again on the next run).
- Images are read and processed by DataLoader workers (`--num_workers`) while the model scores batches; a progress
  bar shows the images done and the time left.
"""

import argparse
import csv
import glob
import hashlib
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm
from transformers import (
    AutoConfig,
    AutoImageProcessor,
    AutoModelForImageClassification,
    AutoModelForSemanticSegmentation,
)

from .explain import finding_scores
from .figures import tint
from .image_processing_mrm import is_dicom
from .pipelines import read_radiograph, reads_radiographs


IMAGE_SUFFIXES = {".dcm", ".dicom", ".png", ".jpg", ".jpeg", ".tif", ".tiff"}
DICOM_FIELDS = ["StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "ViewPosition"]
PREDICTIONS, FAILURES = "predictions.csv", "failures.csv"
OVERLAY_SIDE = 1024  # the overlays' longest side at most, in pixels


def parse_arguments(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m mrm_hf.predict", description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="an MRM classifier or segmentation folder (with its image processor)")
    parser.add_argument("inputs", nargs="*", help="image files, folders (searched recursively) and globs")
    parser.add_argument("--csv", help="a CSV file with a column of image paths (relative to the CSV's folder)")
    parser.add_argument("--csv_column", default="path", help="the CSV's column of image paths (default: path)")
    parser.add_argument("--output_dir", required=True, help="where predictions.csv, failures.csv and images go")
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--num_workers", type=int, default=max(1, min(4, (os.cpu_count() or 2) // 2)),
                        help="processes reading and processing images (0: in the main process)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--explain", action="store_true",
                        help="classifiers: write a figure per image, a heatmap per finding and the attention rollout "
                             "(needs pip install \"mrm-hf[explain]\")")
    parser.add_argument("--explain_steps", type=int, default=16, help="Integrated Gradients steps per finding")
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32",
                        help="the model's weights and compute: bfloat16 is faster on GPUs and on CPUs with bf16 "
                             "matrix units (AMX, AVX512-BF16), slower elsewhere; scores agree with float32 to about "
                             "1e-2 (docs/performance.md, bf16 on a CPU)")
    args = parser.parse_args(argv)
    if args.explain and args.dtype != "float32":
        parser.error(f"--explain: expected --dtype float32 (the heatmaps integrate gradients); found {args.dtype}")
    if not args.inputs and not args.csv:
        parser.error("expected images to score: files, folders or globs, or --csv; found none")
    if args.batch_size < 1:
        parser.error(f"--batch_size: expected at least 1; found {args.batch_size}")
    return args


# ---- inputs ----------------------------------------------------------------------------------------------------------


def _is_image_file(path: Path) -> bool:
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return True
    if path.suffix:
        return False
    try:
        return is_dicom(str(path))
    except OSError:
        return False


def collect_inputs(inputs, csv_path=None, csv_column="path") -> tuple[list[str], list[tuple[str, str]]]:
    """The image paths to score (absolute, in order, each once) and (input, reason) for inputs that name nothing."""
    paths, missing = [], []

    def add(path):
        paths.append(os.path.abspath(path))

    for item in inputs:
        if os.path.isdir(item):
            found = sorted(p for p in Path(item).rglob("*") if p.is_file() and _is_image_file(p))
            if not found:
                missing.append((item, "expected images in this folder; found no DICOM, PNG, JPEG or TIFF file"))
            for path in found:
                add(path)
        elif os.path.isfile(item):
            add(item)
        elif glob.has_magic(item):
            found = sorted(p for p in glob.glob(item, recursive=True) if os.path.isfile(p))
            if not found:
                missing.append((item, "expected files matching this pattern; found none"))
            for path in found:
                add(path)
        else:
            missing.append((item, "expected a file, folder or glob; found nothing there"))
    if csv_path is not None:
        with open(csv_path, newline="", encoding="utf-8") as file:
            reader = csv.DictReader(file)
            if csv_column not in (reader.fieldnames or []):
                raise ValueError(f"{csv_path}: expected a column {csv_column!r} of image paths; found the columns "
                                 f"{reader.fieldnames}. Pass --csv_column.")
            for row_number, row in enumerate(reader, start=2):
                value = (row[csv_column] or "").strip()
                if not value:
                    missing.append((f"{csv_path}, row {row_number}", f"expected a path in {csv_column!r}; found none"))
                    continue
                add(Path(csv_path).parent / value)
    return list(dict.fromkeys(paths)), missing


def output_name(path: str) -> str:
    """A file name for a path's mask, overlay or figure: its stem and a hash of the whole path, so that two
    `image.dcm` in different folders do not collide."""
    digest = hashlib.sha1(path.encode("utf-8")).hexdigest()[:8]
    return f"{Path(path).stem}-{digest}.png"


# ---- reading ---------------------------------------------------------------------------------------------------------


def dicom_fields(dataset) -> dict[str, str]:
    return {name: str(dataset.get(name, "") or "") for name in DICOM_FIELDS}


class RadiographFiles(Dataset):
    """Each path as the model's `pixel_values`, its DICOM fields, its size and (segmenters) an 8-bit thumbnail for
    the overlay; a file that cannot be read gives its error instead of raising."""

    def __init__(self, paths: list[str], image_processor, thumbnails: bool):
        self.paths, self.image_processor, self.thumbnails = paths, image_processor, thumbnails

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, index):
        path = self.paths[index]
        item = {"path": path, "fields": dict.fromkeys(DICOM_FIELDS, "")}
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            self._read(path, item)
        if "error" not in item:  # a failed file's warnings are the failure's, told by its reason
            for warning in caught:
                warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
        return item

    def _read(self, path: str, item: dict) -> None:
        try:
            source = path
            if is_dicom(path):
                try:
                    import pydicom
                except ImportError:
                    pass  # the image processor says what to install
                else:
                    source = pydicom.dcmread(path, force=True)
                    item["fields"] = dicom_fields(source)
            gray = read_radiograph(self.image_processor, source)
            item["pixel_values"] = torch.from_numpy(self.image_processor(gray, return_tensors="np")["pixel_values"][0])
            item["size"] = gray.shape
            if self.thumbnails:
                image = Image.fromarray(np.round(gray * 255).astype(np.uint8))
                image.thumbnail((OVERLAY_SIDE, OVERLAY_SIDE))
                item["thumbnail"] = np.asarray(image)
        except Exception as err:  # noqa: BLE001 - any unreadable file is reported, never fatal
            # The readers name the file; the report names it once.
            item["error"] = f"{type(err).__name__}: {str(err).replace(f'{path}: ', '')}".strip()


def _collate(items: list[dict]) -> list[dict]:
    return items


def _worker_init(_):
    torch.set_num_threads(1)


# ---- the model -------------------------------------------------------------------------------------------------------


def load_model(folder: str, device: str, explain: bool, dtype: str = "float32"):
    """The classifier or segmenter of `folder` and its image processor; anything else is refused, naming it."""
    import mrm_hf  # noqa: F401 - registers MRM with the Auto classes

    config = AutoConfig.from_pretrained(folder)
    architectures = config.architectures or []
    if config.model_type == "upernet":
        if explain:
            raise ValueError(f"--explain with {folder}: expected a classifier; found a segmentation model (UperNet), "
                             "whose masks and overlays are its explanation.")
        model = AutoModelForSemanticSegmentation.from_pretrained(folder, dtype=getattr(torch, dtype))
    elif config.model_type == "mrm" and "MRMForImageClassification" in architectures:
        kwargs = {"attn_implementation": "eager"} if explain else {}
        model = AutoModelForImageClassification.from_pretrained(folder, dtype=getattr(torch, dtype), **kwargs)
    else:
        raise ValueError(f"{folder}: expected a fine-tuned MRM classifier (MRMForImageClassification) or a UperNet "
                         f"segmentation folder; found model_type {config.model_type!r} with architectures "
                         f"{architectures}. Fine-tune it first (examples/run_classification.py, run_segmentation.py).")
    image_processor = AutoImageProcessor.from_pretrained(folder)
    if not reads_radiographs(image_processor):
        raise ValueError(f"{folder}: expected an MRMImageProcessor (preprocessor_config.json); found "
                         f"{type(image_processor).__name__}.")
    return model.to(device).eval(), image_processor


def output_columns(model) -> list[str]:
    labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
    if model.config.model_type == "upernet":
        areas = [f"{label}_{kind}" for label in labels[1:] for kind in ("area_px", "area_fraction")]
        return ["path", *DICOM_FIELDS, *areas, "mask", "overlay"]
    return ["path", *DICOM_FIELDS, *labels]


def classify(model, pixel_values) -> list[dict]:
    with torch.inference_mode():
        scores = finding_scores(model, model(pixel_values=pixel_values).logits.float()).cpu()
    labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
    return [dict(zip(labels, (round(v, 6) for v in row.tolist()))) for row in scores]


def segment(model, image_processor, pixel_values, items, output_dir: Path) -> list[dict]:
    with torch.inference_mode():
        outputs = model(pixel_values=pixel_values)
    outputs.logits = outputs.logits.float()
    maps = image_processor.post_process_semantic_segmentation(outputs, target_sizes=[i["size"] for i in items])
    labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
    scale = 255 // max(1, len(labels) - 1)
    rows = []
    for item, classes in zip(items, maps):
        classes = classes.cpu().numpy().astype(np.uint8)
        name = output_name(item["path"])
        Image.fromarray(classes * scale).save(output_dir / "masks" / name)
        row = {}
        for index, label in enumerate(labels[1:], start=1):
            area = int((classes == index).sum())
            row[f"{label}_area_px"], row[f"{label}_area_fraction"] = area, round(area / classes.size, 6)
        thumbnail = item["thumbnail"]
        shown = np.asarray(Image.fromarray(classes).resize(thumbnail.shape[::-1], Image.Resampling.NEAREST)) > 0
        Image.fromarray(tint(thumbnail, shown)).save(output_dir / "overlays" / name)
        row["mask"], row["overlay"] = f"masks/{name}", f"overlays/{name}"
        rows.append(row)
    return rows


# ---- the run ---------------------------------------------------------------------------------------------------------


def done_paths(predictions: Path, columns: list[str]) -> set[str]:
    """The paths an earlier run of the same model already scored into `predictions`."""
    if not predictions.exists():
        return set()
    with open(predictions, newline="", encoding="utf-8") as file:
        reader = csv.DictReader(file)
        if reader.fieldnames != columns:
            raise ValueError(f"{predictions}: expected the columns of this model's predictions {columns}; found "
                             f"{reader.fieldnames}. It was written for another model: pass another --output_dir.")
        return {row["path"] for row in reader}


def main(argv=None) -> dict:
    args = parse_arguments(argv)
    model, image_processor = load_model(args.model, args.device, args.explain, args.dtype)
    segmenter = model.config.model_type == "upernet"
    output_dir = Path(args.output_dir)
    for folder in ("masks", "overlays") if segmenter else ("explanations",) if args.explain else ():
        (output_dir / folder).mkdir(parents=True, exist_ok=True)
    output_dir.mkdir(parents=True, exist_ok=True)
    columns = output_columns(model)
    predictions = output_dir / PREDICTIONS
    paths, failures = collect_inputs(args.inputs, args.csv, args.csv_column)
    done = done_paths(predictions, columns)
    todo = [path for path in paths if path not in done]
    if args.explain:
        from .explain import explain_figure, require_captum

        require_captum()  # before any work: says what to install

    loader = DataLoader(
        RadiographFiles(todo, image_processor, thumbnails=segmenter), batch_size=args.batch_size,
        num_workers=args.num_workers, collate_fn=_collate, worker_init_fn=_worker_init if args.num_workers else None,
    )
    scored, started = 0, time.perf_counter()
    new_file = not predictions.exists()
    with open(predictions, "a", newline="", encoding="utf-8") as file, \
            tqdm(total=len(todo), unit="image", desc="Scoring", dynamic_ncols=True) as progress:
        writer = csv.DictWriter(file, fieldnames=columns)
        if new_file:
            writer.writeheader()
        for items in loader:
            good = [item for item in items if "error" not in item]
            failures.extend((item["path"], item["error"]) for item in items if "error" in item)
            if good:
                pixel_values = torch.stack([item["pixel_values"] for item in good]).to(args.device, model.dtype)
                if segmenter:
                    results = segment(model, image_processor, pixel_values, good, output_dir)
                else:
                    results = classify(model, pixel_values)
                    if args.explain:
                        for index, item in enumerate(good):
                            explain_figure(model, pixel_values[index : index + 1],
                                           output_dir / "explanations" / output_name(item["path"]),
                                           n_steps=args.explain_steps)
                for item, result in zip(good, results):
                    writer.writerow({"path": item["path"], **item["fields"], **result})
                file.flush()
                scored += len(good)
            progress.update(len(items))

    with open(output_dir / FAILURES, "w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(["path", "reason"])
        writer.writerows(failures)
    summary = {"scored": scored, "skipped": len(paths) - len(todo), "failed": len(failures),
               "predictions": str(predictions), "seconds": time.perf_counter() - started}
    print(f"Scored {scored} image(s); skipped {summary['skipped']} already in {predictions}; "
          f"{len(failures)} could not be read" + (f" (listed in {output_dir / FAILURES}):" if failures else "."))
    for path, reason in failures:
        print(f"  {path}: {reason}")
    return summary


if __name__ == "__main__":
    main(sys.argv[1:])
