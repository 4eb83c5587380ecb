"""examples/run_label_efficiency.py: a tiny grid on the real COVID split, its tables against the per-run files."""

import csv
import importlib.util
import json
import logging
import math

import numpy as np
import pytest
import scipy.stats
import torch
import transformers
from sklearn.metrics import roc_auc_score

from conftest import REPO_ROOT, shared_path, tiny_config
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

    # The difference's interval, recomputed directly with scikit-learn on the same resamples: the variance of the
    # per-seed differences over the 2 seeds plus the bootstrap variance over the test images, Student t with the seeds'
    # degrees of freedom
    difference = next(d for d in result["differences"] if d["fraction"] == 100)
    predictions = {}
    for seed in (0, 1):
        for model in ("a", "b"):
            with open(root / f"runs/{model}/finetune/100pct/seed{seed}/test_predictions.csv", newline="") as file:
                read = list(csv.DictReader(file))
            predictions[model, seed] = np.array([float(r["logit_label"]) for r in read])
            labels = np.array([int(r["label_label"]) for r in read])

    def diff(counts):
        index = np.repeat(np.arange(len(labels)), counts)
        a = np.mean([roc_auc_score(labels[index], predictions["a", s][index]) for s in (0, 1)])
        b = np.mean([roc_auc_score(labels[index], predictions["b", s][index]) for s in (0, 1)])
        return a - b

    rng, replicates = np.random.default_rng(0), []
    while len(replicates) < 200:  # the resamples bootstrap_mean_aucs draws: image counts, 100 resamples at a time
        for counts in rng.multinomial(len(labels), np.full(len(labels), 1 / len(labels)), size=100):
            if labels[counts > 0].min() != labels[counts > 0].max():
                replicates.append(diff(counts))
    replicates = replicates[:200]
    per_seed = [roc_auc_score(labels, predictions["a", s]) - roc_auc_score(labels, predictions["b", s]) for s in (0, 1)]
    seed_part, image_part = np.var(per_seed, ddof=1) / 2, np.var(replicates, ddof=1)
    df = 1  # the seeds' degrees of freedom: 2 seeds - 1
    half = scipy.stats.t.ppf(0.975, df) * np.sqrt(seed_part + image_part)
    assert difference["difference"] == pytest.approx(np.mean(per_seed), abs=1e-12)
    assert difference["df"] == pytest.approx(df) and difference["covers"] == "seeds and test images"
    expected = (np.mean(per_seed) - half, np.mean(per_seed) + half)
    assert (difference["low"], difference["high"]) == pytest.approx(expected)
    assert f"[{difference['low']:+.4f}, {difference['high']:+.4f}]" in markdown
    assert "95% interval over seeds and test images" in markdown and "test images only" not in markdown

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


# ---- intervals ------------------------------------------------------------------------------------------------------


def test_resampled_auc_equals_the_auc_of_the_resampled_images_and_t_quantiles_equal_scipy():
    rng = np.random.default_rng(0)
    labels, scores = rng.integers(0, 2, 40), np.round(rng.normal(size=40), 1)  # rounded: ties
    counts = rng.multinomial(40, np.full(40, 1 / 40), size=30)
    expected = [roc_auc_score(np.repeat(labels, c), np.repeat(scores, c)) for c in counts]
    assert run_label_efficiency.weighted_auc(labels, scores, counts) == pytest.approx(expected, abs=1e-12)
    for df in (1, 2, 2.6, 7, 300):
        for p in (0.9, 0.975, 0.995):
            assert run_label_efficiency.t_quantile(p, df) == pytest.approx(scipy.stats.t.ppf(p, df), rel=1e-7)
    assert run_label_efficiency.t_quantile(0.975, math.inf) == pytest.approx(scipy.stats.norm.ppf(0.975), rel=1e-9)


def test_one_seed_intervals_cover_test_images_only_and_several_seeds_widen_with_their_spread():
    rng = np.random.default_rng(1)
    full = np.array([0.70, 0.74, 0.66])
    replicates = full + 0.01 * rng.standard_normal((500, 3))
    one = run_label_efficiency.run_interval(full[:1], replicates[:, :1], 0.95)
    three = run_label_efficiency.run_interval(full, replicates, 0.95)
    assert one.covers == "test images" and one.df is None
    assert (one.low, one.high) == pytest.approx(tuple(np.quantile(replicates[:, 0], [0.025, 0.975])))
    assert three.covers == "seeds and test images" and three.point == pytest.approx(0.70)
    # the seeds' std 0.04 dominates: close to t(2) * 0.04 / sqrt(3) = 0.099 either side, not a bootstrap's 0.02
    seeds, images = np.var(full, ddof=1) / 3, np.var(replicates.mean(axis=1), ddof=1)
    assert three.df == 2
    assert three.high - three.point == pytest.approx(scipy.stats.t.ppf(0.975, 2) * np.sqrt(seeds + images))
    assert 0.09 < three.high - three.point < 0.11 and three.low == pytest.approx(2 * three.point - three.high)


