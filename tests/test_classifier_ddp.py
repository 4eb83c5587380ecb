"""The classifier under DistributedDataParallel without `find_unused_parameters` (what Trainer picks with
gradient checkpointing): every parameter it owns must get a gradient."""

import os
import subprocess
import sys

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from conftest import REPO_ROOT, shared_path, tiny_config
from torch.nn.parallel import DistributedDataParallel

from mrm_hf import MRMForImageClassification, MRMForPreTraining
from mrm_hf.data import NIH_LABELS


def test_every_classifier_parameter_gets_a_gradient():
    torch.manual_seed(0)
    model = MRMForImageClassification(tiny_config(num_labels=3, problem_type="multi_label_classification")).train()
    model(torch.randn(2, 3, 32, 32), labels=torch.ones(2, 3)).loss.backward()
    without = [name for name, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert without == []
    assert not any(name.startswith("image_encoder.layernorm.") for name, _ in model.named_parameters())


def test_pretraining_checkpoint_loads_into_the_classifier_without_its_final_layernorm(tmp_path, caplog):
    torch.manual_seed(0)
    MRMForPreTraining(tiny_config()).save_pretrained(tmp_path)
    classifier, info = MRMForImageClassification.from_pretrained(tmp_path, num_labels=2, output_loading_info=True)
    assert info["unexpected_keys"] == [] or not any("layernorm" in k for k in info["unexpected_keys"])
    assert "image_encoder.layernorm" not in " ".join(caplog.messages)


def _ddp_steps(rank: int, world_size: int, init_file: str, queue):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        torch.manual_seed(0)
        config = tiny_config(num_labels=3, problem_type="multi_label_classification", drop_path_rate=0.1)
        model = DistributedDataParallel(MRMForImageClassification(config).train(), find_unused_parameters=False)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        generator = torch.Generator().manual_seed(rank)
        for _ in range(3):  # DDP names unused parameters at the second step
            loss = model(torch.randn(2, 3, 32, 32, generator=generator), labels=torch.ones(2, 3)).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
        queue.put((rank, float(loss)))
    finally:
        dist.destroy_process_group()


def test_ddp_steps_without_find_unused_parameters(tmp_path):
    context = mp.get_context("spawn")
    queue = context.SimpleQueue()
    mp.start_processes(_ddp_steps, args=(2, str(tmp_path / "init"), queue), nprocs=2, start_method="spawn")
    results = dict(queue.get() for _ in range(2))
    assert sorted(results) == [0, 1] and all(torch.isfinite(torch.tensor(v)) for v in results.values())


def test_two_process_gloo_fine_tuning_with_gradient_checkpointing(tmp_path):
    data = shared_path("data", "nih14")
    torch.manual_seed(0)
    MRMForPreTraining(tiny_config()).save_pretrained(tmp_path / "tiny")
    val = str(data / "nih14_64px_val.csv")
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone",
        str(REPO_ROOT / "examples" / "run_classification.py"),
        "--model_name_or_path", str(tmp_path / "tiny"), "--dataset", "csv", "--train_csv", val,
        "--validation_csv", val, "--label_columns", ",".join(NIH_LABELS), "--gradient_checkpointing",
        "--output_dir", str(tmp_path / "out"), "--max_steps", "3", "--eval_strategy", "steps", "--eval_steps", "3",
        "--save_strategy", "steps", "--save_steps", "3", "--per_device_train_batch_size", "4",
        "--per_device_eval_batch_size", "32", "--learning_rate", "0.05", "--use_cpu", "--disable_tqdm", "true",
        "--dataloader_num_workers", "0", "--log_level", "info",
    ]  # fmt: skip
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", OMP_NUM_THREADS="1",
               PYTHONPATH=str(REPO_ROOT))  # fmt: skip
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    printed = result.stdout + result.stderr
    assert result.returncode == 0, printed[-4000:]
    # Two processes of 4: before the classifier lost its unused LayerNorm, DDP stopped at the second step.
    assert "Total train batch size (w. parallel, distributed & accumulation) = 8" in printed, printed[-3000:]
    assert (tmp_path / "out" / "model.safetensors").is_file()
    model = MRMForImageClassification.from_pretrained(tmp_path / "out")
    assert all(torch.isfinite(p).all() for p in model.parameters())
