#!/usr/bin/env python
"""Pre-training throughput and peak memory of MRM, through Trainer and through an Accelerate loop.

    python benchmarks/pretraining_throughput.py                       # ViT-B at the published sizes (448 -> 224)
    python benchmarks/pretraining_throughput.py --batch_size 64 --precision bf16 --attn_implementation sdpa
    python benchmarks/pretraining_throughput.py --device cpu --batch_size 2 --steps 3 --warmup_steps 1

The data are random tensors already in memory (a 448 px view, a 100-token report with half its tokens labelled),
so the numbers measure the model, the optimiser and the training framework, not image decoding. Samples/s counts
the timed steps only (after the warm-up steps); peak memory is the accelerator's peak allocation, or the process's
peak resident memory on CPU. Each path runs in its own process, with the same model, batch, AdamW settings and
precision. On a GPU the precision defaults to bf16.

Model FLOPs utilisation: the FLOPs of one training step's forward and backward pass per sample, counted by
`torch.utils.flop_counter.FlopCounterMode` (matrix products and attention; the optimiser is not counted), times
samples/s, over the device's peak (`--peak_tflops`, or the dense bf16/fp16 peak of a known GPU); achieved TFLOP/s
is printed always.
"""

import argparse
import resource
import subprocess
import sys
import time

import torch
from accelerate import Accelerator
from transformers import PrinterCallback, Trainer, TrainerCallback, TrainingArguments

from mrm_hf import MRMConfig, MRMForPreTraining
from mrm_hf.training import parameter_groups
from mrm_hf.utils import apply_config_overrides


class RandomRecords(torch.utils.data.Dataset):
    """Random high-resolution views and masked reports of the published sizes."""

    def __init__(self, config: MRMConfig, size: int, seed: int = 0):
        generator = torch.Generator().manual_seed(seed)
        side, length = config.reconstruction_size, config.report_max_position_embeddings
        self.pixel_values = torch.randn(size, 3, side, side, generator=generator)
        self.input_ids = torch.randint(4, config.report_vocab_size, (size, length), generator=generator)
        self.labels = torch.where(torch.rand(size, length, generator=generator) < 0.5, self.input_ids, -100)

    def __len__(self):
        return len(self.pixel_values)

    def __getitem__(self, index):
        return {
            "pixel_values": self.pixel_values[index],
            "input_ids": self.input_ids[index],
            "attention_mask": torch.ones_like(self.input_ids[index]),
            "labels": self.labels[index],
        }


# Dense bf16/fp16 tensor-core peaks (TFLOP/s) by device-name fragment; fp32 uses --peak_tflops.
PEAK_TFLOPS = {"H200": 989.0, "H100 SXM": 989.0, "H100 PCIe": 756.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0}


def flops_per_sample(model, dataset, device, precision: str) -> float:
    """FLOPs of one forward and backward pass per sample, on a batch of 2 (counted, not timed)."""
    from torch.utils.flop_counter import FlopCounterMode

    model.to(device).train()
    batch = {k: torch.stack([dataset[i][k] for i in range(2)]).to(device) for k in dataset[0]}
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    with FlopCounterMode(display=False) as counter:
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            loss = model(**batch).loss
        loss.backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops() / 2


def peak_tflops(device: torch.device, precision: str, given: float | None) -> float | None:
    if given:
        return given
    if device.type != "cuda" or precision == "fp32":
        return None
    name = torch.cuda.get_device_name(device)
    return next((peak for fragment, peak in PEAK_TFLOPS.items() if fragment in name), None)


def peak_memory_gib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


class StepTimer(TrainerCallback):
    """Wall time of the optimiser steps after the warm-up ones."""

    def __init__(self, warmup_steps: int):
        self.warmup_steps, self.start, self.end = warmup_steps, None, None

    def _sync(self):
        if torch.cuda.is_available():
            torch.cuda.synchronize()

    def on_step_end(self, args, state, control, **kwargs):
        self._sync()
        if state.global_step == self.warmup_steps:
            self.start = time.perf_counter()
        self.end = time.perf_counter()


def run_trainer(model, dataset, args, device) -> tuple[float, float]:
    timer = StepTimer(args.warmup_steps)
    training_args = TrainingArguments(
        output_dir="/tmp/mrm-benchmark",
        per_device_train_batch_size=args.batch_size,
        max_steps=args.warmup_steps + args.steps,
        learning_rate=1.5e-4,
        adam_beta2=0.95,
        weight_decay=0.05,
        bf16=args.precision == "bf16",
        fp16=args.precision == "fp16",
        use_cpu=device.type == "cpu",
        save_strategy="no",
        report_to=[],
        logging_strategy="no",
        disable_tqdm=True,
        dataloader_num_workers=0,
        activation_checkpointing=args.gradient_checkpointing,
    )
    reset_peak_memory(device)
    trainer = Trainer(model=model, args=training_args, train_dataset=dataset, callbacks=[timer])
    trainer.remove_callback(PrinterCallback)  # keep the printed table clean
    trainer.train()
    return args.steps * args.batch_size / (timer.end - timer.start), peak_memory_gib(device)