# Measured on a real grid (benchmarks/label_efficiency_calibration.py's docstring has the command): one tiny MRM,
# 8 seeds, 10 steps, COVID split 1 with 46 test images (30 positive): test AUC 0.4706 ± 0.0616 over the seeds, and
# the runs' scores correlate at 0.545 within a class.
MEASURED = dict(auc=0.4706, spread=0.0616, correlation=0.545, count=46, positives=30)


def load_benchmark(name):
    spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_model_against_itself_is_told_apart_at_most_5_percent_of_the_time_and_by_the_old_interval_more():
    """The calibration: 200 simulated grids of one model under two names, 3 seeds each, a new 400-image test set each
    time, runs fitted to the measured seed spread. The grid's interval may exclude 0 in about 5% of them at most; the
    old one, over the test images alone, does it far more often."""
    calibration = load_benchmark("label_efficiency_calibration")
    labels = np.r_[np.ones(MEASURED["positives"], int), np.zeros(MEASURED["count"] - MEASURED["positives"], int)]
    fitted = calibration.fit(MEASURED["auc"], MEASURED["spread"], MEASURED["correlation"], labels,
                             np.random.default_rng(0))
    found = calibration.simulate(200, 3, fitted, 400, 261, samples=100, confidence=0.95)
    assert found["new"] <= 14, found  # 5% of 200 is 10; binomial noise allows a few more
    assert found["old"] >= 30, found


def test_one_seed_grid_of_three_modes_says_its_interval_covers_test_images_only_and_plots_one_fraction(tmp_path):
    covid = shared_path("data", "covid")
    tiny_config().save_pretrained(tmp_path / "random-config")
    argv = grid_argv(tmp_path, f"a={tiny_checkpoint(tmp_path / 'a', 0)},b=random", covid)
    own = ["--models", argv[1], "--fractions", "100", "--seeds", "0", "--modes", "finetune,lora,linear_probe",
           "--lora_rank", "2", "--random_config", str(tmp_path / "random-config")]
    argv = own + argv[argv.index("--bootstrap_samples"):]
    result = run_label_efficiency.main(argv)
    root = tmp_path / "grid"

    markdown = (root / "results.md").read_text()
    modes = [line[3:] for line in markdown.splitlines() if line.startswith("## ") and "Differences" not in line]
    assert modes == ["linear_probe", "lora", "finetune"]  # the fewest trained parameters first
    assert "## Differences (A − B), one seed: 95% interval over test images only" in markdown
    assert "it does not tell the models apart" in markdown and "excludes 0" not in markdown
    assert {d["covers"] for d in result["differences"]} == {"test images"} and len(result["differences"]) == 3

    lora = root / "runs/a/lora/100pct/seed0"
    assert json.loads((lora / "adapter" / "adapter_config.json").read_text())["r"] == 2
    assert "--lora_rank" in json.loads((lora / "run.json").read_text())["argv"]

    # One fraction: the points sit inside the axes, with bars, not on its edges around one tick
    figure = run_label_efficiency.draw(result["estimates"], 0.95)
    axes = figure.axes[0]
    low, high = axes.get_xlim()
    for container in axes.containers:
        x = container.lines[0].get_xdata()
        assert all(low + 0.25 * (high - low) < value < high - 0.25 * (high - low) for value in x)
        segments = container.lines[2][0].get_segments()
        assert segments and all(abs(s[1][1] - s[0][1]) > 0 for s in segments)  # a bar of some length
    assert len(axes.containers) == 6 and [t.get_text() for t in axes.get_xticklabels()] == ["100%"]


def test_what_would_stop_the_grid_later_stops_it_before_the_first_run(tmp_path):
    covid = shared_path("data", "covid")
    good = tiny_checkpoint(tmp_path / "good", 0)
    root = tmp_path / "grid"

    def argv(models, *extra, test=True):
        arguments = grid_argv(tmp_path, models, covid) + list(extra)
        if not test:
            at = arguments.index("--test_csv")
            del arguments[at:at + 2]
        return arguments

    with pytest.raises(ValueError, match=r"--models bad: expected an MRM checkpoint .*found OSError"):
        run_label_efficiency.main(argv(f"good={good},bad={tmp_path / 'missing'}"))
    with pytest.raises(ValueError, match=r"The grid compares models on the test split: expected one in the csv data "
                                         r"after `--`; found only \['train', 'validation'\]"):
        run_label_efficiency.main(argv(f"good={good}", test=False))
    with pytest.raises(ValueError, match=r"Run .*10pct.*found no published recipe for covid with 10% of the labels"):
        run_label_efficiency.main(argv(f"good={good}", "--recipe", "covid"))  # --fractions 10,100
    assert not (root / "runs").exists()  # no run started
