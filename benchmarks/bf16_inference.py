#!/usr/bin/env python
"""bf16 against fp32 for classification inference on a CPU: speed and how far the results move.

    nice -n 10 python benchmarks/bf16_inference.py                # ViT-B/16 classifier, 224 px, batch 16, 14 labels
    nice -n 10 python benchmarks/bf16_inference.py --batch_size 4 --steps 3

The same randomly initialised classifier (the published fine-tuning config: ViT-B/16, mean-pooled features, 14
labels) is loaded twice from one folder, as users load it: `from_pretrained(folder)` and
`from_pretrained(folder, dtype=torch.bfloat16)` (what the pipelines' `dtype=` does). Each forward pass is timed on the
same random images, alternating between the two; the time is the median of `--steps` after one untimed pass.
Tolerances: pooled features and label probabilities (sigmoid of the logits) of bf16 against fp32, relative
(norm of the difference over the fp32 norm) and largest absolute difference.
"""

import argparse
import statistics
import sys
import tempfile
import time

import torch

from mrm_hf import MRMConfig, MRMForImageClassification


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=5, help="timed forward passes of each precision")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    config = MRMConfig(num_labels=14, problem_type="multi_label_classification")
    with tempfile.TemporaryDirectory() as folder:
        MRMForImageClassification(config).save_pretrained(folder)
        models = {
            "fp32": MRMForImageClassification.from_pretrained(folder).eval(),
            "bf16": MRMForImageClassification.from_pretrained(folder, dtype=torch.bfloat16).eval(),
        }
    pixel_values = torch.randn(args.batch_size, 3, config.image_size, config.image_size)
    outputs, times = {}, {name: [] for name in models}
    with torch.inference_mode():
        for index in range(args.steps + 1):
            for name, model in models.items():
                start = time.perf_counter()
                output = model(pixel_values.to(model.dtype))
                seconds = time.perf_counter() - start
                if index:
                    times[name].append(seconds)
                outputs[name] = output.logits.float()
        features = {
            name: model.base_model(pixel_values.to(model.dtype)).pooler_output.float()  # the encoder's pooling
            for name, model in models.items()
        }

    def errors(values: dict) -> str:
        difference = values["bf16"] - values["fp32"]
        relative = (difference.norm() / values["fp32"].norm()).item()
        return f"{relative:.2e} relative, {difference.abs().max().item():.2e} max"

    probabilities = {name: logits.sigmoid() for name, logits in outputs.items()}
    print(f"MRM ViT-B/16 classifier, {config.image_size} px, batch {args.batch_size}, CPU x {torch.get_num_threads()} "
          f"threads, torch {torch.__version__}; median of {args.steps} forward passes")  # fmt: skip
    fp32 = statistics.median(times["fp32"])
    print(f"{'precision':<12}{'s / batch':>11}{'images/s':>10}{'speed-up':>10}")
    for name in models:
        seconds = statistics.median(times[name])
        print(f"{name:<12}{seconds:>11.3f}{args.batch_size / seconds:>10.1f}{fp32 / seconds:>9.2f}x")
    print(f"bf16 against fp32: pooled features {errors(features)}; label probabilities {errors(probabilities)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
