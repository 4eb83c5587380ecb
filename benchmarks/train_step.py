#!/usr/bin/env python
"""Speed of one MRM pre-training step (forward + backward) against the published computation, in the same run.

    nice -n 10 python benchmarks/train_step.py                  # ViT-B, batch 4, 448 px, 100 tokens, fp32, CPU
    nice -n 10 python benchmarks/train_step.py --threads 1 --steps 3   # a shared machine: compare CPU times

The published computation is `tests/published_reference.py` (an independent re-creation of RL4M/MRM-pytorch, timm
blocks and a transformers BERT; it needs the `test` extra), with the same weights as ours (converted by
`mrm_hf.convert`), the same images, reports and masking noise, in train mode (report dropout 0.1 in both). Our step
runs twice: with the published labels (every report position is predicted) and with the paper's masked-token labels
(-100 on the unmasked tokens, what `--label_mode masked`, the scripts' default, gives); the published code has one way
only, every position. The steps alternate between the models, so that a shared machine's load falls on all of them;
each time is the median of `--steps` timed steps after `--warmup_steps` untimed ones. Wall time and the process's
CPU time are both printed: on a machine shared with other work, the CPU time of a one-thread run (`--threads 1`) is the
steadier comparison.
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

from mrm_hf import MRMConfig, MRMForPreTraining
from mrm_hf.convert import convert_state_dict


sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from published_reference import PublishedMRM  # noqa: E402


def make_batch(config: MRMConfig, batch_size: int, seed: int = 0) -> dict:
    """Images, a masked report (half the words masked), its full ids and masked-token labels, and masking noise."""
    generator = torch.Generator().manual_seed(seed)
    side, length = config.reconstruction_size, config.report_max_position_embeddings
    ids = torch.randint(4, config.report_vocab_size, (batch_size, length), generator=generator)
    ids[:, 0] = 2
    masked = torch.rand(batch_size, length, generator=generator) < 0.5
    masked[:, 0] = False
    return {
        "pixel_values": torch.randn(batch_size, 3, side, side, generator=generator),
        "input_ids": torch.where(masked, torch.full_like(ids, 3), ids),
        "attention_mask": torch.ones_like(ids),
        "ids": ids,
        "masked_labels": torch.where(masked, ids, torch.full_like(ids, -100)),
        "noise": torch.rand(batch_size, config.num_patches, generator=generator),
    }


def timed(step) -> tuple[float, float]:
    """Wall and CPU seconds of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    step()
    return time.perf_counter() - wall, time.process_time() - cpu


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch_size", type=int, default=4)
    parser.add_argument("--steps", type=int, default=5, help="timed steps of each model")
    parser.add_argument("--warmup_steps", type=int, default=1, help="untimed steps of each model first")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    published = PublishedMRM().train()
    config = MRMConfig(sparse_prediction=True)  # as the pre-training scripts run it
    ours = MRMForPreTraining(config).train()
    ours.load_state_dict(convert_state_dict(published.state_dict(), "pretraining"))
    batch = make_batch(config, args.batch_size)
    common = dict(pixel_values=batch["pixel_values"], input_ids=batch["input_ids"],
                  attention_mask=batch["attention_mask"], noise=batch["noise"])  # fmt: skip

    def published_step():
        out = published(batch["pixel_values"], batch["input_ids"], batch["attention_mask"], batch["ids"],
                        noise=batch["noise"])  # fmt: skip
        (out["loss_img"] + out["loss_report"]).backward()
        published.zero_grad(set_to_none=True)

    def ours_step(labels):
        def step():
            ours(**common, labels=labels).loss.backward()
            ours.zero_grad(set_to_none=True)

        return step

    steps = {
        "published (every position)": published_step,
        "ours, published labels": ours_step(batch["ids"]),
        "ours, masked-token labels": ours_step(batch["masked_labels"]),
    }
    times = {name: [] for name in steps}
    for index in range(args.warmup_steps + args.steps):
        for name, step in steps.items():
            seconds = timed(step)
            if index >= args.warmup_steps:
                times[name].append(seconds)

    print(
        f"MRM ViT-B/16 pre-training step (forward + backward), batch {args.batch_size}, "
        f"{config.reconstruction_size} px -> {config.image_size}, {config.report_max_position_embeddings} tokens, "
        f"fp32, CPU x {torch.get_num_threads()} threads, torch {torch.__version__}; median of {args.steps} steps"
    )
    medians = {name: [statistics.median(v[i] for v in values) for i in (0, 1)] for name, values in times.items()}
    wall_ref, cpu_ref = medians["published (every position)"]
    print(f"{'computation':<30}{'wall s':>9}{'samples/s':>11}{'vs published':>14}{'CPU s':>9}{'vs published':>14}")
    for name, (wall, cpu) in medians.items():
        print(f"{name:<30}{wall:>9.3f}{args.batch_size / wall:>11.2f}{wall_ref / wall:>13.2f}x{cpu:>9.3f}"
              f"{cpu_ref / cpu:>13.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
