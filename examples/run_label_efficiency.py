#!/usr/bin/env python
"""Label-efficiency tables the way the paper reports them: models x label fractions x seeds, with intervals and a plot.

Every run is `examples/run_classification.py` itself, called in this process with its own command line; this script
only loops over the grid and summarises. What follows `--` is passed to every run unchanged (the dataset, its splits,
the recipe, the step budget); the grid adds `--model_name_or_path` (or `--model_type mrm` for `random`),
`--label_fraction`, `--seed`, `--linear_probe` or the `--lora_*` options, and `--output_dir`.

The paper's NIH / CheXpert / RSNA tables (1, 10 and 100% of the labels, the published recipes), from the converted
published MRM against a from-scratch ViT-B:

    python -m mrm_hf.convert --checkpoint MRM.pth --output-dir mrm-base
    python examples/run_label_efficiency.py --models mrm=mrm-base,random --fractions 1,10,100 --seeds 0,1,2 \
        --output_dir tables/nih -- --dataset nih --data_dir /data/nih-chestxray14 --split_dir DatasetsSplits \
        --recipe nih
    # CheXpert: -- --dataset chexpert --data_dir /data --split_dir DatasetsSplits --recipe chexpert
    # RSNA:     -- --dataset rsna --data_dir /data/rsna --split_dir DatasetsSplits --recipe rsna

MRM against image-only pre-training on one's own data (two run_pretraining.py outputs, one with --image_only), a
linear probe (the head alone), LoRA (adapters on the frozen encoder, and the head) and full fine-tuning, label
fractions drawn from the training CSV with each seed:

    python examples/run_label_efficiency.py --models mrm=out/mrm,image-only=out/mae,random --fractions 1,10,100 \
        --seeds 0,1,2 --modes linear_probe,lora,finetune --lora_rank 8 --output_dir tables/mine -- --dataset csv \
        --train_csv train.csv --validation_csv val.csv --test_csv test.csv --label_columns a,b,c --max_steps 2000

`random` is a from-scratch model of `--random_config` (a folder or Hub id with an MRM config; default: the published
ViT-B/16). What would stop the grid part-way (a refused option, a model that is not an MRM checkpoint, a fraction the
data or recipe cannot give, no test split) stops it before the first run. Finished runs (a `run.json` in their folder)
are skipped, so an interrupted grid continues where it stopped. Written to `--output_dir`: `results.csv` (a row per
run: per-class and mean test AUC), `results.md` (mean ± std over seeds per model and fraction; for each pair of models
the difference of mean AUC with an interval over seeds and test images, or with one seed over test images only, said
so: see `run_interval`), `label_efficiency.png` (the same intervals as bars), and `environment.json` (package
versions, git commit, command).
"""

import argparse
import contextlib
import csv
import importlib.util
import itertools
import json
import logging
import math
import os
import platform
import statistics
import subprocess
import sys
import warnings
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from mrm_hf.metric_modules.roc_auc.roc_auc import binary_roc_auc  # the pure function behind the `roc_auc` metric
from mrm_hf.metrics import single_label_scores
from mrm_hf.utils import setup_logging

import run_classification  # the fine-tuning script beside this one: each run is exactly what it does


logger = logging.getLogger(__name__)
HERE = Path(__file__).resolve().parent
# From the fewest trained parameters to the most; the tables follow this order.
MODES = ("linear_probe", "lora", "finetune")
MODE_DESCRIPTIONS = {
    "linear_probe": "Linear probe: only the classifier head is trained; the encoder and its pooling LayerNorm stay as "
                    "loaded (`--linear_probe`).",
    "lora": "LoRA: the encoder stays frozen; low-rank adapters on its blocks' projections (`--lora_target_modules`, "
            "by default the attention's qkv and proj) and the classifier head are trained, then merged "
            "(`--lora_rank`).",
    "finetune": "Full fine-tuning: every weight of the encoder and the head is trained.",
}
LORA_OPTIONS = ("--lora_rank", "--lora_alpha", "--lora_dropout", "--lora_target_modules")
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


