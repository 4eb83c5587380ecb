#!/usr/bin/env python
"""Speed of the whole MRM pre-training step a user runs (forward, backward, optimiser step) against the published
step with the same optimiser, in the same run, and where our step's time goes.

    nice -n 10 python benchmarks/train_step.py                  # ViT-B, batch 4, 448 px, 100 tokens, CPU
    nice -n 10 python benchmarks/train_step.py --threads 1 --steps 3   # a shared machine: compare CPU times

The published computation is `tests/published_reference.py` (an independent re-creation of RL4M/MRM-pytorch, timm
blocks and a transformers BERT; it needs the `test` extra), with the same weights as ours (converted by
`mrm_hf.convert`), the same images, reports and masking noise, in train mode (report dropout 0.1 in both). Rows:
- published, plain AdamW: the published step as its `main_pretrain.py` builds it (`torch.optim.AdamW`, per-tensor);
- published, fused AdamW: the same step with our optimiser, the like-for-like comparison;
- ours, masked-token labels, fused AdamW: what both pre-training scripts run (`--label_mode masked`, the paper's loss;
  Trainer's default optimiser `adamw_torch_fused`, and the Accelerate loop's);
- ours, bf16 autocast: the masked-token step under `torch.autocast("cpu", torch.bfloat16)` (`--bf16`), with its loss
  and gradients against the fp32 step's on the same batch and weights.
The steps alternate between the rows, so that a shared machine's load falls on all of them; each time is the median
of `--steps` timed steps after `--warmup_steps` untimed ones (wall time, and the process's CPU time: on a shared
machine the CPU time of a one-thread run is the steadier comparison).

The split of our fp32 step comes from one profiled step of the same run (torch.profiler, self times): the matrix
products (aten mm/addmm/bmm/baddbmm) with their FLOPs (counted by FlopCounterMode) and achieved GFLOP/s against the
matmul peak measured in this run (a 2048^3 fp32 product), attention (SDPA), the optimiser step, and the rest.
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile
from torch.utils.flop_counter import FlopCounterMode

from mrm_hf import MRMConfig, MRMForPreTraining
from mrm_hf.convert import convert_state_dict
from mrm_hf.training import parameter_groups


sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from published_reference import PublishedMRM  # noqa: E402


MATMULS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm")
ATTENTION = "scaled_dot_product"
LR, BETAS, WEIGHT_DECAY = 1.5e-4, (0.9, 0.95), 0.05  # the published recipe at batch 256


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


def matmul_peak_gflops(repeats: int = 5, side: int = 2048) -> float:
    """The best fp32 GFLOP/s of a side^3 matrix product in this process (its threads, this machine's load)."""
    a, b = torch.randn(side, side), torch.randn(side, side)
    a @ b
    best = min(timed(lambda: a @ b)[0] for _ in range(repeats))
    return 2 * side**3 / best / 1e9


def adamw(model, fused: bool) -> torch.optim.AdamW:
    """AdamW over the recipe's parameter groups (weight decay spares biases, norms and tokens, as both codes do)."""
    return torch.optim.AdamW(parameter_groups(model, WEIGHT_DECAY), lr=LR, betas=BETAS, fused=fused)


def bf16_tolerance(fp32_model, bf16_model, inputs: dict, labels) -> tuple[float, float]:
    """Relative differences of the loss and of all gradients (norm of the difference over the fp32 norm) between one
    fp32 step and one bf16-autocast step on the same weights and batch, with the same dropout draws."""
    results = {}
    for bf16, model in ((False, fp32_model), (True, bf16_model)):
        torch.manual_seed(1)  # the report branch's dropout draws the same masks in both
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = model(**inputs, labels=labels).loss
        loss.backward()
        gradients = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
        results[bf16] = loss.item(), gradients
        model.zero_grad(set_to_none=True)
    (loss, gradients), (reference_loss, reference) = results[True], results[False]
    return abs(loss - reference_loss) / abs(reference_loss), ((gradients - reference).norm() / reference.norm()).item()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch_size", type=int, default=4)
    parser.add_argument("--steps", type=int, default=5, help="timed steps of each row")
    parser.add_argument("--warmup_steps", type=int, default=1, help="untimed steps of each row first")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    published = {"plain": PublishedMRM().train()}
    published["fused"] = PublishedMRM().train()
    published["fused"].load_state_dict(published["plain"].state_dict())
    config = MRMConfig(sparse_prediction=True)  # as the pre-training scripts run it
    weights = convert_state_dict(published["plain"].state_dict(), "pretraining")
    ours = {name: MRMForPreTraining(config).train() for name in ("masked", "bf16")}
    for model in ours.values():
        model.load_state_dict(weights)
    batch = make_batch(config, args.batch_size)
    common = dict(pixel_values=batch["pixel_values"], input_ids=batch["input_ids"],
                  attention_mask=batch["attention_mask"], noise=batch["noise"])  # fmt: skip

    def published_step(model, optimizer):
        def step():
            out = model(batch["pixel_values"], batch["input_ids"], batch["attention_mask"], batch["ids"],
                        noise=batch["noise"])  # fmt: skip
            (out["loss_img"] + out["loss_report"]).backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

        return step

    def ours_step(model, optimizer, labels, bf16=False):
        def step():
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                loss = model(**common, labels=labels).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

        return step

    loss_error, grad_error = bf16_tolerance(ours["masked"], ours["bf16"], common, batch["masked_labels"])

    optimizers = {
        "published, plain AdamW": adamw(published["plain"], fused=False),
        "published, fused AdamW": adamw(published["fused"], fused=True),
        "ours, masked labels, fused": adamw(ours["masked"], fused=True),
        "ours, bf16 autocast, fused": adamw(ours["bf16"], fused=True),
    }
    steps = {
        "published, plain AdamW": published_step(published["plain"], optimizers["published, plain AdamW"]),
        "published, fused AdamW": published_step(published["fused"], optimizers["published, fused AdamW"]),
        "ours, masked labels, fused": ours_step(ours["masked"], optimizers["ours, masked labels, fused"],
                                                batch["masked_labels"]),
        "ours, bf16 autocast, fused": ours_step(ours["bf16"], optimizers["ours, bf16 autocast, fused"],
                                                batch["masked_labels"], bf16=True),
    }  # fmt: skip
    peak = matmul_peak_gflops()
    times = {name: [] for name in steps}
    for index in range(args.warmup_steps + args.steps):
        for name, step in steps.items():
            seconds = timed(step)
            if index >= args.warmup_steps:
                times[name].append(seconds)
    peak = max(peak, matmul_peak_gflops())  # before and after the steps: the better of the two

    # The split of our fp32 step: one profiled step, and the FLOPs of its matrix products.
    model, optimizer = ours["masked"], optimizers["ours, masked labels, fused"]
    with FlopCounterMode(display=False) as counter:
        model(**common, labels=batch["masked_labels"]).loss.backward()
    model.zero_grad(set_to_none=True)
    matmul_flops = sum(v for op, v in counter.get_flop_counts()["Global"].items()
                       if str(op).split(".")[1] in ("mm", "addmm", "bmm", "baddbmm"))  # fmt: skip
    with profile(activities=[ProfilerActivity.CPU]) as profiler:
        start = time.perf_counter()
        model(**common, labels=batch["masked_labels"]).loss.backward()
        backward_end = time.perf_counter()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        end = time.perf_counter()
    events = profiler.key_averages()
    matmul_s = sum(e.self_cpu_time_total for e in events if e.key in MATMULS) / 1e6
    attention_s = sum(e.self_cpu_time_total for e in events if ATTENTION in e.key) / 1e6
    optimizer_s, total_s = end - backward_end, end - start

    print(
        f"MRM ViT-B/16 pre-training step (forward, backward, AdamW step), batch {args.batch_size}, "
        f"{config.reconstruction_size} px -> {config.image_size}, {config.report_max_position_embeddings} tokens, "
        f"CPU x {torch.get_num_threads()} threads, torch {torch.__version__}; median of {args.steps} steps"
    )
    medians = {name: [statistics.median(v[i] for v in values) for i in (0, 1)] for name, values in times.items()}
    wall_ref, cpu_ref = medians["published, fused AdamW"]
    print(f"{'step':<32}{'wall s':>9}{'samples/s':>11}{'vs published':>14}{'CPU s':>9}{'vs published':>14}")
    for name, (wall, cpu) in medians.items():
        print(f"{name:<32}{wall:>9.3f}{args.batch_size / wall:>11.2f}{wall_ref / wall:>13.2f}x{cpu:>9.3f}"
              f"{cpu_ref / cpu:>13.2f}x")
    print("(vs published: against 'published, fused AdamW', the same optimiser; above 1 is faster)")
    print(f"\nbf16 autocast against fp32, one step on the same weights and batch: loss {loss_error:.2e} relative, "
          f"gradients {grad_error:.2e} relative (norm of the difference over the fp32 norm)")
    print(f"\nWhere our fp32 step's time goes (one profiled step, {total_s:.3f} s wall under the profiler):")
    print(f"{'part':<44}{'s':>8}{'share':>8}")
    rest_s = total_s - matmul_s - attention_s - optimizer_s
    achieved = matmul_flops / matmul_s / 1e9 if matmul_s else float("nan")
    print(f"matmuls: {matmul_flops / 1e9:.0f} GFLOP at {achieved:.0f} GFLOP/s, {100 * achieved / peak:.0f}% of the "
          f"fp32 matmul peak measured in this run ({peak:.0f} GFLOP/s)")
    rows = [
        ("matmuls (mm, addmm, bmm, baddbmm)", matmul_s),
        ("attention (SDPA)", attention_s),
        ("optimiser step (fused AdamW) and zero_grad", optimizer_s),
        ("the rest (norms, activations, losses, masking, copies)", rest_s),
    ]
    for name, seconds in rows:
        print(f"{name:<44}{seconds:>8.3f}{100 * seconds / total_s:>7.1f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
