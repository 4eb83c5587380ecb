#!/usr/bin/env python
"""Pre-train MRM with your own Accelerate loop: the same arguments, data and recipe as `run_pretraining.py`.

    accelerate launch examples/run_pretraining_no_trainer.py --args_file examples/configs/demo.args
    accelerate launch --multi_gpu --num_processes 2 examples/run_pretraining_no_trainer.py \
        --args_file examples/configs/demo.args --use_cpu

(CPU processes need `--multi_gpu` and `--use_cpu`: `accelerate launch --cpu` starts a single process in accelerate 1.x.)

Mixed precision comes from `--bf16`/`--fp16` (or `accelerate launch --mixed_precision`), gradient accumulation from
`--effective_batch_size`, checkpoints from `--save_strategy`/`--save_steps` (folders `step_N`), trackers from
`--report_to`, and `--resume_from_checkpoint` takes a `step_N` folder or `last`.
"""

import logging
import math
from itertools import islice
from pathlib import Path

import torch
from accelerate import Accelerator, PartialState
from accelerate.utils import DataLoaderConfiguration, set_seed
from huggingface_hub import HfApi
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import get_scheduler

from mrm_hf.checkpoints import publish_checkpoint, reading_checkpoint, resolve_checkpoint, staging_folder
from mrm_hf.figures import save_reconstruction_figure
from mrm_hf.hub import check_hub_access
from mrm_hf.processing_mrm import processor_for_model
from mrm_hf.report_filling import report_loss_by_image
from mrm_hf.training import RunningMeans, accumulate_gradients, check_engine, derive_schedule, parameter_groups
from mrm_hf.utils import setup_logging
from pretraining_setup import (
    device_augmentation,
    figure_samples,
    image_processor_for,
    load_model,
    load_records,
    load_tokenizer,
    parse_arguments,
    prepare,
    write_card,
)


logger = logging.getLogger(__name__)
LOSSES = ("loss", "image_loss", "report_loss")
FUSED_ADAMW_DEVICES = ("cpu", "cuda", "xpu")


def evaluate(model, loader, accelerator, seed: int) -> dict[str, float]:
    """Mean eval loss and its image and report parts over the validation records, and whether the report branch reads
    the image (the report loss with each record's own image, none, and another record's). The masking noise is the
    same at every evaluation and drawn aside from the training run's random state (so a resumed run draws as the
    straight one)."""
    model.eval()
    running = RunningMeans(LOSSES)
    devices = [accelerator.device] if accelerator.device.type == "cuda" else []
    with torch.no_grad(), torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        for batch in loader:
            running.add(model(**batch))
        with accelerator.autocast():
            image_use = report_loss_by_image(accelerator.unwrap_model(model), loader, accelerator)
    losses = {**running.means(accelerator), **image_use}
    model.train()
    return {f"eval_{k}": v for k, v in losses.items()}


