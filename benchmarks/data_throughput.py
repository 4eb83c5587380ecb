#!/usr/bin/env python
"""Images/s per core of the pre-training data path: the published PIL pipeline against each of mrm-hf's paths.

    python benchmarks/data_throughput.py                       # modest sizes, a few minutes on one core
    python benchmarks/data_throughput.py --images 200 --workers 4 --device cuda
    PYTHONPATH=/path/to/other/checkout python benchmarks/data_throughput.py   # the same table for other code

Inputs are real radiographs: the NIH full-resolution images of ../shared/data/nih14 (or --source_images), upscaled to
a MIMIC-like full-size JPEG (3056 x 2544, quality 95) and reduced to a 512 px short-side JPEG copy, and written as
prepared records (PGM and JPEG in a `datasets` folder, the format of `python -m mrm_hf.data.prepare`).

Rows:
- published: `pil_loader` (RGB) -> RandomResizedCrop(448, scale 0.2-1, bicubic) -> flip -> Grayscale(3) -> ToTensor ->
  Normalize, with torchvision when installed (else the same PIL operations written out);
- mrm-hf: the pre-training script's own training records (`prepare` of examples/pretraining_setup.py), read in batches as a
  DataLoader worker reads them (`dataset[i:i+batch]`), pixel values out;
- on-device: the worker's decode-only transform per core, plus the batched crop/resize/flip/normalise on --device
  (its time per image added: on a CPU that is far from the accelerator's cost);
- DataLoader: images/s that the pre-training DataLoader (transform and collator, --workers processes) delivers, and
  the peak RSS and the heap (anonymous memory) of each worker, started with "spawn", for a dataset --growth times
  larger: the heap should not grow.

Every row runs in this process on one thread (torch.set_num_threads(1)) and is timed by the process's CPU time, so
that it is a rate per core even on a shared machine; the accelerator's part is timed by the wall clock, the DataLoader
rows too (they are what the workers deliver, on whatever cores they get). Rows that the
code on PYTHONPATH lacks (for example older code without on-device augmentation) print as unavailable.
"""

import argparse
import atexit
import io
import os
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from datasets import Dataset, DatasetDict, Features, Image, Value, concatenate_datasets
from PIL import Image as PILImage

import mrm_hf
from mrm_hf.image_processing_mrm import MRM_MEAN, MRM_STD, MRMImageProcessor
from mrm_hf.tokenization_mrm import load_published_tokenizer
from mrm_hf.transforms import RandomResizedCrop


# The pre-training scripts' own set-up, from the examples/ beside the mrm_hf under test.
sys.path.insert(0, str(Path(mrm_hf.__file__).resolve().parent.parent / "examples"))
import pretraining_setup as pretraining  # noqa: E402


SHARED = Path(__file__).resolve().parent.parent.parent / "shared"
FULL_SIZE = (2544, 3056)  # (width, height) of a typical MIMIC-CXR-JPG image
SIZE = 448


def published_pipeline():
    """The published training transform of a PIL RGB image."""
    try:
        from torchvision import transforms
    except ImportError:
        return _published_in_pil()
    return transforms.Compose(
        [
            transforms.RandomResizedCrop(SIZE, scale=(0.2, 1.0), interpolation=transforms.InterpolationMode.BICUBIC),
            transforms.RandomHorizontalFlip(),
            transforms.Grayscale(3),
            transforms.ToTensor(),
            transforms.Normalize([MRM_MEAN] * 3, [MRM_STD] * 3),
        ]
    )


def _published_in_pil():
    crop = RandomResizedCrop(SIZE, scale=(0.2, 1.0), interpolation="bicubic")

    def transform(image):
        top, left, h, w = crop.get_params(image.height, image.width)
        image = image.crop((left, top, left + w, top + h)).resize((SIZE, SIZE), PILImage.Resampling.BICUBIC)
        if torch.rand(1) < 0.5:
            image = image.transpose(PILImage.Transpose.FLIP_LEFT_RIGHT)
        values = np.asarray(image.convert("L").convert("RGB"), dtype=np.float32).transpose(2, 0, 1) / 255.0
        return (torch.from_numpy(values) - MRM_MEAN) / MRM_STD

    return transform


def rate(function, count: int, clock=time.process_time) -> float:
    """Calls per second of function(i) over i < count, after one untimed call. The default clock is this process's
    CPU time, so on one thread the rate is per core even when other programs share the machine."""
    function(0)
    start = clock()
    for index in range(count):
        function(index)
    return count / (clock() - start)


