"""examples/run_label_efficiency.py: a tiny grid on the real COVID split, its tables against the per-run files."""

import csv
import json
import logging
import math

import numpy as np
import pytest
import torch
import transformers
from sklearn.metrics import roc_auc_score

from conftest import shared_path, tiny_config
from mrm_hf import MRMForPreTraining


import run_label_efficiency  # noqa: E402
from run_classification import DataArguments, load_data  # noqa: E402


def tiny_checkpoint(folder, seed):
    torch.manual_seed(seed)
    MRMForPreTraining(tiny_config()).save_pretrained(folder)
    return str(folder)


def grid_argv(tmp_path, models, covid):
    return [
        "--models", models, "--fractions", "10,100", "--seeds", "0,1", "--bootstrap_samples", "200",
        "--output_dir", str(tmp_path / "grid"), "--",
        "--dataset", "csv", "--train_csv", str(covid / "covid1_train.csv"), "--validation_fraction", "0.2",
        "--test_csv", str(covid / "covid1_val.csv"), "--label_columns", "label", "--max_steps", "2",
        "--eval_strategy", "steps", "--eval_steps", "2", "--save_strategy", "steps", "--save_steps", "2",
        "--per_device_train_batch_size", "8", "--per_device_eval_batch_size", "64", "--learning_rate", "0.01",
        "--warmup_steps", "0", "--use_cpu",
    ]  # fmt: skip


def test_grid_tables_match_the_runs_and_a_second_invocation_skips_them(tmp_path, caplog):
    covid = shared_path("data", "covid")
    tiny_config().save_pretrained(tmp_path / "random-config")  # `random`: a from-scratch model of this config
    models = f"a={tiny_checkpoint(tmp_path / 'a', 0)},b=random"
    argv = grid_argv(tmp_path, models, covid)
    argv[argv.index("--output_dir"):argv.index("--output_dir")] = ["--random_config", str(tmp_path / "random-config")]
    result = run_label_efficiency.main(argv)
    root = tmp_path / "grid"

    # results.csv: one row per run, its values those of the run's own test_results.json
    with open(root / "results.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    assert len(rows) == 2 * 2 * 2
    per_run = {}
    for row in rows:
        tested = json.loads((root / row["run_dir"] / "test_results.json").read_text())
        assert float(row["test_mean_auc"]) == pytest.approx(tested["test_mean_auc"], abs=0, rel=1e-12)
        per_run[row["model"], int(row["fraction"]), int(row["seed"])] = tested["test_mean_auc"]

    # The 10% runs trained on a tenth of the training images, drawn anew with each seed
    run_json = json.loads((root / "runs/a/finetune/10pct/seed0/run.json").read_text())
    assert run_json["results"]["test_samples"] == 46
    train = json.loads((root / "runs/a/finetune/10pct/seed0/train_results.json").read_text())
    train_full = json.loads((root / "runs/a/finetune/100pct/seed0/train_results.json").read_text())
    assert train["train_samples"] == round(train_full["train_samples"] * 0.1)

    # results.md and the summary: mean and sample std over the seeds of the per-run values
    markdown = (root / "results.md").read_text()
    for model in ("a", "b"):
        for fraction in (10, 100):
            values = [per_run[model, fraction, seed] for seed in (0, 1)]
            mean, std, n = result["summary"][model, "finetune", fraction]
            assert (mean, n) == (pytest.approx(np.mean(values)), 2)
            assert std == pytest.approx(np.std(values, ddof=1))
            assert f"{np.mean(values):.4f} ± {np.std(values, ddof=1):.4f} (n=2)" in markdown

    # The paired bootstrap interval, recomputed directly with scikit-learn on the same resamples
    difference = next(d for d in result["differences"] if d["fraction"] == 100)
    predictions = {}
    for seed in (0, 1):
        for model in ("a", "b"):
            with open(root / f"runs/{model}/finetune/100pct/seed{seed}/test_predictions.csv", newline="") as file:
                read = list(csv.DictReader(file))
            predictions[model, seed] = np.array([float(r["logit_label"]) for r in read])
            labels = np.array([int(r["label_label"]) for r in read])

    def diff(index):
        a = np.mean([roc_auc_score(labels[index], predictions["a", s][index]) for s in (0, 1)])
        b = np.mean([roc_auc_score(labels[index], predictions["b", s][index]) for s in (0, 1)])
        return a - b

    rng, replicates = np.random.default_rng(0), []
    while len(replicates) < 200:
        index = rng.integers(0, len(labels), len(labels))
        if labels[index].min() != labels[index].max():
            replicates.append(diff(index))
    assert difference["difference"] == pytest.approx(diff(np.arange(len(labels))), abs=1e-12)
    assert (difference["low"], difference["high"]) == pytest.approx(tuple(np.quantile(replicates, [0.025, 0.975])))
    assert f"[{difference['low']:+.4f}, {difference['high']:+.4f}]" in markdown

    # The figure and the environment
    assert (root / "label_efficiency.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    environment = json.loads((root / "environment.json").read_text())
    assert environment["packages"]["transformers"] == transformers.__version__
    assert len(environment["git_commit"]) == 40  # this checkout's commit
    assert environment["command"][-len(argv):] == argv

    # A second invocation trains nothing: every run is finished
    stamps = {p: p.stat().st_mtime_ns for p in root.glob("runs/*/*/*/*/test_results.json")}
    with caplog.at_level(logging.INFO):
        run_label_efficiency.main(argv)
    assert "Skipping 8 finished runs of 8." in caplog.text
    assert {p: p.stat().st_mtime_ns for p in root.glob("runs/*/*/*/*/test_results.json")} == stamps


def test_csv_label_fraction_is_a_seeded_subset_of_the_training_images():
    covid = shared_path("data", "covid")

    def train_paths(fraction, seed):
        args = DataArguments(dataset="csv", train_csv=str(covid / "covid1_train.csv"),
                             validation_csv=str(covid / "covid1_val.csv"), label_columns="label",
                             label_fraction=fraction)
        return load_data(args, seed)["train"]["image_path"]

    full = train_paths(100, 0)
    ten = train_paths(10, 0)
    assert len(ten) == round(len(full) / 10) and set(ten) <= set(full)
    assert train_paths(10, 0) == ten and set(train_paths(10, 1)) != set(ten)


def test_grid_refuses_arguments_it_sets_for_each_run(tmp_path):
    with pytest.raises(ValueError, match=r"The grid sets \['--seed'\] for each run"):
        run_label_efficiency.parse_arguments(["--models", "m", "--output_dir", str(tmp_path), "--", "--seed", "3"])
    with pytest.raises(ValueError, match=r"--fractions: expected values from \[1, 10, 100\]; found '5'"):
        run_label_efficiency.parse_arguments(["--models", "m", "--fractions", "5", "--output_dir", str(tmp_path)])
    assert math.isnan(run_label_efficiency.mean_auc(np.zeros((4, 1), int), np.arange(4.0)[:, None]))
