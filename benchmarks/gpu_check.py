#!/usr/bin/env python
"""The one GPU check, under 8 minutes on one H100 or H200: bf16 pre-training samples/s and MFU through both scripts'
paths (Trainer and the Accelerate loop), the share of a step that on-device augmentation (`--augment_on_device`)
takes, and SDPA against FlashAttention 2 where flash-attn is installed.

    python benchmarks/gpu_check.py                 # on the GPU: ViT-B/16 at the published sizes, batch 64, bf16
    python benchmarks/gpu_check.py --dry_run       # on a CPU: the same wiring, a tiny model, 2 steps (no figures)

Each table comes from `benchmarks/pretraining_throughput.py` (random tensors in memory, fused AdamW, each path in its
own process); the augmentation share is measured here: the Accelerate loop's step with `DeviceAugmentation` turning a
batch of decoded 512 px uint8 images into 448 px pixel values first, each part timed between device synchronisations.
"""

import argparse
import importlib.util
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from mrm_hf import MRMConfig, MRMForPreTraining
from mrm_hf.processing_mrm import encoder_image_processor
from mrm_hf.training import parameter_groups
from mrm_hf.transforms import DeviceAugmentation
from mrm_hf.utils import apply_config_overrides


THROUGHPUT = Path(__file__).resolve().parent / "pretraining_throughput.py"
TINY = (
    "image_size=32,patch_size=8,reconstruction_size=64,hidden_size=64,num_hidden_layers=2,num_attention_heads=2,"
    "intermediate_size=128,decoder_hidden_size=64,decoder_num_hidden_layers=1,decoder_num_attention_heads=2,"
    "decoder_intermediate_size=128,report_hidden_size=64,report_num_hidden_layers=1,report_num_attention_heads=2,"
    "report_intermediate_size=128"
)


def throughput(arguments: list[str]) -> None:
    print(f"\n$ python benchmarks/pretraining_throughput.py {' '.join(arguments)}", flush=True)
    subprocess.run([sys.executable, str(THROUGHPUT), *arguments], check=True)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def augmentation_share(args, device: torch.device) -> None:
    """Median seconds of the on-device augmentation and of the rest of an Accelerate-loop step (bf16 autocast)."""
    config = MRMConfig(sparse_prediction=True)
    if args.dry_run:
        apply_config_overrides(config, TINY)
    torch.manual_seed(0)
    model = MRMForPreTraining(config).to(device).train()
    optimizer = torch.optim.AdamW(parameter_groups(model, 0.05), lr=1.5e-4, betas=(0.9, 0.95), fused=True)
    augment = DeviceAugmentation(encoder_image_processor(), size=config.reconstruction_size, seed=0)
    size, length = args.decode_size, config.report_max_position_embeddings
    input_ids = torch.randint(4, config.report_vocab_size, (args.batch_size, length), device=device)
    batch = {
        "decoded_images": torch.randint(0, 256, (args.batch_size, size, size), dtype=torch.uint8, device=device),
        "original_sizes": torch.tensor([[3056, 2544]] * args.batch_size, device=device),
        "sample_index": torch.arange(args.batch_size, device=device),
        "input_ids": input_ids,
        "attention_mask": torch.ones_like(input_ids),
        "labels": torch.where(torch.rand(input_ids.shape, device=device) < 0.5, input_ids, -100),
    }
    augmenting, rest = [], []
    for step in range(args.warmup_steps + args.steps):
        synchronize(device)
        start = time.perf_counter()
        inputs = augment(batch)
        synchronize(device)
        middle = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16):
            loss = model(**inputs).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        synchronize(device)
        if step >= args.warmup_steps:
            augmenting.append(middle - start)
            rest.append(time.perf_counter() - middle)
    augment_s, rest_s = statistics.median(augmenting), statistics.median(rest)
    print(f"\nOn-device augmentation in a bf16 Accelerate-loop step, batch {args.batch_size}, {size} px uint8 -> "
          f"{config.reconstruction_size} px: {augment_s * 1e3:.1f} ms of {(augment_s + rest_s) * 1e3:.1f} ms, "
          f"{100 * augment_s / (augment_s + rest_s):.1f}% of the step (median of {args.steps})")  # fmt: skip


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch_size", type=int, default=64, help="per step")
    parser.add_argument("--steps", type=int, default=20, help="timed steps of each measurement")
    parser.add_argument("--warmup_steps", type=int, default=5)
    parser.add_argument("--decode_size", type=int, default=512, help="side of the decoded images (--decode_size)")
    parser.add_argument("--dry_run", action="store_true", help="a tiny model for 2 steps on the CPU: wiring only")
    args = parser.parse_args(argv)
    if args.dry_run:
        args.batch_size, args.steps, args.warmup_steps, args.decode_size = 4, 2, 1, 96
        device = torch.device("cpu")
    elif not torch.cuda.is_available():
        raise SystemExit("benchmarks/gpu_check.py: expected a CUDA GPU; found none (--dry_run checks it on a CPU).")
    else:
        device = torch.device("cuda")

    common = ["--precision", "bf16", "--batch_size", str(args.batch_size), "--steps", str(args.steps),
              "--warmup_steps", str(args.warmup_steps), "--device", device.type]  # fmt: skip
    if args.dry_run:
        common += ["--config_overrides", TINY]
    print(f"GPU check: torch {torch.__version__}, "
          f"{torch.cuda.get_device_name(device) if device.type == 'cuda' else 'CPU dry run: wiring only'}")  # fmt: skip
    throughput([*common, "--attn_implementation", "sdpa"])  # both paths: samples/s, peak memory, TFLOP/s, MFU
    if importlib.util.find_spec("flash_attn") is not None and device.type == "cuda":
        throughput([*common, "--attn_implementation", "flash_attention_2", "--paths", "accelerate"])
    else:
        print("\nflash-attn is not installed (or no GPU): SDPA only; `pip install flash-attn` adds the comparison.")
    augmentation_share(args, device)
    return 0


if __name__ == "__main__":
    sys.exit(main())