def encoded(image: PILImage.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def make_inputs(folder: Path, sources: list[Path], count: int) -> dict:
    """Full-size and 512 px JPEG files, and prepared-record folders (PGM and JPEG) of `count` records."""
    full, small, pgm, jpeg = [], [], [], []
    for index, source in enumerate(sources):
        gray = PILImage.open(source).convert("L")
        big = gray.resize(FULL_SIZE, PILImage.Resampling.BICUBIC)
        full.append(folder / f"full_{index}.jpg")
        big.save(full[-1], quality=95)
        reduced = big.resize((512, round(512 * FULL_SIZE[1] / FULL_SIZE[0])), PILImage.Resampling.BICUBIC)
        small.append(folder / f"small_{index}.jpg")
        reduced.save(small[-1], quality=95)
        pgm.append(encoded(reduced, "PPM"))
        jpeg.append(encoded(reduced, "JPEG", quality=95))
    features = Features({"image": Image(), "report": Value("string")})
    report = "FINAL REPORT EXAMINATION: CHEST (PA AND LAT) FINDINGS: No focal consolidation. IMPRESSION: Normal."

    def records(images, name, count=count):
        rows = {"image": [{"bytes": b, "path": None} if isinstance(b, bytes) else str(b) for b in images]}
        dataset = Dataset.from_dict({**rows, "report": [report] * len(images)}, features=features)
        dataset = concatenate_datasets([dataset] * -(-count // len(images))).select(range(count))
        DatasetDict(train=dataset).save_to_disk(str(folder / name))
        return str(folder / name)

    return {
        "full-size JPEG": records(full, "full"),
        "512 px JPEG": records(small, "small"),
        "prepared PGM": records(pgm, "pgm"),
        "prepared JPEG": records(jpeg, "jpeg"),
        "_files": {"full-size JPEG": full, "512 px JPEG": small},
        "_make": records,
        "_pgm": pgm,
    }


def script_records(folder: str, tokenizer, **data_options):
    """The training split and collator exactly as the pre-training scripts build them (with what this code has)."""
    data_args = pretraining.DataArguments(dataset="disk", data_dir=folder)
    for key, value in data_options.items():
        if not hasattr(data_args, key):
            return None
        setattr(data_args, key, value)
    model = SimpleNamespace(config=SimpleNamespace(reconstruction_size=SIZE, report_max_position_embeddings=100))
    records = pretraining.load_records(data_args, seed=0)
    processor = MRMImageProcessor(mode="pretraining", size={"height": SIZE, "width": SIZE})
    records, collator = pretraining.prepare(records, model, processor, tokenizer, data_args)
    return records["train"], collator, data_args, model, processor


def batched_rate(dataset, count: int, batch: int) -> float:
    """Images/s of dataset[i:i+batch] (one DataLoader fetch) over `count` images."""
    batch = min(batch, count)

    def fetch(index):
        start = (index * batch) % len(dataset)
        return dataset[start : start + batch]

    return batch * rate(fetch, count // batch)


def on_device_rates(folder: str, tokenizer, count: int, batch: int, device: torch.device):
    """(decode-only images/s per core, device images/s, combined images/s), or None without on-device support."""
    built = script_records(folder, tokenizer, augment_on_device=True)
    if built is None:
        return None
    dataset, collator, data_args, model, processor = built
    augment = pretraining.device_augmentation(model, processor, data_args)
    decode = batched_rate(dataset, count, batch)
    batches = [collator([dataset[(i * batch + j) % len(dataset)] for j in range(batch)]) for i in range(2)]
    batches = [{k: v.to(device) for k, v in b.items()} for b in batches]

    def step(index):
        augment(batches[index % 2])
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    steps = max(2, count // batch // (4 if device.type == "cpu" else 1))
    on_device = batch * rate(step, steps, time.process_time if device.type == "cpu" else time.perf_counter)
    return decode, on_device, 1.0 / (1.0 / decode + 1.0 / on_device)


def end_as_forked_workers_do(_worker_id: int) -> None:
    """worker_init_fn of "spawn" workers: end with os._exit, as forked workers do.

    A spawned worker otherwise ends through the interpreter's normal shutdown, whose C++ static destructors run while
    native threads it started (the tokenizers' thread pool among them) still run: "terminate called without an active
    exception", an abort, when the loader's iterator is dropped mid-epoch. Forked workers end with os._exit and never
    abort (measured: 4 of 4 runs aborted without this, 0 of 4 with it)."""
    atexit.register(os._exit, 0)


def worker_memory(loader, batches: int) -> tuple[float, float]:
    """Mean over workers of (peak RSS, anonymous memory) in MiB after `batches` batches: the anonymous memory is the
    worker's own heap, without the pages of the memory-mapped Arrow files it read. The loader should start its
    workers with "spawn", so that they hold only what they load themselves: forked workers also count as private what
    the parent freed after the fork (here, the records this benchmark built), which says nothing of the data path."""
    iterator = iter(loader)
    for _ in range(batches):
        next(iterator)
    peaks, private = [], []
    for worker in iterator._workers:
        status = Path(f"/proc/{worker.pid}/status").read_text()
        peaks.append(int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM"))) / 1024)
        rollup = Path(f"/proc/{worker.pid}/smaps_rollup").read_text().splitlines()
        private.append(sum(int(line.split()[1]) for line in rollup if line.startswith("Anonymous:")) / 1024)
    del iterator
    return float(np.mean(peaks)), float(np.mean(private))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=64, help="images timed per row (full-size rows: a quarter)")
    parser.add_argument("--batch_size", type=int, default=16, help="images per fetch and per on-device batch")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader worker processes")
    parser.add_argument("--loader_batches", type=int, default=8, help="batches timed through the DataLoader")
    parser.add_argument("--growth", type=int, default=8, help="dataset size factor for the worker-memory check")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--source_images", nargs="*", help="radiographs to build the inputs from")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    sources = [Path(p) for p in args.source_images or []] or sorted(
        (SHARED / "data" / "nih14" / "images_fullres").glob("000000*.png")
    )
    if not sources:
        raise FileNotFoundError(f"No radiographs: expected {SHARED}/data/nih14/images_fullres or --source_images")
    tokenizer = load_published_tokenizer(SHARED / "reference" / "mimic_wordpiece.json")
    device = torch.device(args.device)
    code = Path(mrm_hf.__file__).resolve().parent.parent
    print(f"mrm-hf code: {code}; torch {torch.__version__}; one thread per row; device {device}")

    with tempfile.TemporaryDirectory() as tmp:
        # Enough records for every row and for the DataLoader's warm-up and timed batches within one epoch.
        inputs = make_inputs(Path(tmp), sources, max(args.images, args.batch_size * (args.loader_batches + 1)))
        published = published_pipeline()
        rows = []
        for name in ("full-size JPEG", "512 px JPEG"):
            count = args.images // 4 if name.startswith("full") else args.images
            files = inputs["_files"][name]
            base = rate(lambda i: published(PILImage.open(files[i % len(files)]).convert("RGB")), count)
            rows.append((f"published PIL pipeline, {name}", base, base))
            ours = batched_rate(script_records(inputs[name], tokenizer)[0], count, args.batch_size)
            rows.append((f"mrm-hf transform, {name}", ours, base))
            if name == "512 px JPEG":
                for fmt in ("prepared PGM", "prepared JPEG"):
                    ours = batched_rate(script_records(inputs[fmt], tokenizer)[0], args.images, args.batch_size)
                    rows.append((f"mrm-hf transform, {fmt} records", ours, base))
                device_rates = on_device_rates(inputs["prepared PGM"], tokenizer, args.images, args.batch_size, device)
                if device_rates is None:
                    rows.append(("on-device augmentation", None, base))
                else:
                    decode, on_device, combined = device_rates
                    rows.append(("on-device: decode only (CPU), prepared PGM", decode, base))
                    rows.append((f"on-device: crop/resize/flip/normalise ({device.type})", on_device, base))
                    rows.append((f"on-device: both, device time included", combined, base))
            print(f"{name}: done", file=sys.stderr, flush=True)

        print(f"\n{'path':<58}{'images/s per core':>18}{'x published':>13}")
        for name, value, base in rows:
            shown = f"{value:>18.1f}{value / base:>12.2f}x" if value is not None else f"{'unavailable':>18}{'':>13}"
            print(f"{name:<58}{shown}")

        # The real DataLoader, with its workers.
        dataset, collator = script_records(inputs["prepared PGM"], tokenizer)[:2]
        loader_options = dict(batch_size=args.batch_size, num_workers=args.workers, collate_fn=collator, shuffle=True)
        loader = torch.utils.data.DataLoader(dataset, persistent_workers=False, **loader_options)
        batches = iter(loader)
        next(batches)
        start = time.perf_counter()
        for _ in range(args.loader_batches):
            next(batches)
        delivered = args.loader_batches * args.batch_size / (time.perf_counter() - start)
        del batches
        print(f"\nDataLoader of the pre-training script, prepared PGM records, {args.workers} workers: "
              f"{delivered:.1f} images/s")
        loader_options.update(multiprocessing_context="spawn", worker_init_fn=end_as_forked_workers_do)
        small = worker_memory(torch.utils.data.DataLoader(dataset, **loader_options), args.loader_batches)
        grown = inputs["_make"](inputs["_pgm"], "grown", len(dataset) * args.growth)
        grown_dataset = script_records(grown, tokenizer)[0]
        large = worker_memory(torch.utils.data.DataLoader(grown_dataset, **loader_options), args.loader_batches)
        print(f"{'worker memory (MiB, mean per worker)':<40}{'peak RSS':>10}{'heap':>10}")
        for records, (peak, private) in ((len(dataset), small), (len(grown_dataset), large)):
            print(f"{f'{records} records':<40}{peak:>10.1f}{private:>10.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
