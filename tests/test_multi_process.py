"""Each engine on 2 CPU processes (gloo, loopback), as CI runs it: DDP through both pre-training scripts and FSDP2
through the Trainer script. One run of each engine, checkpointing every 2 of its 4 steps, and one resumed from its
step-2 checkpoint serve every test of that engine: the resume reproduces the straight run's losses and weights, the
checkpoints hold what a resume needs, the final folder loads. DeepSpeed ZeRO-2 is opt-in: its test runs where
deepspeed is installed.

accelerate 1.16 never enables FSDP on a CPU run (`AcceleratorState` turns it on only for accelerator device types);
the FSDP2 runs go through `tests/fsdp_on_cpu.py`, which turns it on there and changes nothing else.
"""

import json
import math
import os
import shutil
import sys
from pathlib import Path

import pytest
import torch
from huggingface_hub import ModelCard
from PIL import Image
from safetensors.torch import load_file
from transformers import AutoModelForPreTraining, AutoTokenizer

from conftest import REPO_ROOT, run_without_mrm_hf
from mrm_hf import MRMForPreTraining
from test_pretraining_scripts import ACCELERATE, EXAMPLES, TINY, launch


STEPS = ["--max_steps", "4", "--save_steps", "2", "--log_level", "info"]
FSDP_CONFIG = EXAMPLES / "configs" / "accelerate_fsdp.yaml"
FSDP_ON_CPU = REPO_ROOT / "tests" / "fsdp_on_cpu.py"
TWO_PROCESSES = [*ACCELERATE, "--num_processes", "2"]
ENGINES = {
    # docs/multi-process.md's CPU command: several processes on gloo need --multi_gpu with the scripts' --use_cpu.
    "ddp-trainer": [*TWO_PROCESSES, "--multi_gpu", str(EXAMPLES / "run_pretraining.py")],
    "ddp-accelerate": [*TWO_PROCESSES, "--multi_gpu", str(EXAMPLES / "run_pretraining_no_trainer.py")],
    # The shipped FSDP2 config (full shard, one MRMLayer / MRMReportLayer per unit), in fp32 on 2 processes.
    "fsdp-trainer": [*TWO_PROCESSES, "--config_file", str(FSDP_CONFIG), str(FSDP_ON_CPU),
                     str(EXAMPLES / "run_pretraining.py")],  # fmt: skip
    # The shipped ZeRO-2 config in fp32 on 2 processes: DeepSpeed's CPU accelerator, gloo named (without a backend,
    # accelerate 1.16 sets each process up as the only one), no --use_cpu (under it accelerate leaves DeepSpeed off).
    "deepspeed-trainer": ["env", "DS_ACCELERATOR=cpu", *TWO_PROCESSES, "--config_file",
                          str(EXAMPLES / "configs" / "accelerate_deepspeed_zero2.yaml"),
                          str(EXAMPLES / "run_pretraining.py"), "--ddp_backend", "gloo"],  # fmt: skip
}
CHECKPOINT = {"ddp-trainer": "checkpoint-", "ddp-accelerate": "step_", "fsdp-trainer": "checkpoint-",
              "deepspeed-trainer": "checkpoint-"}  # fmt: skip
# The Trainer runs share the demo's fixed vocabulary, so that DDP and FSDP train the same model on the same ids
# (tokenizers does not train the same WordPiece vocabulary twice, huggingface/tokenizers#1794); the Accelerate loop's
# run trains one on the reports.
DEMO_VOCABULARY = ["--tokenizer_name", "demo"]
TOKENIZER = {"ddp-trainer": DEMO_VOCABULARY, "ddp-accelerate": [], "fsdp-trainer": DEMO_VOCABULARY,
             "deepspeed-trainer": DEMO_VOCABULARY}  # fmt: skip


def step_losses(engine: str, output_dir: Path, printed: str) -> dict[int, dict]:
    """The training logs of a run by step: Trainer's log history, or the dicts the Accelerate loop printed."""
    if engine.endswith("trainer"):
        history = json.loads((output_dir / "trainer_state.json").read_text())["log_history"]
        return {entry["step"]: entry for entry in history if "loss" in entry}
    logs = [eval(line) for line in printed.splitlines() if line.startswith("{'loss'")]  # noqa: S307 (our own dicts)
    first = 5 - len(logs)
    return {first + i: entry for i, entry in enumerate(logs)}


