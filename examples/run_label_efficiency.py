#!/usr/bin/env python
"""Label-efficiency tables the way the paper reports them: models x label fractions x seeds, with intervals and a plot.

Every run is `examples/run_classification.py` itself, called in this process with its own command line; this script
only loops over the grid and summarises. What follows `--` is passed to every run unchanged (the dataset, its splits,
the recipe, the step budget); the grid adds `--model_name_or_path` (or `--model_type mrm` for `random`),
`--label_fraction`, `--seed`, `--linear_probe` and `--output_dir`.

The paper's NIH / CheXpert / RSNA tables (1, 10 and 100% of the labels, the published recipes), from the converted
published MRM against a from-scratch ViT-B:

    python -m mrm_hf.convert --checkpoint MRM.pth --output-dir mrm-base
    python examples/run_label_efficiency.py --models mrm=mrm-base,random --fractions 1,10,100 --seeds 0,1,2 \
        --output_dir tables/nih -- --dataset nih --data_dir /data/nih-chestxray14 --split_dir DatasetsSplits \
        --recipe nih
    # CheXpert: -- --dataset chexpert --data_dir /data --split_dir DatasetsSplits --recipe chexpert
    # RSNA:     -- --dataset rsna --data_dir /data/rsna --split_dir DatasetsSplits --recipe rsna

MRM against image-only pre-training on one's own data (two run_pretraining.py outputs, one with --image_only), a
linear probe and full fine-tuning, label fractions drawn from the training CSV with each seed:

    python examples/run_label_efficiency.py --models mrm=out/mrm,image-only=out/mae,random --fractions 1,10,100 \
        --seeds 0,1,2 --modes linear_probe,finetune --output_dir tables/mine -- --dataset csv \
        --train_csv train.csv --validation_csv val.csv --test_csv test.csv --label_columns a,b,c --max_steps 2000

`random` is a from-scratch model of `--random_config` (a folder or Hub id with an MRM config; default: the published
ViT-B/16). Finished runs (a `run.json` in their folder) are skipped, so an interrupted grid continues where it stopped.
Written to `--output_dir`: `results.csv` (a row per run: per-class and mean test AUC), `results.md` (mean ± std over
seeds per model and fraction; for each pair of models, the paired difference of mean AUC with a bootstrap interval
over the test images), `label_efficiency.png`, and `environment.json` (package versions, git commit, command).
"""

import argparse
import contextlib
import importlib.util
import csv
import itertools
import json
import logging
import math
import os
import platform
import subprocess
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from mrm_hf.metric_modules.roc_auc.roc_auc import binary_roc_auc  # the pure function behind the `roc_auc` metric
from mrm_hf.utils import setup_logging

import run_classification  # the fine-tuning script beside this one: each run is exactly what it does


logger = logging.getLogger(__name__)
HERE = Path(__file__).resolve().parent
MODES = ("finetune", "linear_probe")
RANDOM = "random"


# ---- the grid --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    model: str
    mode: str
    fraction: int
    seed: int

    def folder(self, root: Path) -> Path:
        return root / "runs" / self.model / self.mode / f"{self.fraction}pct" / f"seed{self.seed}"


def parse_models(text: str) -> dict[str, str]:
    """`name=path,path2,random` as {name: path}; a bare path is named after its folder."""
    models = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, _, path = item.rpartition("=")
        name = name or (RANDOM if path == RANDOM else Path(path.rstrip("/")).name)
        if name in models:
            raise ValueError(f"--models: expected distinct model names; found {name!r} twice in {text!r}.")
        models[name] = path
    if not models:
        raise ValueError(f"--models: expected at least one model; found {text!r}.")
    return models


def parse_ints(text: str, option: str, allowed: tuple[int, ...] | None = None) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ValueError(f"{option}: expected comma-separated integers; found {text!r}.") from None
    if not values or (allowed and any(v not in allowed for v in values)):
        raise ValueError(f"{option}: expected values from {list(allowed or [])}; found {text!r}.")
    return values