def run_accelerate(model, dataset, args, device) -> tuple[float, float]:
    accelerator = Accelerator(
        mixed_precision=None if args.precision == "fp32" else args.precision, cpu=device.type == "cpu"
    )
    if args.gradient_checkpointing:
        model.activation_checkpointing_enable()
    # Fused, as the Accelerate loop and Trainer's default (adamw_torch_fused) build it.
    optimizer = torch.optim.AdamW(parameter_groups(model, 0.05), lr=1.5e-4, betas=(0.9, 0.95), fused=True)
    loader = torch.utils.data.DataLoader(dataset, batch_size=args.batch_size, shuffle=True, drop_last=True)
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    model.train()
    reset_peak_memory(device)
    batches, start = iter(loader), None
    for step in range(args.warmup_steps + args.steps):
        if step == args.warmup_steps:
            accelerator.wait_for_everyone()
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            start = time.perf_counter()
        loss = model(**next(batches)).loss
        accelerator.backward(loss)
        optimizer.step()
        optimizer.zero_grad()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return args.steps * args.batch_size / (time.perf_counter() - start), peak_memory_gib(device)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch_size", type=int, default=32, help="per step (published: 32 per GPU)")
    parser.add_argument("--steps", type=int, default=20, help="timed optimiser steps")
    parser.add_argument("--warmup_steps", type=int, default=5, help="untimed steps first")
    default_precision = "bf16" if torch.cuda.is_available() else "fp32"
    parser.add_argument("--precision", choices=("fp32", "bf16", "fp16"), default=default_precision)
    parser.add_argument("--peak_tflops", type=float, help="the device's peak TFLOP/s at this precision, for MFU")
    parser.add_argument("--attn_implementation", choices=("sdpa", "eager", "flash_attention_2"), default="sdpa")
    parser.add_argument("--config_overrides", help="MRMConfig changes, e.g. a tiny model for a dry run on a CPU")
    parser.add_argument("--gradient_checkpointing", action="store_true")
    parser.add_argument("--paths", default="trainer,accelerate", help="which of trainer,accelerate to run")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    paths = args.paths.split(",")
    if len(paths) > 1:
        # Each path in a fresh process, so that neither inherits the other's peak memory or warm caches.
        for index, path in enumerate(paths):
            rows = subprocess.run(
                [sys.executable, __file__, *argv, "--paths", path], capture_output=True, text=True, check=True
            ).stdout.splitlines()
            print("\n".join(rows if index == 0 else rows[-1:]), flush=True)
        return 0

    device = torch.device(args.device)
    config = MRMConfig(sparse_prediction=True)  # as the pre-training scripts run it
    if args.config_overrides:
        apply_config_overrides(config, args.config_overrides)
    dataset = RandomRecords(config, args.batch_size * (args.warmup_steps + args.steps))
    print(
        f"MRM {'ViT-B/16' if not args.config_overrides else 'with ' + args.config_overrides} "
        f"{config.reconstruction_size}->{config.image_size}, batch {args.batch_size}, {args.precision}, "
        f"{args.attn_implementation}{', gradient checkpointing' if args.gradient_checkpointing else ''}, "
        f"{torch.cuda.get_device_name(device) if device.type == 'cuda' else 'CPU'}, torch {torch.__version__}"
    )
    print(f"{'path':<12}{'samples/s':>12}{'peak memory (GiB)':>20}{'TFLOP/s':>10}{'MFU':>8}")
    torch.manual_seed(0)
    model = MRMForPreTraining(config)
    model.set_attn_implementation(args.attn_implementation)
    flops = flops_per_sample(model, dataset, device, args.precision)
    runs = {"trainer": run_trainer, "accelerate": run_accelerate}
    samples_per_second, memory = runs[paths[0]](model, dataset, args, device)
    achieved = flops * samples_per_second / 1e12
    peak = peak_tflops(device, args.precision, args.peak_tflops)
    mfu = f"{100 * achieved / peak:>7.1f}%" if peak else f"{'n/a':>8}"
    print(f"{paths[0]:<12}{samples_per_second:>12.2f}{memory:>20.2f}{achieved:>10.3g}{mfu}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