def run_argv(run: Run, model_path: str, root: Path, passthrough: list[str], random_config: str | None,
             lora: list[str] = ()) -> list[str]:
    """The fine-tuning script's command line for one run of the grid; `lora`: the LoRA options of the lora mode."""
    if model_path == RANDOM:
        model = ["--model_type", "mrm", *(["--config_name", random_config] if random_config else [])]
    else:
        model = ["--model_name_or_path", model_path]
    mode = {"linear_probe": ["--linear_probe"], "lora": list(lora), "finetune": []}[run.mode]
    return [
        *passthrough, *model, "--label_fraction", str(run.fraction), "--seed", str(run.seed), *mode,
        "--output_dir", str(run.folder(root)), "--report_to", "none", "--disable_tqdm", "true",
    ]  # fmt: skip


def check_before_training(argvs: dict[Run, list[str]], root: Path) -> None:
    """Stop before the first run on anything that would stop the grid later: every run's command line (an option the
    fine-tuning script refuses, a recipe the fraction lacks, LoRA without peft), every model (a folder or Hub id with
    an MRM config; `random`'s --random_config), and per fraction the data (it loads, has a test split, and its test
    labels define an AUC)."""
    parsed = {}
    for run, argv in argvs.items():
        try:
            parsed[run] = run_classification.parse_arguments(argv)
        except (ValueError, ImportError) as error:
            raise type(error)(f"Run {run.folder(root)}: {error}") from error
    first = {}
    for run in parsed:
        first.setdefault(run.model, run)
    for run in first.values():
        try:
            run_classification.source_config(parsed[run][0])
        except (OSError, ValueError) as error:
            raise ValueError(f"--models {run.model}: expected an MRM checkpoint (a folder or Hub id with an 'mrm' "
                             f"config); found {type(error).__name__}: {error}") from error
    for fraction in dict.fromkeys(run.fraction for run in parsed):
        run = next(r for r in parsed if r.fraction == fraction)  # the data and its test split are the same for all
        data_args, training_args = parsed[run][1], parsed[run][2]
        try:
            data = run_classification.load_data(data_args, training_args.seed)
        except (OSError, ValueError) as error:
            raise ValueError(f"--fractions {fraction}: expected the data after `--` to give {fraction}% of its "
                             f"training labels; found {type(error).__name__}: {error}") from error
        if "test" not in data:
            raise ValueError(f"The grid compares models on the test split: expected one in the {data_args.dataset} "
                             f"data after `--`; found only {sorted(data)}.")
        labels = np.asarray(data["test"]["labels"])
        defined = (labels.min(axis=0) != labels.max(axis=0)).any() if labels.ndim > 1 else len(np.unique(labels)) > 1
        if not defined:
            raise ValueError(f"The {data_args.dataset} test split ({len(labels)} images): expected a class with both "
                             "positive and negative images, or two classes (an AUC); found one label value per class.")


def run_grid(argvs: dict[Run, list[str]], models: dict[str, str], root: Path) -> None:
    """Run every run through run_classification.main; `argvs` holds the unfinished ones of the grid."""
    with tqdm(total=len(argvs), desc="label-efficiency grid", unit="run") as bar:
        for run, argv in argvs.items():
            bar.set_postfix_str(f"{run.model} {run.mode} {run.fraction}% seed {run.seed}")
            results = run_classification.main(argv)
            record = {**vars(run), "model_path": models[run.model], "argv": argv, "results": results}
            temporary = run.folder(root) / "run.json.tmp"
            temporary.write_text(json.dumps(record, indent=2))
            temporary.replace(run.folder(root) / "run.json")  # written last, at once: its presence means finished
            bar.update()


# ---- the summary -----------------------------------------------------------------------------------------------------


