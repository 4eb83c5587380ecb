#!/usr/bin/env python
"""Images/s of `python -m mrm_hf.predict` against the image processor plus a batched forward, in the same run.

    nice -n 10 python benchmarks/predict_throughput.py                       # ViT-B/16 at 224 px, 64 images, CPU
    python benchmarks/predict_throughput.py --images /data/studies --num_images 512 --device cuda

The images are the first `--num_images` DICOM, PNG and JPEG files under `--images` (by default the real radiographs of
../shared/data/covid/images), read from disk by both. The baseline is the least a script can do: `processor(paths)`
for a batch, then `model(pixel_values)` under `inference_mode`, one batch after another, in one process. `predict`
does the same work plus what a run needs: it looks up the DICOM identifiers, catches unreadable files, writes the CSV
rows and the progress bar, with its DataLoader workers (`--num_workers`) reading while the model runs. The model is a
randomly initialised classifier of the published size (14 findings); weights do not change the time. predict's time
is its scoring loop (workers starting included), as the model is loaded once per run whatever its length. The two runs
alternate `--repeats` times; each figure is the best of its repeats.
"""

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

from mrm_hf import MRMConfig, MRMForImageClassification
from mrm_hf.predict import collect_inputs, main as predict
from mrm_hf.processing_mrm import encoder_image_processor


SHARED_IMAGES = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "covid" / "images"


def parse_arguments(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", default=str(SHARED_IMAGES), help="a folder of radiographs")
    parser.add_argument("--num_images", type=int, default=64)
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--num_workers", type=int, default=None, help="predict's workers (default: its own)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--tiny", action="store_true", help="a 2-block 32 px model (checks the script, not a figure)")
    return parser.parse_args(argv)


def processor_and_forward(model, processor, paths, batch_size, device) -> float:
    start = time.perf_counter()
    for first in range(0, len(paths), batch_size):
        inputs = processor(paths[first : first + batch_size], return_tensors="pt")
        with torch.inference_mode():
            model(pixel_values=inputs["pixel_values"].to(device)).logits.cpu()
    return time.perf_counter() - start


def run_predict(folder, paths, args, work) -> float:
    output = Path(tempfile.mkdtemp(dir=work))
    argv = [str(folder), *paths, "--output_dir", str(output), "--batch_size", str(args.batch_size),
            "--device", args.device]
    if args.num_workers is not None:
        argv += ["--num_workers", str(args.num_workers)]
    summary = predict(argv)
    if summary["scored"] != len(paths):
        raise SystemExit(f"predict scored {summary['scored']} of {len(paths)} images: {summary}")
    return summary["seconds"]


def main(argv=None):
    args = parse_arguments(argv)
    paths, missing = collect_inputs([args.images])
    if missing or not paths:
        raise SystemExit(f"--images: expected a folder of radiographs; found {missing or 'none'}")
    paths = paths[: args.num_images]
    sizes = dict(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                 intermediate_size=64) if args.tiny else {}
    labels = [f"finding_{i}" for i in range(14)]
    config = MRMConfig(num_labels=14, id2label=dict(enumerate(labels)), label2id={n: i for i, n in enumerate(labels)},
                       problem_type="multi_label_classification", **sizes)
    model = MRMForImageClassification(config).to(args.device).eval()
    processor = encoder_image_processor(config.image_size)
    with tempfile.TemporaryDirectory() as work:
        folder = Path(work) / "classifier"
        model.save_pretrained(folder)
        processor.save_pretrained(folder)
        processor_and_forward(model, processor, paths[: args.batch_size], args.batch_size, args.device)  # warm-up
        baseline, ours = [], []
        for _ in range(args.repeats):
            baseline.append(processor_and_forward(model, processor, paths, args.batch_size, args.device))
            ours.append(run_predict(folder, paths, args, work))
    base_rate, our_rate = len(paths) / min(baseline), len(paths) / min(ours)
    device = torch.cuda.get_device_name() if args.device.startswith("cuda") else f"CPU, {os.cpu_count()} cores, " \
        f"{torch.get_num_threads()} torch threads"
    print(f"{len(paths)} images from {args.images}, batch {args.batch_size}, {'tiny' if args.tiny else 'ViT-B/16'} "
          f"at {config.image_size} px, {device}")
    print(f"processor + batched forward: {base_rate:.2f} images/s")
    print(f"python -m mrm_hf.predict:    {our_rate:.2f} images/s ({100 * our_rate / base_rate:.0f}% of it)")


if __name__ == "__main__":
    main(sys.argv[1:])
