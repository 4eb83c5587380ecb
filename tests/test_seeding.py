"""Seeded data draws (crops, flips, report masks) keyed by (seed, epoch, sample), and the checkpoints a run resumes from."""

import json

import pytest
import torch
from datasets import DatasetDict
from torch.utils.data import DataLoader

from mrm_hf import MRMImageProcessor
from mrm_hf.checkpoints import publish_checkpoint, reading_checkpoint, resolve_checkpoint, staging_folder
from mrm_hf.data import DataCollatorForMRM, make_demo_records
from mrm_hf.data.seeding import SAMPLE_INDEX, SeededDraws
from mrm_hf.tokenization_mrm import train_report_tokenizer
from mrm_hf.transforms import PretrainingTransform
from pretraining_setup import DataArguments


@pytest.fixture(scope="module")
def records():
    return make_demo_records(8, image_size=32, seed=0)


@pytest.fixture(scope="module")
def tokenizer(records):
    return train_report_tokenizer(records["report"], vocab_size=120)


def prepared(records, tokenizer, seed=0):
    """The train split with the pre-training transform and collator the scripts build, at 16 px."""
    from types import SimpleNamespace

    from pretraining_setup import prepare

    model = SimpleNamespace(config=SimpleNamespace(reconstruction_size=16, report_max_position_embeddings=24))
    split, collator = prepare(
        DatasetDict(train=records), model, MRMImageProcessor(mode="pretraining"), tokenizer, DataArguments(), seed=seed
    )
    return split["train"], collator


def by_sample(dataset, collator, epoch, **loader_options):
    """{sample index: (pixel values, masked ids)} of one epoch through a DataLoader."""
    collator.set_epoch(epoch)
    examples = {}
    for rows in DataLoader(dataset, collate_fn=lambda rows: rows, **loader_options):
        batch = collator(rows)
        for row, example in enumerate(rows):
            examples[example[SAMPLE_INDEX]] = (batch["pixel_values"][row], batch["input_ids"][row])
    assert sorted(examples) == list(range(len(dataset)))
    return examples


def test_seeded_draws_depend_only_on_seed_purpose_epoch_and_sample():
    draws, same = SeededDraws(3), SeededDraws(3)
    first = torch.rand(4, generator=draws.for_sample(5, "crop"))
    assert torch.equal(first, torch.rand(4, generator=same.for_sample(5, "crop")))
    assert not torch.equal(first, torch.rand(4, generator=draws.for_sample(6, "crop")))
    assert not torch.equal(first, torch.rand(4, generator=draws.for_sample(5, "mask")))
    assert not torch.equal(first, torch.rand(4, generator=SeededDraws(4).for_sample(5, "crop")))
    draws.set_epoch(1)
    assert not torch.equal(first, torch.rand(4, generator=draws.for_sample(5, "crop")))
    assert SeededDraws(None).for_sample(5, "crop") is None


def test_seeded_crops_and_masks_change_every_epoch_and_not_with_batching_or_workers(records, tokenizer):
    dataset, collator = prepared(records, tokenizer)
    epoch0 = by_sample(dataset, collator, 0, batch_size=8, shuffle=True)
    again = by_sample(dataset, collator, 0, batch_size=3, num_workers=2)
    epoch1 = by_sample(dataset, collator, 1, batch_size=8)
    for index in range(len(dataset)):
        assert torch.equal(epoch0[index][0], again[index][0]) and torch.equal(epoch0[index][1], again[index][1])
        assert not torch.equal(epoch0[index][0], epoch1[index][0])  # new crop
    assert any(not torch.equal(epoch0[i][1], epoch1[i][1]) for i in range(len(dataset)))  # new masks
    assert not torch.equal(epoch0[0][0], epoch0[1][0])  # samples differ (so do workers' and processes' samples)


def test_collator_masks_each_example_by_its_sample_index(tokenizer, records):
    collator = DataCollatorForMRM(tokenizer, seed=0, max_length=24)
    examples = [{"report": text, SAMPLE_INDEX: i} for i, text in enumerate(records["report"])]
    whole = collator(examples)["input_ids"]
    alone = torch.cat([collator([example])["input_ids"] for example in reversed(examples)]).flip(0)
    assert torch.equal(whole, alone)


def write_checkpoint(folder, files):
    folder.mkdir(parents=True)
    for name, content in files.items():
        (folder / name).write_bytes(content)


TRAINER_FILES = {"trainer_state.json": b"{}", "model.safetensors": b"", "optimizer.pt": b"", "scheduler.pt": b"",
                 "rng_state.pth": b""}  # fmt: skip


def test_last_skips_an_incomplete_newest_checkpoint_and_says_so(tmp_path, caplog):
    write_checkpoint(tmp_path / "checkpoint-4", TRAINER_FILES)
    write_checkpoint(tmp_path / "checkpoint-6", {k: v for k, v in TRAINER_FILES.items() if k != "trainer_state.json"})
    write_checkpoint(tmp_path / "checkpoint-8", {**TRAINER_FILES, "trainer_state.json": b'{"global_st'})
    with caplog.at_level("WARNING", logger="mrm_hf.checkpoints"):
        assert resolve_checkpoint("last", tmp_path, "checkpoint-") == tmp_path / "checkpoint-4"
    assert "skipped the incomplete checkpoint-8 (trainer_state.json does not parse" in caplog.text
    assert "checkpoint-6 (no trainer_state.json)" in caplog.text
    with pytest.raises(FileNotFoundError, match=r"expected a complete checkpoint .*found no trainer_state.json"):
        resolve_checkpoint(str(tmp_path / "checkpoint-6"), tmp_path, "checkpoint-")


def test_a_checkpoint_appears_under_its_name_only_once_complete(tmp_path):
    final = tmp_path / "step_2"
    staging = staging_folder(final)
    staging.mkdir(parents=True)
    (staging / "model.safetensors").write_bytes(b"weights")
    with pytest.raises(FileNotFoundError, match="no step_N folder"):
        resolve_checkpoint("last", tmp_path, "step_")
    publish_checkpoint(staging, final)
    assert (final / "model.safetensors").read_bytes() == b"weights"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step_2"]


def test_a_corrupt_optimizer_file_is_named_on_resume(tmp_path):
    torch.save({"state": {0: torch.zeros(3)}}, tmp_path / "optimizer.pt")
    data = (tmp_path / "optimizer.pt").read_bytes()
    (tmp_path / "optimizer.pt").write_bytes(data[: len(data) // 2])
    json.dump({}, open(tmp_path / "trainer_state.json", "w"))
    with pytest.raises(ValueError, match=r"Cannot resume from .*: expected complete, readable .*found unreadable optimizer\.pt"):
        with reading_checkpoint(tmp_path):
            torch.load(tmp_path / "optimizer.pt", weights_only=True)