def read_predictions(folder: Path) -> tuple[list[str], np.ndarray, np.ndarray, list[str]]:
    """(image paths, labels (N, C), scores (N, C), class names) of a run's `test_predictions.csv`.

    Single-label runs (one `label` column of class ids) become one-vs-rest 0/1 columns by the fine-tuning script's
    own rule (`mrm_hf.metrics.single_label_scores`).
    """
    with open(folder / "test_predictions.csv", newline="", encoding="utf-8") as file:
        rows = list(csv.DictReader(file))
    if not rows:
        raise ValueError(f"{folder / 'test_predictions.csv'}: expected test predictions; found no rows.")
    classes = [key[len("logit_"):] for key in rows[0] if key.startswith("logit_")]
    logits = np.array([[float(row[f"logit_{name}"]) for name in classes] for row in rows])
    paths = [row["image_path"] for row in rows]
    if "label" in rows[0]:
        scores, labels, columns = single_label_scores(logits, np.array([int(row["label"]) for row in rows]))
        return paths, labels[:, columns].astype(int), scores[:, columns], classes[columns]
    labels = np.array([[int(row[f"label_{name}"]) for name in classes] for row in rows])
    return paths, labels, logits, classes


def mean_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Mean of the defined per-class AUCs, as the `roc_auc` metric reports it; NaN when no class has both labels."""
    aucs = [binary_roc_auc(labels[:, column], scores[:, column]) for column in range(labels.shape[1])]
    defined = [auc for auc in aucs if not math.isnan(auc)]
    return float(np.mean(defined)) if defined else math.nan


def weighted_auc(labels: np.ndarray, scores: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """The ROC-AUC of one class on each of many resamples of the test images, resample r holding image i counts[r, i]
    times: the Mann-Whitney statistic with ties counted as one half, as `binary_roc_auc` computes it on the resampled
    images, but from one sort for all resamples. NaN where a resample lacks positives or negatives."""
    order = np.argsort(scores, kind="stable")
    sorted_scores, positive = scores[order], labels[order] == 1
    counts = counts[:, order].astype(np.float64)
    starts = np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])  # the groups of tied scores
    negatives = np.add.reduceat(counts * ~positive, starts, axis=1)
    positives = np.add.reduceat(counts * positive, starts, axis=1)
    below = np.cumsum(negatives, axis=1) - negatives  # negatives scored strictly lower than each group
    pairs = positives.sum(axis=1) * negatives.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(pairs > 0, (positives * (below + 0.5 * negatives)).sum(axis=1) / pairs, np.nan)


def bootstrap_mean_aucs(labels: np.ndarray, score_sets: list[np.ndarray], samples: int, seed: int = 0,
                        chunk: int = 100) -> np.ndarray:
    """(samples, runs): each run's mean AUC on `samples` resamples of the test images (with replacement), every run
    on the same resamples, which is what makes differences between them paired. Resamples in which no class has both
    labels (no AUC is defined) are drawn again."""
    rng = np.random.default_rng(seed)
    count = labels.shape[0]
    kept = []
    while sum(len(block) for block in kept) < samples:
        counts = rng.multinomial(count, np.full(count, 1.0 / count), size=chunk)
        per_class = np.stack([np.stack([weighted_auc(labels[:, c], scores[:, c], counts)
                                        for c in range(labels.shape[1])], axis=1) for scores in score_sets], axis=1)
        defined = ~np.isnan(per_class).all(axis=2).any(axis=1)  # (chunk,): every run shares the images, so all or none
        with np.errstate(invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            kept.append(np.nanmean(per_class[defined], axis=2))
    return np.concatenate(kept)[:samples]


def t_quantile(probability: float, df: float) -> float:
    """Student's t quantile, for any df >= 1 (fractional too); the normal one for inf.

    With t = sqrt(df) tan(theta), theta has the density cos(theta)^(df - 1) / B(df/2, 1/2) on (-pi/2, pi/2): smooth
    and bounded, so Simpson's rule integrates it exactly enough, and bisection inverts it.
    """
    if not 0.5 <= probability < 1.0:
        raise ValueError(f"t_quantile: expected a probability in [0.5, 1); found {probability}.")
    if math.isinf(df):
        return statistics.NormalDist().inv_cdf(probability)
    if df < 1.0:
        raise ValueError(f"t_quantile: expected df >= 1; found {df}.")
    log_norm = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(math.pi)

    def cdf(theta):
        grid = np.linspace(0.0, theta, 2001)
        weights = np.r_[1.0, np.tile([4.0, 2.0], 999), 4.0, 1.0] * (theta / 2000 / 3)
        return 0.5 + math.exp(log_norm) * float(weights @ np.cos(grid) ** (df - 1))

    low, high = 0.0, math.pi / 2
    for _ in range(60):
        middle = (low + high) / 2
        low, high = (middle, high) if cdf(middle) < probability else (low, middle)
    return math.sqrt(df) * math.tan((low + high) / 2)


SEEDS_AND_IMAGES, IMAGES_ONLY = "seeds and test images", "test images"


@dataclass(frozen=True)
class Interval:
    """An estimate with its interval, and what the interval covers: "seeds and test images", or "test images" only
    (one seed: the variance between training runs is unknown). `df`: the degrees of freedom of the seed part."""

    point: float
    low: float
    high: float
    covers: str
    df: float | None = None

    @property
    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0

    @property
    def tells_apart(self) -> bool:
        """What the grid claims: a difference, only where the interval covers the seeds too and excludes 0."""
        return self.covers == SEEDS_AND_IMAGES and self.excludes_zero


def images_only_interval(point: float, replicates: np.ndarray, confidence: float) -> Interval:
    """The percentile bootstrap interval over the test images alone: the runs' own variance is not in it."""
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(replicates, [tail, 1.0 - tail])
    return Interval(point, float(low), float(high), IMAGES_ONLY)