class Run:
    """A straight run of an engine and one resumed from its step-2 checkpoint (`--resume_from_checkpoint last`)."""

    def __init__(self, engine: str, root: Path):
        self.engine, self.prefix = engine, CHECKPOINT[engine]
        self.straight, self.resumed = root / "straight", root / "resumed"
        tiny = [a for a in TINY if a != "--use_cpu"] if engine.startswith("deepspeed") else TINY
        command = [*ENGINES[engine], *tiny, *STEPS, *TOKENIZER[engine]]
        self.printed = launch([*command, "--output_dir", str(self.straight)], root)
        self.resumed.mkdir()  # as a run killed after its step-2 checkpoint left it
        shutil.copytree(self.straight / f"{self.prefix}2", self.resumed / f"{self.prefix}2")
        resume = ["--output_dir", str(self.resumed), "--resume_from_checkpoint", "last"]
        self.printed_resumed = launch([*command, *resume], root)
        self.losses = step_losses(engine, self.straight, self.printed)
        self.losses_resumed = step_losses(engine, self.resumed, self.printed_resumed)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    made = {}

    def run(engine: str) -> Run:
        if engine not in made:
            made[engine] = Run(engine, tmp_path_factory.mktemp(engine))
        return made[engine]

    return run


def assert_resumes_exactly(run: Run) -> None:
    assert sorted(run.losses) == [1, 2, 3, 4], run.printed[-3000:]
    assert all(math.isfinite(run.losses[step]["loss"]) for step in run.losses)
    # Same weights, optimizer state, schedule, data order, crops, masks and noise: the same losses and weights.
    assert [run.losses_resumed[step] for step in (3, 4)] == [run.losses[step] for step in (3, 4)]
    a, b = load_file(run.straight / "model.safetensors"), load_file(run.resumed / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def assert_final_folder_loads(folder: Path) -> MRMForPreTraining:
    """The final folder: fp32 weights that AutoModelForPreTraining loads, the processor and tokenizer, figure, card."""
    model = AutoModelForPreTraining.from_pretrained(folder)
    assert isinstance(model, MRMForPreTraining) and model.dtype == torch.float32
    assert {tensor.dtype for tensor in load_file(folder / "model.safetensors").values()} == {torch.float32}
    assert all(torch.isfinite(p).all() for p in model.parameters())
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert len(tokenizer) <= model.config.report_vocab_size and tokenizer("left effusion")["input_ids"][0] == 2
    assert (folder / "processor_config.json").is_file()
    figure = Image.open(folder / "reconstruction.png")
    assert figure.format == "PNG" and figure.height > 2 * model.config.reconstruction_size
    assert "synthetic" in ModelCard.load(folder / "README.md").text
    return model


@pytest.mark.parametrize("engine", ["ddp-trainer", "ddp-accelerate"])
def test_ddp_two_processes_resume_exactly_and_save_a_loadable_folder(engine, runs):
    run = runs(engine)
    if engine == "ddp-trainer":  # the batch of 8: 4 per process, no accumulation
        assert "Gradient Accumulation steps = 1" in run.printed, run.printed[-3000:]
    else:
        assert "Num processes: 2" in run.printed and "Backend: gloo" in run.printed, run.printed[-3000:]
        # One vocabulary, trained by the main process only: the other reads it; the resumed run reads its checkpoint's.
        assert run.printed.count("Training a 200-token WordPiece vocabulary") == 1, run.printed[-3000:]
        assert "WordPiece vocabulary" not in run.printed_resumed
    assert_resumes_exactly(run)
    assert_final_folder_loads(run.straight)


def test_fsdp2_trainer_shards_resumes_exactly_and_saves_the_full_model(runs):
    run = runs("fsdp-trainer")
    assert "Gradient Accumulation steps = 1" in run.printed, run.printed[-3000:]
    checkpoint = run.straight / "checkpoint-2"
    # Sharded: each process wrote its part of the weights and of the optimizer state (SHARDED_STATE_DICT) ...
    for part in ("pytorch_model_fsdp_0", "optimizer_0"):
        assert sorted(p.name for p in (checkpoint / part).glob("*.distcp")) == ["__0_0.distcp", "__1_0.distcp"]
    # ... beside the processor and tokenizer that a resume reads.
    assert {"tokenizer.json", "processor_config.json"} <= {p.name for p in checkpoint.iterdir()}
    assert_resumes_exactly(run)

    model = assert_final_folder_loads(run.straight)
    config = json.loads((run.straight / "config.json").read_text())
    assert config["architectures"] == ["MRMForPreTraining"]
    assert config["auto_map"]["AutoModelForPreTraining"] == "modeling_mrm.MRMForPreTraining"
    # No file of torch's FSDP wrapper anywhere in the run's folders.
    assert not [p for p in run.straight.rglob("*.py") if "fsdp" in p.name], sorted(run.straight.rglob("*.py"))
    # Sharding changes where the weights live, not the training: the losses of the same run under DDP.
    ddp = runs("ddp-trainer").losses
    for step in run.losses:
        assert run.losses[step]["loss"] == pytest.approx(ddp[step]["loss"], rel=1e-5)
    # The saved code stands alone.
    code = f"""
import torch
from transformers import AutoModelForPreTraining
model = AutoModelForPreTraining.from_pretrained({str(run.straight)!r}, trust_remote_code=True)
assert type(model).__name__ == "MRMForPreTraining" and "mrm_hf" not in type(model).__module__, type(model).__module__
print(sum(p.double().sum().item() for p in model.parameters()))
"""
    total = float(run_without_mrm_hf(code, run.straight.parent).strip().splitlines()[-1])
    assert total == pytest.approx(sum(p.double().sum().item() for p in model.parameters()), rel=1e-12)


@pytest.fixture
def fresh_accelerate_state():
    """Accelerate's process-wide state, reset after the test: the test sets it up under a launcher's variables."""
    from accelerate.state import AcceleratorState

    yield
    AcceleratorState._reset_state(reset_partial_state=True)


@pytest.mark.parametrize("script", ["run_pretraining", "run_pretraining_no_trainer"])
def test_fsdp_config_on_an_unsharded_run_stops_it(script, tmp_path, monkeypatch, fresh_accelerate_state):
    # What `accelerate launch --config_file accelerate_fsdp.yaml` sets; on a CPU accelerate leaves the run unsharded.
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    monkeypatch.setenv("FSDP_VERSION", "2")
    expected = "found a NO run" if script == "run_pretraining" else "found FSDP, which the Accelerate loop does not"
    with pytest.raises(RuntimeError, match=f"FSDP: expected .*; {expected}"):
        __import__(script).main([*TINY, "--output_dir", str(tmp_path / "out"), "--tokenizer_name", "demo"])
    assert not (tmp_path / "out" / "model.safetensors").exists()


@pytest.mark.parametrize("name, distributed_type", [("FSDP", "MULTI_CPU"), ("DEEPSPEED", "MULTI_CPU"), ("FSDP", "NO")])
def test_sharding_requested_but_not_running_names_why(name, distributed_type, monkeypatch):
    from types import SimpleNamespace

    from accelerate.utils import DistributedType

    from mrm_hf.training import check_engine

    monkeypatch.setenv(f"ACCELERATE_USE_{name}", "true")
    accelerator = SimpleNamespace(distributed_type=DistributedType[distributed_type], num_processes=1)
    why = "not on a CPU run" if distributed_type == "MULTI_CPU" else "a single process"
    with pytest.raises(RuntimeError, match=f"found a {DistributedType[distributed_type].value} run .*{why}"):
        check_engine(accelerator)
    check_engine(SimpleNamespace(distributed_type=DistributedType[name], num_processes=1))  # sharded as asked: runs


def test_processes_that_would_each_train_alone_stop(monkeypatch):
    from types import SimpleNamespace

    from accelerate.utils import DistributedType

    from mrm_hf.training import check_engine

    # accelerate 1.16 under DeepSpeed on CPUs without --ddp_backend: each of 2 processes sets up as the only one.
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(RuntimeError, match="started 2 processes .* found accelerate setting up 1 .*--ddp_backend gloo"):
        check_engine(SimpleNamespace(distributed_type=DistributedType.DEEPSPEED, num_processes=1))


def test_deepspeed_zero2_trainer_shards_the_optimizer_resumes_exactly_and_saves_the_full_model(runs):
    pytest.importorskip("deepspeed", reason="opt-in: DeepSpeed ZeRO-2 runs where deepspeed is installed (docs/multi-process.md)")
    run = runs("deepspeed-trainer")
    assert "Gradient Accumulation steps = 1" in run.printed, run.printed[-3000:]
    # ZeRO-2: each process holds its part of the optimizer state.
    optimizer_parts = sorted(p.name for p in (run.straight / "checkpoint-2").rglob("zero_pp_rank_*_optim_states.pt"))
    assert optimizer_parts == [f"zero_pp_rank_{rank}_mp_rank_00_optim_states.pt" for rank in (0, 1)]
    assert_resumes_exactly(run)
    assert_final_folder_loads(run.straight)
    ddp = runs("ddp-trainer").losses
    for step in run.losses:
        assert run.losses[step]["loss"] == pytest.approx(ddp[step]["loss"], rel=1e-5)
