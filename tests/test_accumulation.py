"""Exact gradient accumulation with both losses on: Trainer (`MRMPreTrainer`) and the Accelerate loop's step."""

import pytest
import torch
from accelerate import Accelerator
from conftest import tiny_batch, tiny_config
from transformers import TrainerCallback, TrainingArguments

from mrm_hf import MRMForPreTraining
from mrm_hf.training import MRMPreTrainer, accumulate_gradients


# Report dropout off: accumulated and full-batch runs must see exactly the same computation.
CONFIG = dict(report_hidden_dropout_prob=0.0, report_attention_probs_dropout_prob=0.0)
# Labelled report tokens kept per record: the two micro-batches of 2 hold very different counts.
LABELLED = [6, 5, 1, 0]


def records(config) -> list[dict]:
    """Four records with their own masking noise (batching cannot change what the model sees)."""
    batch, original_ids = tiny_batch(config, batch_size=len(LABELLED), seed=1)
    items = []
    for i, keep in enumerate(LABELLED):
        labels = torch.full_like(original_ids[i], -100)
        labels[1 : 1 + keep] = original_ids[i, 1 : 1 + keep]
        items.append(
            dict(
                pixel_values=batch["pixel_values"][i],
                input_ids=batch["input_ids"][i],
                attention_mask=batch["attention_mask"][i],
                labels=labels,
                noise=torch.rand(config.num_patches, generator=torch.Generator().manual_seed(i)),
            )
        )
    return items


def stack(items: list[dict]) -> dict:
    return {key: torch.stack([item[key] for item in items]) for key in items[0]}


def new_model(config) -> MRMForPreTraining:
    torch.manual_seed(0)
    return MRMForPreTraining(config).train()


def full_batch(config, items) -> tuple[float, dict[str, torch.Tensor]]:
    """The loss and gradients of one plain forward and backward over all the records."""
    model = new_model(config)
    loss = model(**stack(items)).loss
    loss.backward()
    return loss.item(), {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


def assert_same_gradients(actual: dict, expected: dict):
    """Every gradient within 1e-5 of its tensor's largest value (float sums in another order differ that little)."""
    assert actual.keys() == expected.keys()
    for name in expected:
        error = (actual[name] - expected[name]).abs().max() / expected[name].abs().max().clamp(min=1e-12)
        assert error <= 1e-5, f"{name}: relative error {error:.2e}"


def test_micro_batch_means_would_not_match_the_full_batch():
    # What the exact bookkeeping is for: the mean of the micro-batches' own losses is not the full batch's.
    config = tiny_config(**CONFIG)
    items = records(config)
    model = new_model(config)
    with torch.no_grad():
        full = model(**stack(items)).loss.item()
        naive = sum(model(**stack(items[i : i + 2])).loss.item() for i in (0, 2)) / 2
    assert abs(naive - full) > 1e-3 * abs(full)


class GradientCapture(TrainerCallback):
    """The gradients just before the first optimiser step."""

    def __init__(self):
        self.gradients = None

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        if self.gradients is None:
            self.gradients = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def trainer_step(config, items, batch_size, accumulation, output_dir):
    capture = GradientCapture()
    args = TrainingArguments(
        output_dir=str(output_dir),
        per_device_train_batch_size=batch_size,
        gradient_accumulation_steps=accumulation,
        train_sampling_strategy="sequential",
        max_steps=1,
        max_grad_norm=0.0,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        dataloader_num_workers=0,
        disable_tqdm=True,
    )
    trainer = MRMPreTrainer(model=new_model(config), args=args, train_dataset=items, callbacks=[capture])
    trainer.train()
    log = [entry for entry in trainer.state.log_history if "loss" in entry]
    return log[0]["loss"], capture.gradients


@pytest.mark.parametrize("published_labels", [False, True])
def test_trainer_accumulated_loss_and_gradients_equal_the_full_batch(published_labels, tmp_path):
    config = tiny_config(**CONFIG)
    items = records(config)
    if published_labels:  # every position labelled: equal token counts, the image loss alone could go wrong
        _, original_ids = tiny_batch(config, batch_size=len(LABELLED), seed=1)
        items = [dict(item, labels=original_ids[i]) for i, item in enumerate(items)]
    expected_loss, expected_gradients = full_batch(config, items)
    for batch_size, accumulation in ((2, 2), (1, 4)):
        loss, gradients = trainer_step(config, items, batch_size, accumulation, tmp_path / f"{batch_size}")
        assert loss == pytest.approx(expected_loss, rel=1e-5), (batch_size, accumulation)
        assert_same_gradients(gradients, expected_gradients)


def test_accelerate_step_accumulated_loss_and_gradients_equal_the_full_batch():
    # The step `run_pretraining_no_trainer.py` runs for each group of micro-batches.
    config = tiny_config(**CONFIG)
    items = records(config)
    expected_loss, expected_gradients = full_batch(config, items)
    accelerator = Accelerator(cpu=True)
    for micro_batches in ([items[:2], items[2:]], [items[:1], items[1:2], items[2:]]):
        model = accelerator.prepare(new_model(config))
        loss, parts = accumulate_gradients(model, [stack(group) for group in micro_batches], accelerator)
        assert loss == pytest.approx(expected_loss, rel=1e-5)
        assert len(parts) == len(micro_batches) and all(set(part) == {"image_loss", "report_loss"} for part in parts)
        gradients = {name: p.grad for name, p in model.named_parameters() if p.grad is not None}
        assert_same_gradients(gradients, expected_gradients)