def run_interval(full_a: np.ndarray, replicates_a: np.ndarray, confidence: float, full_b: np.ndarray | None = None,
                 replicates_b: np.ndarray | None = None, paired: bool = False) -> Interval:
    """The mean test AUC over A's runs (seeds), or its difference from B's, with an interval that covers the variance
    between training runs as well as test-set sampling when every side has two seeds or more.

    `full_*`: each run's mean AUC on the whole test set; `replicates_*`: the same on shared bootstrap resamples of the
    test images (`bootstrap_mean_aucs`); `paired`: A's and B's runs are the same seeds in the same order.

    The variance of the estimate is the seed part (the sample variance over seeds divided by their number: of the
    per-seed differences when A and B ran the same seeds, which pairs them by training-label draw, else the sum of both
    sides') plus the test-image part (the bootstrap variance of the seed-averaged estimate, on resamples shared by
    every run). The interval is Student's t with the seed part's degrees of freedom (seeds - 1, the fewer side's when
    unpaired): with 3 seeds, 4.30 standard errors either side at 95%. Resampling the seeds instead (a hierarchical
    bootstrap) sees 10 distinct means of 3 seeds and 2/3 of their variance, and gives about 1.6 standard errors. Welch-
    Satterthwaite degrees of freedom, counting the test-image part as known, would narrow the interval as that part
    grows, but the two parts overlap (each run's own noise per image is in both), and the calibration
    (benchmarks/label_efficiency_calibration.py) found them over 5% when the seeds dominate. With one seed on either
    side the interval covers test-set sampling only.
    """
    point = float(np.mean(full_a) - (np.mean(full_b) if full_b is not None else 0.0))
    estimates = replicates_a.mean(axis=1) - (replicates_b.mean(axis=1) if replicates_b is not None else 0.0)
    sides = [full_a] if full_b is None else [full_a, full_b]
    if min(len(side) for side in sides) < 2:
        return images_only_interval(point, estimates, confidence)
    if full_b is not None and paired:
        seed_variance = float(np.var(full_a - full_b, ddof=1)) / len(full_a)
    else:
        seed_variance = sum(float(np.var(side, ddof=1)) / len(side) for side in sides)
    df = min(len(side) for side in sides) - 1
    half = t_quantile(0.5 + confidence / 2.0, df) * math.sqrt(seed_variance + float(np.var(estimates, ddof=1)))
    return Interval(point, point - half, point + half, SEEDS_AND_IMAGES, df)


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


