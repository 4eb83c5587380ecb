"""The trainers and what they share: the schedule rule, optimiser groups, the loss bookkeeping of exact gradient
accumulation, and the model-card hook.

`MRMPreTrainer` (Trainer) and `accumulate_gradients` (an Accelerate loop) pre-train with the same normalisation;
`ClassificationTrainer` fine-tunes classifiers and, through UperNet, segmenters, with optional layer-wise lr decay.
"""

import contextlib
import logging
import os
import pickle
import shutil
from pathlib import Path

import torch
from accelerate.utils import DistributedType, parse_flag_from_env
from torch import nn
from transformers import PreTrainedModel, Trainer, TrainerCallback
from transformers.trainer import TRAINER_STATE_NAME, TRAINING_ARGS_NAME
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, rotate_checkpoints

from .checkpoints import publish_checkpoint, reading_checkpoint, staging_folder
from .report_filling import report_loss_by_image


logger = logging.getLogger(__name__)


# ---- the schedule ----------------------------------------------------------------------------------------------------


def derive_schedule(args, world_size: int) -> None:
    """Set gradient accumulation from the effective batch, the lr from the base lr, the warm-up from its epochs.

    `--per_device_train_batch_size` is the most one process takes at once: with more processes than the effective
    batch needs at that size, each takes fewer (the demo's 32 on 2 processes: 16 each), so that the total batch, and
    with it the learning rate and the result, does not depend on how many processes run.
    """
    per_device = args.per_device_train_batch_size
    if args.effective_batch_size:
        effective = args.effective_batch_size
        steps = -(-effective // (per_device * world_size))  # the fewest accumulation steps at this per-device batch
        while effective % (world_size * steps) and steps < effective:
            steps += 1
        if effective % (world_size * steps):
            raise ValueError(
                f"--effective_batch_size {effective} cannot be split over {world_size} processes with at most "
                f"{per_device} per device: expected a multiple of {world_size} (the number of processes); found "
                f"{effective}."
            )
        if effective // (world_size * steps) != per_device:
            logger.info(
                "--per_device_train_batch_size %d lowered to %d, so that %d processes x %d accumulation steps make "
                "--effective_batch_size %d", per_device, effective // (world_size * steps), world_size, steps, effective,
            )  # fmt: skip
        args.per_device_train_batch_size = effective // (world_size * steps)
        args.gradient_accumulation_steps = steps
    per_step = args.per_device_train_batch_size * world_size
    total = per_step * args.gradient_accumulation_steps
    args.learning_rate = args.base_learning_rate * total / 256
    if args.warmup_epochs and args.num_train_epochs:
        args.warmup_steps = min(args.warmup_epochs / args.num_train_epochs, 1.0)  # below 1: a fraction of the steps
    logger.info(
        "Total batch %d (%d per step x %d accumulation), learning rate %.3g, warm-up %s of the steps",
        total, per_step, args.gradient_accumulation_steps, args.learning_rate, args.warmup_steps,
    )  # fmt: skip


# ---- the engine ------------------------------------------------------------------------------------------------------


SHARDED_ENGINES = {"FSDP": DistributedType.FSDP, "DeepSpeed": DistributedType.DEEPSPEED}


def check_engine(accelerator, args=None, sharded: bool = True) -> None:
    """Stop when an FSDP or DeepSpeed configuration was given (`accelerate launch --config_file` sets
    ACCELERATE_USE_FSDP / ACCELERATE_USE_DEEPSPEED; Trainer also takes `--fsdp` and `--deepspeed`) but this run does
    not use it, rather than train unsharded without a word: accelerate 1.16 turns FSDP on only on accelerators (a CPU
    run stays plain DDP whatever its config) and DeepSpeed not under --use_cpu. `sharded=False`: the script has no
    sharded path at all (the Accelerate loop), so any such configuration stops it."""
    launched = int(os.environ.get("WORLD_SIZE", "1"))  # what torchrun and accelerate launch started
    if accelerator.num_processes != launched:
        raise RuntimeError(
            f"The launcher started {launched} processes (WORLD_SIZE): expected them to train as one run; found "
            f"accelerate setting up {accelerator.num_processes} (each process would train alone on the same batches). "
            "accelerate finds no process-group backend on a CPU run without --use_cpu: DeepSpeed on CPUs "
            "(DS_ACCELERATOR=cpu) needs --ddp_backend gloo."
        )
    requested = {
        "FSDP": parse_flag_from_env("ACCELERATE_USE_FSDP") or bool(getattr(args, "fsdp", None)),
        "DeepSpeed": parse_flag_from_env("ACCELERATE_USE_DEEPSPEED") or bool(getattr(args, "deepspeed", None)),
    }
    running = accelerator.distributed_type
    for name, engine in SHARDED_ENGINES.items():
        if not requested[name]:
            continue
        if not sharded:
            raise RuntimeError(
                f"{name}: expected a configuration this script can run; found {name}, which the Accelerate loop does "
                "not support (it accumulates gradients by hand): run examples/run_pretraining.py (Trainer) with it."
            )
        if running != engine:
            why = {
                DistributedType.MULTI_CPU: " (accelerate enables FSDP and DeepSpeed on accelerators such as GPUs, not "
                "on a CPU run: --use_cpu or no GPU; DeepSpeed runs on CPUs with DS_ACCELERATOR=cpu, --ddp_backend gloo "
                "and without --use_cpu)",
                DistributedType.NO: " (a single process: launch several, e.g. accelerate launch --num_processes N)",
            }.get(running, "")
            raise RuntimeError(
                f"{name}: expected a run sharded by {name}, as the given {name} configuration asks; found a "
                f"{running.value} run{why}. Stopping rather than training unsharded."
            )


def unsharded_model(model: nn.Module, state_dict: dict) -> PreTrainedModel:
    """The model as its own class, holding the full `state_dict`: FSDP2's `fully_shard` changes a model's class to
    `FSDP<Name>` (defined in torch), which `save_pretrained` would write into config.json's `auto_map` and
    `architectures`, with torch's module files copied beside the weights."""
    from torch.distributed.fsdp import FSDPModule

    model_class = next(c for c in type(model).__mro__ if not issubclass(c, FSDPModule))
    with torch.device("meta"):
        plain = model_class(model.config)
    plain.load_state_dict(state_dict, assign=True)
    return plain


# ---- optimiser groups ------------------------------------------------------------------------------------------------


TOKEN_PARAMETERS = ("cls_token", "mask_token")


def decay_parameter_names(model: nn.Module, decay_tokens: bool = False) -> list[str]:
    """Trainable parameters that take weight decay: not biases, not norms, not the cls/mask tokens.

    The published code (timm 0.3.2 `add_weight_decay`) exempts only 1-D parameters and biases, so it does decay the
    cls and mask tokens; `decay_tokens=True` reproduces that. Frozen position tables are never optimised.
    """
    names = []
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad or parameter.ndim <= 1 or name.endswith(".bias"):
            continue
        if not decay_tokens and name.split(".")[-1] in TOKEN_PARAMETERS:
            continue
        names.append(name)
    return names


def parameter_groups(model: nn.Module, weight_decay: float, decay_tokens: bool = False) -> list[dict]:
    """Optimizer parameter groups with and without weight decay (see `decay_parameter_names`)."""
    decay = set(decay_parameter_names(model, decay_tokens))
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    return [
        {"params": [p for n, p in trainable if n in decay], "weight_decay": weight_decay},
        {"params": [p for n, p in trainable if n not in decay], "weight_decay": 0.0},
    ]


def encoder_depth(name: str, num_layers: int, encoder_prefix: str = "image_encoder.") -> int:
    """0 for the embeddings, i + 1 for encoder block i, num_layers + 1 for the rest (final norms, pooler, heads)."""
    if name.startswith(encoder_prefix + "embeddings."):
        return 0
    if name.startswith(encoder_prefix + "layers."):
        return int(name[len(encoder_prefix) :].split(".")[1]) + 1
    return num_layers + 1


def layer_decay_parameter_groups(
    model: nn.Module,
    learning_rate: float,
    layer_decay: float,
    weight_decay: float = 0.0,
    decay_parameter_names: list[str] | None = None,
) -> list[dict]:
    """Optimizer groups with lr = learning_rate * layer_decay ** (num_layers + 1 - depth), head first (scale 1).

    As MAE's `param_groups_lrd`; parameters outside `decay_parameter_names` (default: 1-D ones) get no weight decay.
    The encoder is `image_encoder` (MRM models) or, for models with a `backbone_config` (UperNet on `MRMBackbone`),
    `backbone`.
    """
    backbone_config = getattr(model.config, "backbone_config", None)
    encoder_prefix = "image_encoder." if backbone_config is None else "backbone."
    num_layers = (backbone_config or model.config).num_hidden_layers
    groups: dict[tuple[int, bool], dict] = {}
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        depth = encoder_depth(name, num_layers, encoder_prefix)
        decays = name in decay_parameter_names if decay_parameter_names is not None else parameter.ndim > 1
        scale = layer_decay ** (num_layers + 1 - depth)
        group = groups.setdefault(
            (depth, decays),
            {
                "params": [],
                "lr": learning_rate * scale,
                "lr_scale": scale,
                "weight_decay": weight_decay if decays else 0.0,
                "depth": depth,
            },
        )
        group["params"].append(parameter)
    # The deepest group first: Trainer logs the first group's learning rate, which is then the base one.
    return [groups[key] for key in sorted(groups, key=lambda key: (-key[0], not key[1]))]


# ---- loss bookkeeping ------------------------------------------------------------------------------------------------


class RunningMeans:
    """Running means of named scalars between two logs, averaged over every process when read."""

    def __init__(self, keys: tuple[str, ...]):
        self.keys = keys
        self.reset()

    def reset(self) -> None:
        self.sums = dict.fromkeys(self.keys, 0.0)
        self.counts = dict.fromkeys(self.keys, 0)

    def add(self, values) -> None:
        """Add the values of these keys found in a mapping (model outputs included); None is skipped."""
        for key in self.keys:
            value = values.get(key)
            if value is not None:
                self.sums[key] += float(value.detach() if isinstance(value, torch.Tensor) else value)
                self.counts[key] += 1

    def means(self, accelerator) -> dict[str, float]:
        """The means since the last read over all processes (every process must call this), then reset."""
        local = [self.sums[k] for k in self.keys] + [float(self.counts[k]) for k in self.keys]
        reduced = accelerator.reduce(torch.tensor(local, dtype=torch.float64, device=accelerator.device), "sum")
        self.reset()
        sums, counts = reduced[: len(self.keys)], reduced[len(self.keys) :]
        return {k: (total / count).item() for k, total, count in zip(self.keys, sums, counts) if count > 0}


def accumulation_counts(micro_batches: list[dict], gather, device) -> torch.Tensor:
    """(images, labelled report tokens) in the micro-batches of one optimiser step, summed over every process.

    `gather` is `Accelerator.gather`. Passed to the model as `num_items_in_batch`, they are the divisors of its loss:
    `MRMForPreTraining.forward` divides the summed image and report losses by them, once, so that the losses of all
    micro-batches (and processes) add up to the full batch's loss, whatever the labelled tokens of each, and
    accumulation gives the full batch's gradients.
    """
    images = sum(len(batch["pixel_values" if "pixel_values" in batch else "decoded_images"]) for batch in micro_batches)
    images = torch.tensor(images, device=device)
    tokens = sum(
        ((batch["labels"] != -100).sum().to(device) for batch in micro_batches if batch.get("labels") is not None),
        torch.tensor(0, device=device),
    )
    return gather(torch.stack([images, tokens])[None]).sum(dim=0)


def accumulate_gradients(model, micro_batches: list[dict], accelerator) -> tuple[float, list[dict]]:
    """Forward and backward over the micro-batches of one optimiser step, normalised as one batch (the model's loss
    with `num_items_in_batch`, see `accumulation_counts`).

    Gradients are exchanged between processes only after the last micro-batch. DDP averages them over processes, so
    each backpropagates its share times the number of processes. Returns the step's loss (this process's part times
    the number of processes: its mean over processes is the loss of the whole batch) and each micro-batch's
    `image_loss` and `report_loss`.
    """
    counts = accumulation_counts(micro_batches, accelerator.gather, accelerator.device)
    step_loss, parts = 0.0, []
    for index, batch in enumerate(micro_batches):
        last = index == len(micro_batches) - 1
        with contextlib.nullcontext() if last else accelerator.no_sync(model):
            outputs = model(**batch, num_items_in_batch=counts)
            loss = outputs.loss * accelerator.num_processes
            accelerator.backward(loss)
        step_loss += float(loss.detach())
        parts.append({"image_loss": outputs.image_loss.detach(), "report_loss": outputs.report_loss})
    return step_loss, parts


# ---- trainers -------------------------------------------------------------------------------------------------------


class CardWritingTrainer(Trainer):
    """Trainer whose `create_model_card` calls `model_card(output_dir)` on the main process, when one is given: the
    run scripts pass a function that fills their template (`mrm_hf.hub.write_model_card`). Every trainer of the
    project derives from it, so it also names a checkpoint's random-state file that cannot be read on resume."""

    def __init__(self, *args, model_card=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.model_card = model_card

    def create_model_card(self, **kwargs) -> None:
        if self.model_card is None:
            return super().create_model_card(**kwargs)
        if self.is_world_process_zero():
            self.model_card(self.args.output_dir)

    def _load_rng_state(self, checkpoint) -> None:
        try:
            super()._load_rng_state(checkpoint)
        except pickle.UnpicklingError as error:  # torch.load(weights_only=True) refused an object in the file
            name = "rng_state.pth" if self.args.world_size <= 1 else f"rng_state_{self.args.process_index}.pth"
            # what it refused, without torch's advice to load with weights_only=False (that runs whatever code it holds)
            found = " ".join(str(error).split("WeightsUnpickler error:", 1)[-1].split("Check the documentation")[0].split())
            found = found.split(". ")[0].rstrip(".")
            raise ValueError(
                f"Cannot resume from {checkpoint}: expected {Path(checkpoint) / name} to hold the random state that "
                f"torch.load(weights_only=True) reads; found it refused ({found}). Resume from an earlier checkpoint, "
                "or delete that file to resume without the exact random state (the run then draws differently from "
                "an uninterrupted one)."
            ) from error


class _DrawsEpoch(TrainerCallback):
    """Tell the collator's (and transform's) seeded draws which epoch begins, before its DataLoader iterator exists."""

    def __init__(self, collator):
        self.collator = collator

    def on_epoch_begin(self, args, state, control, **kwargs):
        self.collator.set_epoch(int(state.epoch or 0))


class MRMPreTrainer(CardWritingTrainer):
    """Trainer with exact gradient accumulation of both losses, the recipe's weight-decay exemptions,
    `image_loss`/`report_loss` in every log, epoch-keyed data draws, and checkpoints that appear only once complete."""

    # `compute_loss` passes the model the whole accumulated batch's counts, by which it normalises its loss itself.
    loss_is_scaled_for_ga = True

    def __init__(self, *args, decay_tokens: bool = False, device_augmentation=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.decay_tokens = decay_tokens
        self.device_augmentation = device_augmentation  # decoded images -> pixel_values on the device
        self._components = {split: RunningMeans(("image_loss", "report_loss")) for split in ("train", "eval")}
        if not self.model.config.use_report_branch:
            # Image-only batches have no `labels`, yet the image loss needs none: evaluate it all the same.
            self.label_names, self.can_return_loss = [], True
        self._staging_root = None
        if hasattr(self.data_collator, "set_epoch"):
            if self.args.dataloader_persistent_workers and self.args.dataloader_num_workers > 0:
                raise ValueError(
                    "--dataloader_persistent_workers: expected False with seeded draws (persistent workers keep the "
                    "first epoch's crops and masks); found True."
                )
            self.add_callback(_DrawsEpoch(self.data_collator))

    def get_decay_parameter_names(self, model) -> list[str]:
        return decay_parameter_names(model, self.decay_tokens)

    def get_batch_samples(self, epoch_iterator, num_batches, device):
        """The micro-batches of one optimiser step, with their `accumulation_counts` as `num_items_in_batch`."""
        batches, _ = super().get_batch_samples(epoch_iterator, num_batches, device)
        return batches, accumulation_counts(batches, self.accelerator.gather, device) if batches else None

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if self.device_augmentation is not None and "decoded_images" in inputs:
            inputs = self.device_augmentation(inputs)
        # Evaluation has no `num_items_in_batch`: the loss is then the batch's own.
        outputs = model(**inputs, num_items_in_batch=num_items_in_batch)
        loss = outputs.loss
        if num_items_in_batch is not None:
            # DDP averages gradients over processes: each backpropagates its share times their number.
            loss = loss * self.accelerator.num_processes
        self._components["train" if model.training else "eval"].add(outputs)
        return (loss, outputs) if return_outputs else loss

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        for split, loss_key, prefix in (("train", "loss", ""), ("eval", "eval_loss", "eval_")):
            if loss_key in logs:
                logs.update({prefix + k: v for k, v in self._components[split].means(self.accelerator).items()})
        super().log(logs, start_time)

    def evaluation_loop(self, dataloader, description, prediction_loss_only=None, ignore_keys=None,
                        metric_key_prefix="eval"):
        """The evaluation, plus whether the report branch reads the image (`<prefix>_report_loss_<own|zero|shuffled>
        _image`, see `report_loss_by_image`)."""
        output = super().evaluation_loop(dataloader, description, prediction_loss_only, ignore_keys, metric_key_prefix)
        with self.autocast_smart_context_manager():
            losses = report_loss_by_image(self.accelerator.unwrap_model(self.model), dataloader, self.accelerator)
        output.metrics.update({f"{metric_key_prefix}_{k}": v for k, v in losses.items()})
        return output

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        """Under FSDP, Trainer saves no weights with a SHARDED_STATE_DICT, and with a FULL one saves them as FSDP2's
        class (`unsharded_model`); nor does a sharded checkpoint get the processor, whose tokenizer a resume reads.
        Here a checkpoint (`_internal_call`) holds the processor beside the sharded weights and optimizer state that
        Trainer writes there, and the final folder the full fp32 weights, gathered from every process, as the model's
        own class."""
        if not self.is_fsdp_enabled:
            return super().save_model(output_dir, _internal_call)
        output_dir = output_dir if output_dir is not None else self.args.output_dir
        state_dict = None if _internal_call else self.accelerator.get_state_dict(self.model)  # every process gathers
        if self.args.should_save:
            os.makedirs(output_dir, exist_ok=True)
            if state_dict is not None:
                model = self.accelerator.unwrap_model(self.model)
                unsharded_model(model, state_dict).save_pretrained(output_dir)
            if self.processing_class is not None:
                self.processing_class.save_pretrained(output_dir)
            torch.save(self.args, os.path.join(output_dir, TRAINING_ARGS_NAME))
        if self.args.push_to_hub and not _internal_call:
            self.push_to_hub(commit_message="Model save", revision=getattr(self.args, "hub_revision", None))

    def _get_output_dir(self, trial) -> str:
        return str(self._staging_root) if self._staging_root is not None else super()._get_output_dir(trial)

    def _save_checkpoint(self, model, trial) -> None:
        # Written under .partial-checkpoint-N/ and renamed when complete (see `publish_checkpoint`).
        run_dir = Path(self._get_output_dir(trial))
        final = run_dir / f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
        staging = staging_folder(final)
        if self.args.should_save and staging.parent.exists():
            shutil.rmtree(staging.parent)  # left by a run killed while saving
        self.accelerator.wait_for_everyone()
        self._staging_root = staging.parent
        try:
            super()._save_checkpoint(model, trial)
        finally:
            self._staging_root = None
        publish_checkpoint(staging, final, self.args.should_save, self.accelerator.wait_for_everyone)
        best = self.state.best_model_checkpoint
        if best is not None and Path(best).parent == staging.parent:
            self.state.best_model_checkpoint = str(run_dir / Path(best).name)
            if self.args.should_save:  # the saved state named the staging folder; a resumed run must find the best
                temporary = final / f"{TRAINER_STATE_NAME}.tmp"
                self.state.save_to_json(str(temporary))
                temporary.replace(final / TRAINER_STATE_NAME)
        if self.args.push_to_hub:
            super()._push_from_checkpoint(str(final))  # only once complete, from where it stays
        if self.args.should_save:
            rotate_checkpoints(
                output_dir=str(run_dir),
                save_total_limit=self.args.save_total_limit,
                best_model_checkpoint=self.state.best_model_checkpoint,
                use_mtime=True,
            )

    def _push_from_checkpoint(self, checkpoint_folder) -> None:
        if self._staging_root is None:  # Trainer's own call, from the staging folder, waits for `_save_checkpoint`
            super()._push_from_checkpoint(checkpoint_folder)

    def _load_from_checkpoint(self, resume_from_checkpoint, model=None) -> None:
        with reading_checkpoint(resume_from_checkpoint):
            super()._load_from_checkpoint(resume_from_checkpoint, model)

    def _load_optimizer_and_scheduler(self, checkpoint) -> None:
        with reading_checkpoint(checkpoint):
            super()._load_optimizer_and_scheduler(checkpoint)


class ClassificationTrainer(CardWritingTrainer):
    """Trainer with optional layer-wise lr decay (`layer_decay_parameter_groups`), and told each epoch to the
    training transform's seeded draws when given (`draws`, a `SeededDraws`)."""

    def __init__(self, *args, layer_decay: float | None = None, draws=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.layer_decay = layer_decay
        if draws is not None:
            self.add_callback(_DrawsEpoch(draws))

    def create_optimizer(self, model=None) -> torch.optim.Optimizer:
        """The optimizer of `args.optim`, over layer-decayed groups when `layer_decay` is set."""
        if self.layer_decay is None or self.optimizer is not None:
            return super().create_optimizer(model)
        model = self.model if model is None else model
        groups = layer_decay_parameter_groups(
            model, self.args.learning_rate, self.layer_decay, self.args.weight_decay,
            self.get_decay_parameter_names(model),
        )  # fmt: skip
        optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(self.args, model)
        self.optimizer = optimizer_cls(groups, **optimizer_kwargs)
        return self.optimizer


__all__ = [
    "CardWritingTrainer",
    "ClassificationTrainer",
    "MRMPreTrainer",
    "RunningMeans",
    "accumulate_gradients",
    "accumulation_counts",
    "check_engine",
    "decay_parameter_names",
    "derive_schedule",
    "layer_decay_parameter_groups",
    "parameter_groups",
    "unsharded_model",
]