def run_argv(run: Run, model_path: str, root: Path, passthrough: list[str], random_config: str | None) -> list[str]:
    """The fine-tuning script's command line for one run of the grid."""
    if model_path == RANDOM:
        model = ["--model_type", "mrm", *(["--config_name", random_config] if random_config else [])]
    else:
        model = ["--model_name_or_path", model_path]
    return [
        *passthrough, *model, "--label_fraction", str(run.fraction), "--seed", str(run.seed),
        *(["--linear_probe"] if run.mode == "linear_probe" else []), "--output_dir", str(run.folder(root)),
        "--report_to", "none", "--disable_tqdm", "true",
    ]  # fmt: skip


def run_grid(runs: list[Run], models: dict[str, str], root: Path, passthrough: list[str], random_config: str | None):
    """Run every unfinished run through run_classification.main; a finished one has its `run.json`."""
    todo = [run for run in runs if not (run.folder(root) / "run.json").is_file()]
    if len(todo) < len(runs):
        logger.info("Skipping %d finished runs of %d.", len(runs) - len(todo), len(runs))
    with tqdm(total=len(runs), initial=len(runs) - len(todo), desc="label-efficiency grid", unit="run") as bar:
        for run in todo:
            bar.set_postfix_str(f"{run.model} {run.mode} {run.fraction}% seed {run.seed}")
            argv = run_argv(run, models[run.model], root, passthrough, random_config)
            results = run_classification.main(argv)
            if "test_mean_auc" not in results:
                raise ValueError(f"Expected test results from {run.folder(root)} (the grid compares models on the "
                                 "test split); found none: pass a dataset with a test split after `--`.")
            record = {**vars(run), "model_path": models[run.model], "argv": argv, "results": results}
            temporary = run.folder(root) / "run.json.tmp"
            temporary.write_text(json.dumps(record, indent=2))
            temporary.replace(run.folder(root) / "run.json")  # written last, at once: its presence means finished
            bar.update()


# ---- the summary -----------------------------------------------------------------------------------------------------


def read_predictions(folder: Path) -> tuple[list[str], np.ndarray, np.ndarray, list[str]]:
    """(image paths, labels (N, C), scores (N, C), class names) of a run's `test_predictions.csv`.

    Single-label runs (one `label` column of class ids) become one-vs-rest 0/1 columns, scored by the logits minus
    their log-sum-exp (the log-softmax, which ranks like the softmax), and with two classes only class 1 is kept, as
    the fine-tuning script's metric does.
    """
    with open(folder / "test_predictions.csv", newline="", encoding="utf-8") as file:
        rows = list(csv.DictReader(file))
    if not rows:
        raise ValueError(f"Expected test predictions in {folder / 'test_predictions.csv'}; found no rows.")
    classes = [key[len("logit_"):] for key in rows[0] if key.startswith("logit_")]
    logits = np.array([[float(row[f"logit_{name}"]) for name in classes] for row in rows])
    paths = [row["image_path"] for row in rows]
    if "label" in rows[0]:
        ids = np.array([int(row["label"]) for row in rows])
        labels = (ids[:, None] == np.arange(len(classes))[None]).astype(int)
        shifted = logits - logits.max(axis=1, keepdims=True)
        scores = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        if len(classes) == 2:
            labels, scores, classes = labels[:, 1:], scores[:, 1:], classes[1:]
        return paths, labels, scores, classes
    labels = np.array([[int(row[f"label_{name}"]) for name in classes] for row in rows])
    return paths, labels, logits, classes