def main(argv: list[str] | None = None) -> dict:
    model_args, data_args, args = parse_arguments(argv)
    check_hub_access(args)
    state = PartialState(cpu=args.use_cpu)
    derive_schedule(args, state.num_processes)
    trackers = [t for t in (args.report_to or []) if t != "none"]
    # Accumulation is done by hand below (Accelerate's own would divide each micro-batch's loss by the steps before
    # their labelled tokens are known), so the Accelerator itself steps on every call.
    accelerator = Accelerator(
        mixed_precision="bf16" if args.bf16 else "fp16" if args.fp16 else None,
        log_with=trackers or None,
        project_dir=args.output_dir,
        cpu=args.use_cpu,
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True),
    )
    check_engine(accelerator, sharded=False)  # FSDP and DeepSpeed go through run_pretraining.py (Trainer)
    setup_logging(logging.INFO if accelerator.is_local_main_process else logging.ERROR)
    logger.info(accelerator.state)
    set_seed(args.seed)
    output_dir = Path(args.output_dir)

    checkpoint = resolve_checkpoint(args.resume_from_checkpoint, output_dir, "step_")
    with accelerator.main_process_first():
        records = load_records(data_args, args.seed, reports=not model_args.image_only)
    tokenizer = load_tokenizer(  # None under --image_only
        model_args, records["train"], checkpoint, output_dir, accelerator.main_process_first, accelerator.is_main_process
    )
    model = load_model(model_args, tokenizer)
    image_processor = image_processor_for(model, model_args)
    processor = processor_for_model(model, tokenizer, image_processor)
    records, collator = prepare(records, model, image_processor, tokenizer, data_args, seed=args.seed)
    # None unless --augment_on_device
    augment = device_augmentation(model, image_processor, data_args, collator.draws, accelerator.device)

    loader_options = dict(collate_fn=collator, num_workers=args.dataloader_num_workers)
    # Its own generator: building an iterator (again, on resume) then leaves torch's global generator alone.
    train_loader = DataLoader(
        records["train"],
        shuffle=True,
        batch_size=args.per_device_train_batch_size,
        generator=torch.Generator().manual_seed(args.seed),
        **loader_options,
    )
    eval_loader = None
    if "validation" in records:
        eval_loader = DataLoader(records["validation"], batch_size=args.per_device_eval_batch_size, **loader_options)
    optimizer = torch.optim.AdamW(
        parameter_groups(model, args.weight_decay, args.decay_tokens),
        lr=args.learning_rate,
        betas=(args.adam_beta1, args.adam_beta2),
        eps=args.adam_epsilon,
        # One kernel over all parameters, as Trainer's default (adamw_torch_fused); the same results as the loop of
        # per-tensor updates, in a fraction of the time.
        fused=accelerator.device.type in FUSED_ADAMW_DEVICES,
    )
    model, optimizer, train_loader = accelerator.prepare(model, optimizer, train_loader)
    if eval_loader is not None:
        eval_loader = accelerator.prepare(eval_loader)
    steps_per_epoch = math.ceil(len(train_loader) / args.gradient_accumulation_steps)  # this process's batches
    max_steps = args.max_steps if args.max_steps > 0 else math.ceil(args.num_train_epochs * steps_per_epoch)
    epochs = math.ceil(max_steps / steps_per_epoch)
    # The prepared scheduler steps once per process on every optimiser step.
    scheduler = get_scheduler(
        args.lr_scheduler_type,
        optimizer,
        num_warmup_steps=args.get_warmup_steps(max_steps) * accelerator.num_processes,
        num_training_steps=max_steps * accelerator.num_processes,
    )
    scheduler = accelerator.prepare(scheduler)
    if trackers:
        accelerator.init_trackers("mrm_pretraining", {k: v for k, v in args.to_sanitized_dict().items()})

    completed_steps, start_epoch, skip_batches = 0, 0, 0
    if checkpoint is not None:
        with reading_checkpoint(checkpoint):
            accelerator.load_state(str(checkpoint))
        completed_steps = int(checkpoint.name.removeprefix("step_"))
        start_epoch, skip_batches = divmod(completed_steps, steps_per_epoch)
        skip_batches *= args.gradient_accumulation_steps
        logger.info("Resumed from %s at step %d", checkpoint, completed_steps)

    save_every = args.save_steps if args.save_strategy == "steps" else steps_per_epoch if args.save_strategy == "epoch" else 0
    save_every = int(save_every * max_steps) if 0 < save_every < 1 else int(save_every)
    window, metrics = RunningMeans(LOSSES), {}
    progress = tqdm(range(max_steps), initial=completed_steps, disable=not accelerator.is_local_main_process or args.disable_tqdm)
    model.train()
    for epoch in range(start_epoch, epochs):
        train_loader.set_epoch(epoch)
        collator.set_epoch(epoch)  # crops and masks keyed by (seed, epoch, sample)
        batches = iter(accelerator.skip_first_batches(train_loader, skip_batches) if epoch == start_epoch else train_loader)
        while completed_steps < max_steps and (group := list(islice(batches, args.gradient_accumulation_steps))):
            if augment is not None:  # --augment_on_device: decoded images become pixel values here
                group = [augment(batch) for batch in group]
            # The model divides each summed loss by its count over the whole accumulated batch of every process: exact.
            step_loss, parts = accumulate_gradients(model, group, accelerator)
            for part in parts:
                window.add(part)
            window.add({"loss": step_loss})
            learning_rate = scheduler.get_last_lr()[0]  # the rate this step used
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
            completed_steps += 1
            progress.update(1)
            if completed_steps % args.logging_steps == 0 or completed_steps == max_steps:
                logs = {**window.means(accelerator), "learning_rate": learning_rate, "epoch": completed_steps / steps_per_epoch}
                accelerator.log(logs, step=completed_steps)
                accelerator.print({k: round(v, 4) for k, v in logs.items()})
            if save_every and completed_steps % save_every == 0:
                folder = output_dir / f"step_{completed_steps}"
                staging = staging_folder(folder)  # renamed to `folder` once complete
                accelerator.save_state(str(staging))
                if accelerator.is_main_process:
                    processor.save_pretrained(staging)  # a resumed run must reuse this vocabulary
                publish_checkpoint(staging, folder, accelerator.is_main_process, accelerator.wait_for_everyone)
        if eval_loader is not None and args.eval_strategy != "no":
            metrics = evaluate(model, eval_loader, accelerator, args.seed)
            accelerator.log(metrics, step=completed_steps)
            accelerator.print(metrics)
        if completed_steps >= max_steps:
            break

    if eval_loader is not None:
        metrics = evaluate(model, eval_loader, accelerator, args.seed)
    accelerator.wait_for_everyone()
    unwrapped = accelerator.unwrap_model(model)
    if accelerator.is_main_process:
        unwrapped.save_pretrained(output_dir, save_function=accelerator.save)
        processor.save_pretrained(output_dir)
        samples = figure_samples(records, unwrapped, image_processor, data_args.num_figure_samples)
        save_reconstruction_figure(unwrapped, samples, image_processor, output_dir / "reconstruction.png")
        results = {**metrics, "train_steps": completed_steps}
        write_card(output_dir, unwrapped, model_args, data_args, args, results)
        if args.push_to_hub:
            api = HfApi(token=args.hub_token)
            repo_id = api.create_repo(args.hub_model_id or output_dir.name, exist_ok=True).repo_id
            api.upload_folder(
                repo_id=repo_id, folder_path=output_dir, commit_message="MRM pre-training", ignore_patterns=["step_*", "_*"]
            )
    accelerator.end_training()
    saved = "image processor" if tokenizer is None else "processor (image processor and tokenizer)"
    accelerator.print(f"Done: model, {saved}, figure and model card in {output_dir}")
    return metrics


if __name__ == "__main__":
    main()