def compare(runs: list[Run], root: Path, samples: int, confidence: float) -> tuple[dict, list[dict]]:
    """Per mode and fraction: each model's mean test AUC over its seeds, and each pair's difference, with
    `run_interval`'s intervals, every run of the cell scored on the same bootstrap resamples of the test images.

    Returns ({(model, mode, fraction): Interval}, [one dict per pair of models and cell]).
    """
    predictions = {run: read_predictions(run.folder(root)) for run in runs}
    models = list(dict.fromkeys(run.model for run in runs))
    estimates, differences = {}, []
    cells = sorted({(run.mode, run.fraction) for run in runs}, key=lambda c: (MODES.index(c[0]), c[1]))
    for mode, fraction in cells:
        cell = sorted((r for r in runs if (r.mode, r.fraction) == (mode, fraction)),
                      key=lambda r: (models.index(r.model), r.seed))
        reference = predictions[cell[0]]
        for run in cell:
            if predictions[run][0] != reference[0] or not np.array_equal(predictions[run][1], reference[1]):
                raise ValueError(f"{run.folder(root)}: expected the test images of {cell[0].folder(root)}, as every "
                                 "run of one comparison is tested on the same images; found others.")
        labels = reference[1]
        full = np.array([mean_auc(labels, predictions[run][2]) for run in cell])
        replicates = bootstrap_mean_aucs(labels, [predictions[run][2] for run in cell], samples)
        column = {model: [i for i, run in enumerate(cell) if run.model == model] for model in models}
        seeds = {model: [cell[i].seed for i in column[model]] for model in models}
        for model in models:
            if column[model]:
                estimates[model, mode, fraction] = run_interval(full[column[model]], replicates[:, column[model]],
                                                                confidence)
        for model_a, model_b in itertools.combinations(models, 2):
            a, b = column[model_a], column[model_b]
            if not a or not b:
                continue
            interval = run_interval(full[a], replicates[:, a], confidence, full[b], replicates[:, b],
                                    paired=seeds[model_a] == seeds[model_b])
            differences.append({"mode": mode, "fraction": fraction, "model_a": model_a, "model_b": model_b,
                                "difference": interval.point, "low": interval.low, "high": interval.high,
                                "covers": interval.covers, "df": interval.df, "seeds": min(len(a), len(b)),
                                "excludes_zero": interval.tells_apart, "test_images": len(reference[0])})
    return estimates, differences