def mean_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Mean of the defined per-class AUCs, as the `roc_auc` metric reports it; NaN when no class has both labels.

    The metric's pure function, not `evaluate`'s `compute`, since a bootstrap calls it thousands of times.
    """
    aucs = [binary_roc_auc(labels[:, column], scores[:, column]) for column in range(labels.shape[1])]
    defined = [auc for auc in aucs if not math.isnan(auc)]
    return float(np.mean(defined)) if defined else math.nan


def paired_bootstrap(labels: np.ndarray, scores_a: list[np.ndarray], scores_b: list[np.ndarray], samples: int,
                     confidence: float, seed: int = 0) -> tuple[float, float, float]:
    """Difference of mean AUC (A - B, each averaged over its seeds) with a percentile bootstrap interval.

    Both models are scored on the same resampled test images in each replicate, which is what makes the difference
    paired. Replicates in which no class has both labels (no AUC is defined) are drawn again.
    """
    def difference(index):
        a = np.mean([mean_auc(labels[index], s[index]) for s in scores_a])
        b = np.mean([mean_auc(labels[index], s[index]) for s in scores_b])
        return a - b

    rng = np.random.default_rng(seed)
    count = labels.shape[0]
    point = difference(np.arange(count))
    replicates = []
    while len(replicates) < samples:
        value = difference(rng.integers(0, count, count))
        if not math.isnan(value):
            replicates.append(value)
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(replicates, [tail, 1.0 - tail])
    return float(point), float(low), float(high)


def collect(runs: list[Run], root: Path) -> list[dict]:
    """One row per finished run: its grid position and every test metric of its `test_results.json`."""
    rows = []
    for run in runs:
        record = json.loads((run.folder(root) / "run.json").read_text())
        metrics = json.loads((run.folder(root) / "test_results.json").read_text())
        test = {k: v for k, v in metrics.items() if k.startswith("test_") and "auc" in k}
        rows.append({**vars(run), "model_path": record["model_path"], **test,
                     "run_dir": str(run.folder(root).relative_to(root))})
    return rows


def write_csv(rows: list[dict], path: Path) -> None:
    columns = list(dict.fromkeys(key for row in rows for key in row))
    with open(path, "w", newline="", encoding="utf-8") as file:
        writer = csv.DictWriter(file, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def summarise(rows: list[dict]) -> dict[tuple[str, str, int], tuple[float, float, int]]:
    """(model, mode, fraction) -> (mean, sample std, number of seeds) of the test mean AUC."""
    groups = {}
    for row in rows:
        groups.setdefault((row["model"], row["mode"], row["fraction"]), []).append(row["test_mean_auc"])
    summary = {}
    for key, values in groups.items():
        values = np.array([math.nan if v is None else v for v in values], dtype=np.float64)
        std = float(np.std(values, ddof=1)) if len(values) > 1 else math.nan
        summary[key] = (float(np.mean(values)), std, len(values))
    return summary


def pair_differences(runs: list[Run], root: Path, samples: int, confidence: float) -> list[dict]:
    """For each mode and fraction, every pair of models: the paired bootstrap difference of their mean test AUC."""
    predictions = {run: read_predictions(run.folder(root)) for run in runs}
    results = []
    cells = sorted({(run.mode, run.fraction) for run in runs}, key=lambda c: (MODES.index(c[0]), c[1]))
    models = list(dict.fromkeys(run.model for run in runs))
    for mode, fraction in cells:
        for model_a, model_b in itertools.combinations(models, 2):
            side = {m: sorted((r for r in runs if (r.model, r.mode, r.fraction) == (m, mode, fraction)),
                              key=lambda r: r.seed) for m in (model_a, model_b)}
            if not side[model_a] or not side[model_b]:
                continue
            reference = predictions[side[model_a][0]]
            for run in side[model_a] + side[model_b]:
                if predictions[run][0] != reference[0] or not np.array_equal(predictions[run][1], reference[1]):
                    raise ValueError(f"Expected every run of one comparison to be tested on the same images; "
                                     f"{run.folder(root)} was tested on others than {side[model_a][0].folder(root)}.")
            point, low, high = paired_bootstrap(
                reference[1], [predictions[r][2] for r in side[model_a]], [predictions[r][2] for r in side[model_b]],
                samples, confidence,
            )
            results.append({"mode": mode, "fraction": fraction, "model_a": model_a, "model_b": model_b,
                            "difference": point, "low": low, "high": high, "test_images": len(reference[0])})
    return results


def write_markdown(summary, differences, path: Path, confidence: float, samples: int) -> None:
    def cell(value):
        mean, std, n = value
        return f"{mean:.4f}" + (f" ± {std:.4f}" if not math.isnan(std) else "") + f" (n={n})"

    fractions = sorted({key[2] for key in summary})
    lines = ["# Label efficiency: test mean AUC", "",
             "Mean ± sample standard deviation over seeds (n = number of seeds) of each run's test mean AUC.", ""]
    for mode in [m for m in MODES if any(key[1] == m for key in summary)]:
        lines += [f"## {mode}", "", "| model | " + " | ".join(f"{f}% labels" for f in fractions) + " |",
                  "|---|" + "---|" * len(fractions)]
        for model in dict.fromkeys(key[0] for key in summary):
            cells = [cell(summary[model, mode, f]) if (model, mode, f) in summary else "" for f in fractions]
            lines.append(f"| {model} | " + " | ".join(cells) + " |")
        lines.append("")
    if differences:
        lines += [f"## Paired differences (A − B), {confidence:.0%} bootstrap interval", "",
                  f"Each model's mean AUC averaged over its seeds; {samples} bootstrap resamples of the test images, "
                  "the same resample for both models. An interval that excludes 0 is a difference this test set can "
                  "tell from noise.", "",
                  "| mode | labels | A | B | A − B | interval | test images |", "|---|---|---|---|---|---|---|"]
        for d in differences:
            lines.append(f"| {d['mode']} | {d['fraction']}% | {d['model_a']} | {d['model_b']} | "
                         f"{d['difference']:+.4f} | [{d['low']:+.4f}, {d['high']:+.4f}] | {d['test_images']} |")
        lines.append("")
    path.write_text("\n".join(lines), encoding="utf-8")


def plot(summary, path: Path) -> None:
    """Mean test AUC against the label fraction (log axis), a line with error bars per model and mode."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6, 4), dpi=120)
    lines = list(dict.fromkeys((key[0], key[1]) for key in summary))
    for number, (model, mode) in enumerate(lines):
        points = sorted((key[2], value) for key, value in summary.items() if key[:2] == (model, mode))
        dodge = 1.0 + 0.03 * (number - (len(lines) - 1) / 2)  # side by side, so that error bars do not hide each other
        x = [p[0] * dodge for p in points]
        y = [p[1][0] for p in points]
        error = [0.0 if math.isnan(p[1][1]) else p[1][1] for p in points]
        axes.errorbar(x, y, yerr=error, marker="o", capsize=3, label=f"{model} ({mode.replace('_', ' ')})")
    fractions = sorted({key[2] for key in summary})
    axes.set_xscale("log")
    axes.set_xticks(fractions, [f"{f}%" for f in fractions])
    axes.minorticks_off()
    axes.set_xlabel("training labels")
    axes.set_ylabel("test mean AUC (± std over seeds)")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def environment(argv: list[str]) -> dict:
    """What a table needs to be reproduced: the command, the package versions, the git commit of this checkout."""
    versions = {}
    for package in ("mrm-hf", "torch", "transformers", "datasets", "accelerate", "evaluate", "numpy", "pillow"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[package] = metadata.version(package)

    def git(*args):
        with contextlib.suppress(OSError, subprocess.CalledProcessError):
            return subprocess.run(["git", *args], cwd=HERE, capture_output=True, text=True, check=True).stdout.strip()
        return None

    commit = git("rev-parse", "HEAD")
    return {
        "command": [sys.executable, str(Path(sys.argv[0]).resolve()), *argv],
        "cwd": os.getcwd(),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": versions,
        "git_commit": commit,
        "git_dirty": bool(git("status", "--porcelain")) if commit else None,
    }


# ---- the command line ------------------------------------------------------------------------------------------------


def parse_arguments(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    own, passthrough = (argv[: argv.index("--")], argv[argv.index("--") + 1 :]) if "--" in argv else (argv, [])
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog="Arguments after `--` go to every run_classification.py run.")
    parser.add_argument("--models", required=True,
                        help="Comma-separated models, each `name=path` or a path (named after its folder); `random` "
                             "is a from-scratch model of --random_config.")
    parser.add_argument("--fractions", default="1,10,100", help="Percent of the training labels (1, 10, 100).")
    parser.add_argument("--seeds", default="0,1,2", help="Seeds of each (model, fraction): training and label draw.")
    parser.add_argument("--modes", default="finetune", help="finetune and/or linear_probe, comma-separated.")
    parser.add_argument("--random_config", default=None,
                        help="The MRM config of `random` (folder or Hub id); default: the published ViT-B/16.")
    parser.add_argument("--bootstrap_samples", type=int, default=1000, help="Resamples of the test images.")
    parser.add_argument("--confidence", type=float, default=0.95, help="Coverage of the bootstrap intervals.")
    parser.add_argument("--output_dir", required=True, help="Where the runs, tables, plot and environment go.")
    args = parser.parse_args(own)
    args.models = parse_models(args.models)
    args.fractions = parse_ints(args.fractions, "--fractions", (1, 10, 100))
    args.seeds = parse_ints(args.seeds, "--seeds")
    args.modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = [m for m in args.modes if m not in MODES]
    if unknown or not args.modes:
        raise ValueError(f"--modes: expected values from {list(MODES)}; found {args.modes}.")
    if not 0.0 < args.confidence < 1.0:
        raise ValueError(f"--confidence: expected a value in (0, 1); found {args.confidence}.")
    if args.bootstrap_samples < 1:
        raise ValueError(f"--bootstrap_samples: expected at least 1; found {args.bootstrap_samples}.")
    owned = {"--model_name_or_path", "--model_type", "--config_name", "--label_fraction", "--seed", "--linear_probe",
             "--output_dir"}
    clashing = sorted({a.split("=")[0] for a in passthrough} & owned)
    if clashing:
        raise ValueError(f"The grid sets {clashing} for each run: expected none of them after `--`; found them there. "
                         "Remove them.")
    return args, passthrough


def main(argv: list[str] | None = None) -> dict:
    argv = sys.argv[1:] if argv is None else list(argv)
    args, passthrough = parse_arguments(argv)
    if importlib.util.find_spec("matplotlib") is None:
        raise ImportError("Expected matplotlib for the label-efficiency plot; found it missing. Install it with "
                          "`pip install 'mrm-hf[plot]'` (or `pip install matplotlib`) before starting the grid.")
    setup_logging()
    root = Path(args.output_dir)
    root.mkdir(parents=True, exist_ok=True)
    (root / "environment.json").write_text(json.dumps(environment(argv), indent=2))

    runs = [Run(*cell) for cell in itertools.product(args.models, args.modes, args.fractions, args.seeds)]
    run_grid(runs, args.models, root, passthrough, args.random_config)

    rows = collect(runs, root)
    write_csv(rows, root / "results.csv")
    summary = summarise(rows)
    differences = pair_differences(runs, root, args.bootstrap_samples, args.confidence)
    write_markdown(summary, differences, root / "results.md", args.confidence, args.bootstrap_samples)
    plot(summary, root / "label_efficiency.png")
    logger.info("Wrote %s, %s and %s.", root / "results.csv", root / "results.md", root / "label_efficiency.png")
    print((root / "results.md").read_text(encoding="utf-8"))
    return {"rows": rows, "summary": summary, "differences": differences}


if __name__ == "__main__":
    main()