def write_markdown(summary, differences, path: Path, confidence: float, samples: int) -> None:
    def cell(value):
        mean, std, n = value
        return f"{mean:.4f}" + (f" ± {std:.4f}" if not math.isnan(std) else "") + f" (n={n})"

    fractions = sorted({key[2] for key in summary})
    lines = ["# Label efficiency: test mean AUC", "",
             "Mean ± sample standard deviation over seeds (n = number of seeds) of each run's test mean AUC.", ""]
    for mode in [m for m in MODES if any(key[1] == m for key in summary)]:
        lines += [f"## {mode}", "", MODE_DESCRIPTIONS[mode], "",
                  "| model | " + " | ".join(f"{f}% labels" for f in fractions) + " |",
                  "|---|" + "---|" * len(fractions)]
        for model in dict.fromkeys(key[0] for key in summary):
            cells = [cell(summary[model, mode, f]) if (model, mode, f) in summary else "" for f in fractions]
            lines.append(f"| {model} | " + " | ".join(cells) + " |")
        lines.append("")
    if differences and all(d["covers"] == SEEDS_AND_IMAGES for d in differences):
        seeds = min(d["seeds"] for d in differences)
        lines += [f"## Differences (A − B), {confidence:.0%} interval over seeds and test images", "",
                  f"Each model's test mean AUC averaged over its seeds ({seeds} or more), A and B paired by seed (the "
                  "same training-label draw) where they ran the same ones. The interval adds two sources of "
                  f"variation: retraining (the sample variance of the per-seed differences over the {seeds} seeds) and "
                  f"test-set sampling ({samples} bootstrap resamples of the test images, the same for both models); it "
                  "is Student's t with the seeds' degrees of freedom (df: seeds − 1), wide when there are few seeds. "
                  "An interval that excludes 0 is a difference "
                  "larger than what training another seed and drawing another test set of this size produce by "
                  f"chance, at {confidence:.0%}; it says nothing of other data, recipes or step budgets.", "",
                  "| mode | labels | A | B | A − B | interval | excludes 0 | df | seeds | test images |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for d in differences:
            lines.append(f"| {d['mode']} | {d['fraction']}% | {d['model_a']} | {d['model_b']} | "
                         f"{d['difference']:+.4f} | [{d['low']:+.4f}, {d['high']:+.4f}] | "
                         f"{'yes' if d['excludes_zero'] else 'no'} | {d['df']} | {d['seeds']} | "
                         f"{d['test_images']} |")
        lines.append("")
    elif differences:
        lines += [f"## Differences (A − B), one seed: {confidence:.0%} interval over test images only", "",
                  f"Each model was trained once. The interval covers test-set sampling only ({samples} bootstrap "
                  "resamples of the test images, the same for both models), not the variance between training runs, "
                  "which one seed cannot measure and which can be as large as these differences: it does not tell the "
                  "models apart, whether or not it contains 0. Run two or more seeds (`--seeds 0,1,2`) for intervals "
                  "that include retraining.", "",
                  "| mode | labels | A | B | A − B | test-images-only interval | test images |",
                  "|---|---|---|---|---|---|---|"]
        for d in differences:
            lines.append(f"| {d['mode']} | {d['fraction']}% | {d['model_a']} | {d['model_b']} | "
                         f"{d['difference']:+.4f} | [{d['low']:+.4f}, {d['high']:+.4f}] | {d['test_images']} |")
        lines.append("")
    path.write_text("\n".join(lines), encoding="utf-8")


def plot(estimates: dict, path: Path, confidence: float) -> None:
    """`draw`'s figure written to `path`."""
    import matplotlib.pyplot as plt

    figure = draw(estimates, confidence)
    figure.savefig(path, bbox_inches="tight")
    plt.close(figure)


def draw(estimates: dict, confidence: float):
    """Mean test AUC per label fraction, one series with interval bars per model and mode; the fractions are evenly
    spaced categories (1, 10 and 100% are a log scale's even steps anyway), so one fraction sits in the middle."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fractions = sorted({key[2] for key in estimates})
    series = list(dict.fromkeys((key[0], key[1]) for key in estimates))
    figure, axes = plt.subplots(figsize=(max(4.0, 2.0 + 1.6 * len(fractions)) + 2.5, 4), dpi=120)  # + the legend
    width = min(0.5, 0.12 * len(series))  # the series side by side around each fraction, so no bar hides another
    for number, (model, mode) in enumerate(series):
        points = sorted((key[2], value) for key, value in estimates.items() if key[:2] == (model, mode))
        offset = (number - (len(series) - 1) / 2) * (width / max(len(series) - 1, 1))
        x = [fractions.index(fraction) + offset for fraction, _ in points]
        y = [value.point for _, value in points]
        error = [[value.point - value.low for _, value in points], [value.high - value.point for _, value in points]]
        axes.errorbar(x, y, yerr=error, marker="o", capsize=3, linestyle="-" if len(points) > 1 else "none",
                      label=f"{model} ({mode.replace('_', ' ')})")
    axes.set_xticks(range(len(fractions)), [f"{f}%" for f in fractions])
    axes.set_xlim(-0.8, len(fractions) - 0.2)
    axes.set_xlabel("training labels")
    covers = {value.covers for value in estimates.values()}
    axes.set_ylabel(f"test mean AUC\n({confidence:.0%} interval: {' / '.join(sorted(covers))})", fontsize=9)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)  # beside, not on, the bars
    figure.tight_layout()
    return figure


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
    parser.add_argument("--modes", default="finetune",
                        help="Comma-separated, from linear_probe (the head only), lora (adapters and the head) and "
                             "finetune (everything).")
    parser.add_argument("--lora_rank", type=int, default=8, help="The lora mode's adapter rank.")
    parser.add_argument("--lora_alpha", type=float, default=None, help="The lora mode's alpha (default: the rank).")
    parser.add_argument("--lora_dropout", type=float, default=0.0, help="The lora mode's adapter dropout.")
    parser.add_argument("--lora_target_modules", default="qkv,proj",
                        help="The lora mode's adapted layers of each encoder block: qkv, proj, fc1, fc2.")
    parser.add_argument("--random_config", default=None,
                        help="The MRM config of `random` (folder or Hub id); default: the published ViT-B/16.")
    parser.add_argument("--bootstrap_samples", type=int, default=1000, help="Resamples of the test images.")
    parser.add_argument("--confidence", type=float, default=0.95, help="Coverage of the intervals.")
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
             "--output_dir", *LORA_OPTIONS}
    clashing = sorted({a.split("=")[0] for a in passthrough} & owned)
    if clashing:
        raise ValueError(f"The grid sets {clashing} for each run: expected none of them after `--`; found them there. "
                         "Remove them.")
    args.lora = [] if "lora" not in args.modes else [
        "--lora_rank", str(args.lora_rank), "--lora_dropout", str(args.lora_dropout),
        "--lora_target_modules", args.lora_target_modules,
        *(["--lora_alpha", str(args.lora_alpha)] if args.lora_alpha is not None else []),
    ]  # fmt: skip
    return args, passthrough


def main(argv: list[str] | None = None) -> dict:
    argv = sys.argv[1:] if argv is None else list(argv)
    args, passthrough = parse_arguments(argv)
    if importlib.util.find_spec("matplotlib") is None:
        raise ImportError("The label-efficiency plot: expected matplotlib; found it missing. Install it with "
                          "`pip install 'mrm-hf[plot]'` (or `pip install matplotlib`) before starting the grid.")
    setup_logging()
    root = Path(args.output_dir)
    root.mkdir(parents=True, exist_ok=True)
    (root / "environment.json").write_text(json.dumps(environment(argv), indent=2))

    runs = [Run(*cell) for cell in itertools.product(args.models, args.modes, args.fractions, args.seeds)]
    todo = {run: run_argv(run, args.models[run.model], root, passthrough, args.random_config, args.lora)
            for run in runs if not (run.folder(root) / "run.json").is_file()}
    if len(todo) < len(runs):
        logger.info("Skipping %d finished runs of %d.", len(runs) - len(todo), len(runs))
    if todo:
        check_before_training(todo, root)
    run_grid(todo, args.models, root)

    rows = collect(runs, root)
    write_csv(rows, root / "results.csv")
    summary = summarise(rows)
    estimates, differences = compare(runs, root, args.bootstrap_samples, args.confidence)
    write_markdown(summary, differences, root / "results.md", args.confidence, args.bootstrap_samples)
    plot(estimates, root / "label_efficiency.png", args.confidence)
    logger.info("Wrote %s, %s and %s.", root / "results.csv", root / "results.md", root / "label_efficiency.png")
    print((root / "results.md").read_text(encoding="utf-8"))
    return {"rows": rows, "summary": summary, "estimates": estimates, "differences": differences}


if __name__ == "__main__":
    main()
