#!/usr/bin/env python
"""How often the label-efficiency grid declares a difference between a model and itself: its false-positive rate.

A model compared with itself under different seeds has no true difference, so an interval that excludes 0 is a false
positive; at 95% it should happen in about 5% of comparisons. Counted for four intervals on the same runs: the old
one (a bootstrap over the test images only, the seeds averaged), a hierarchical bootstrap (seeds resampled, then test
images), the grid's (`run_interval`: seed variance plus test-image bootstrap variance, Student t with seeds - 1 df),
and the same with Welch-Satterthwaite df (`satterthwaite`).

1. From a real grid of one model and many seeds (`--grid`), every split of its seeds into two disjoint groups of
   `--seeds_per_model` plays "the same folder entered twice under two names". These comparisons share runs, so their
   count illustrates; it is not a rate.
2. A simulation of `--repeats` independent grids (`numpy` only): runs whose scores are the class times a per-seed
   separation, plus an image difficulty shared by all runs, plus per-run image noise, fitted to the grid's mean AUC,
   seed-to-seed spread and between-run score correlation at its test-set size. Each simulated grid draws a new test set
   (of the grid's size and prevalence, or of each `--simulated_test_images`: the published test sets hold thousands),
   and 2 x `--seeds_per_model` runs, and compares the two halves. This count is the false-positive rate.

    # a real grid: one tiny model, 8 seeds, 100% labels, on the COVID split in ../shared/data
    python examples/run_label_efficiency.py --models a=tiny --fractions 100 --seeds 0,1,2,3,4,5,6,7 \
        --output_dir calibration-grid -- --dataset csv --train_csv covid/covid1_train.csv --validation_fraction 0.2 \
        --test_csv covid/covid1_val.csv --label_columns label --max_steps 10 --use_cpu ...
    nice -n 10 python benchmarks/label_efficiency_calibration.py --grid calibration-grid --repeats 1000 \
        --samples 500 --simulated_test_images 46,1000
    # the seeds dominating: the grid's spread and AUC, scores correlating at 0.95 between runs
    nice -n 10 python benchmarks/label_efficiency_calibration.py --seed_spread 0.0616 --correlation 0.95 \
        --auc 0.4706 --test_images 46 --positives 30 --simulated_test_images 1000 --seeds_per_model 3 \
        --repeats 1000 --samples 300
"""

import argparse
import itertools
import math
import statistics
import sys
from pathlib import Path

import numpy as np


sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))
import run_label_efficiency as grid  # noqa: E402


def hierarchical_interval(full_a, replicates_a, full_b, replicates_b, confidence, rng) -> tuple[float, float]:
    """The percentile interval of a two-level bootstrap: each replicate draws the seeds of A and of B with
    replacement, then reads their mean AUCs on one shared resample of the test images."""
    n_a, n_b, samples = len(full_a), len(full_b), len(replicates_a)
    pick_a = rng.integers(0, n_a, (samples, n_a))
    pick_b = rng.integers(0, n_b, (samples, n_b))
    rows = np.arange(samples)[:, None]
    estimates = replicates_a[rows, pick_a].mean(axis=1) - replicates_b[rows, pick_b].mean(axis=1)
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(estimates, [tail, 1.0 - tail])
    return float(low), float(high)


def satterthwaite_interval(full_a, replicates_a, full_b, replicates_b, confidence) -> tuple[float, float]:
    """The grid's interval with Welch-Satterthwaite degrees of freedom instead of the seeds' (the test-image part
    counted as known, so the df grow with it): the alternative the grid does not use."""
    point = float(np.mean(full_a) - np.mean(full_b))
    seeds = float(np.var(full_a - full_b, ddof=1)) / len(full_a)
    images = float(np.var(replicates_a.mean(axis=1) - replicates_b.mean(axis=1), ddof=1))
    df = (seeds + images) ** 2 / (seeds**2 / (len(full_a) - 1)) if seeds > 0 else math.inf
    half = grid.t_quantile(0.5 + confidence / 2.0, max(df, 1.0)) * math.sqrt(seeds + images)
    return point - half, point + half


def declared(labels, scores_a, scores_b, samples, confidence, rng, seed=0) -> dict[str, bool]:
    """Whether each method declares a difference A - B (A's and B's runs being different seeds): its interval excludes
    0. The grid's (`new`) claims nothing with one seed (`Interval.tells_apart`), nor does the hierarchical bootstrap,
    which has no seeds to resample then."""
    runs = list(scores_a) + list(scores_b)
    full = np.array([grid.mean_auc(labels, scores) for scores in runs])
    replicates = grid.bootstrap_mean_aucs(labels, runs, samples, seed=seed)
    a, b = slice(0, len(scores_a)), slice(len(scores_a), len(runs))
    point = float(full[a].mean() - full[b].mean())
    old = grid.images_only_interval(point, replicates[:, a].mean(axis=1) - replicates[:, b].mean(axis=1), confidence)
    new = grid.run_interval(full[a], replicates[:, a], confidence, full[b], replicates[:, b], paired=True)
    hierarchical = satterthwaite = False
    if len(scores_a) > 1:
        low, high = hierarchical_interval(full[a], replicates[:, a], full[b], replicates[:, b], confidence, rng)
        hierarchical = low > 0 or high < 0
        low, high = satterthwaite_interval(full[a], replicates[:, a], full[b], replicates[:, b], confidence)
        satterthwaite = low > 0 or high < 0
    return {"old": old.excludes_zero, "hierarchical": hierarchical, "satterthwaite": satterthwaite,
            "new": new.tells_apart}


# ---- the simulation --------------------------------------------------------------------------------------------------


def simulated_run(labels, images, separation, quality, noise, rng) -> np.ndarray:
    """One run's scores (N, 1): the class shifted by the run's separation, plus each image's own difficulty (shared by
    every run: what makes runs agree on which images are hard) and the run's own noise per image."""
    return ((separation + quality) * labels + images + noise * rng.standard_normal(len(labels)))[:, None]


def fit(auc: float, spread: float, correlation: float, labels: np.ndarray, rng) -> tuple[float, float, float]:
    """(separation, seed quality spread, noise) whose runs, on a fixed test set with these labels, have mean AUC
    `auc`, seed-to-seed standard deviation `spread` and within-class score correlation `correlation` between runs
    (the noise from the correlation, 1 / (1 + noise^2); the quality spread by bisection on simulated runs)."""
    noise = math.sqrt(1.0 / min(max(correlation, 0.05), 0.99) - 1.0)
    separation = math.sqrt(2 * (1 + noise**2)) * statistics.NormalDist().inv_cdf(min(max(auc, 0.01), 0.99))

    def spread_of(quality, sets=20, runs=20):
        values = []
        for _ in range(sets):  # several fixed test sets, the spread within each
            images = rng.standard_normal(len(labels))
            aucs = [grid.binary_roc_auc(labels, simulated_run(labels, images, separation, q, noise, rng)[:, 0])
                    for q in quality * rng.standard_normal(runs)]
            values.append(np.std(aucs, ddof=1))
        return float(np.mean(values))

    low, high = 0.0, 4.0
    if spread_of(low) >= spread:
        return separation, 0.0, noise  # the runs' own image noise already spreads them as much
    for _ in range(12):
        middle = (low + high) / 2
        low, high = (middle, high) if spread_of(middle) < spread else (low, middle)
    return separation, (low + high) / 2, noise


def simulate(repeats, seeds_per_model, fitted, count, positives, samples, confidence, seed=0) -> dict[str, int]:
    """False positives of each method over `repeats` independent simulated grids of a model against itself, each with
    a new test set of `count` images (`positives` of them positive); `fitted`: `fit`'s (separation, quality, noise)."""
    rng = np.random.default_rng(seed)
    separation, quality, noise = fitted
    labels = np.r_[np.ones(positives, int), np.zeros(count - positives, int)]
    totals = dict.fromkeys(("old", "hierarchical", "satterthwaite", "new"), 0)
    for repeat in range(repeats):
        images = rng.standard_normal(count)  # a new test set
        runs = [simulated_run(labels, images, separation, q, noise, rng)
                for q in quality * rng.standard_normal(2 * seeds_per_model)]
        found = declared(labels[:, None], runs[:seeds_per_model], runs[seeds_per_model:], samples, confidence, rng,
                         seed=repeat)
        for method, value in found.items():
            totals[method] += value
    return totals


def within_class_correlation(labels: np.ndarray, scores: list[np.ndarray]) -> float:
    """The mean Pearson correlation of two runs' scores over the images of one class (every pair, class and column)."""
    values = []
    for column in range(labels.shape[1]):
        for value in (0, 1):
            rows = labels[:, column] == value
            for a, b in itertools.combinations(scores, 2):
                if rows.sum() > 2:
                    values.append(np.corrcoef(a[rows, column], b[rows, column])[0, 1])
    return float(np.mean(values))


# ---- a real grid -----------------------------------------------------------------------------------------------------


def grid_runs(root: Path) -> tuple[np.ndarray, list[np.ndarray], list[float]]:
    """(labels, each run's scores, each run's test mean AUC) of the one model, mode and fraction in a grid folder."""
    folders = sorted(root.glob("runs/*/*/*/seed*"), key=lambda p: int(p.name[len("seed"):]))
    cells = {folder.parent for folder in folders}
    if len(cells) != 1 or len(folders) < 4:
        raise ValueError(f"{root}: expected one model, mode and fraction with 4 seeds or more; found {len(cells)} "
                         f"cells and {len(folders)} runs.")
    predictions = [grid.read_predictions(folder) for folder in folders]
    labels = predictions[0][1]
    scores = [p[2] for p in predictions]
    return labels, scores, [grid.mean_auc(labels, s) for s in scores]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--grid", type=Path, help="A run_label_efficiency.py output folder: one model, many seeds.")
    parser.add_argument("--seeds_per_model", default="1,3", help="Seeds of each name, comma-separated.")
    parser.add_argument("--repeats", type=int, default=1000, help="Simulated grids.")
    parser.add_argument("--samples", type=int, default=1000, help="Bootstrap resamples of the test images.")
    parser.add_argument("--confidence", type=float, default=0.95)
    parser.add_argument("--seed_spread", type=float, default=None, help="Without --grid: the seed-to-seed std of AUC.")
    parser.add_argument("--correlation", type=float, default=0.5,
                        help="Without --grid: runs' within-class score correlation.")
    parser.add_argument("--auc", type=float, default=0.5, help="Without --grid: the runs' mean AUC.")
    parser.add_argument("--test_images", type=int, default=46, help="Without --grid: test images.")
    parser.add_argument("--positives", type=int, default=30, help="Without --grid: positive test images.")
    parser.add_argument("--simulated_test_images", default=None,
                        help="Test-set sizes to simulate, comma-separated (same prevalence); default: the grid's.")
    args = parser.parse_args(argv)
    if args.grid is not None:
        labels, scores, aucs = grid_runs(args.grid)
        spread, auc = float(np.std(aucs, ddof=1)), float(np.mean(aucs))
        count, positives = len(labels), int(labels[:, 0].sum())
        correlation = within_class_correlation(labels, scores)
        print(f"grid {args.grid}: {len(aucs)} seeds, test mean AUC {auc:.4f} ± {spread:.4f} (std over seeds), "
              f"{count} test images ({positives} positive), within-class score correlation between runs "
              f"{correlation:.3f}")
    else:
        if args.seed_spread is None:
            parser.error("--seed_spread: expected it without --grid; found neither.")
        spread, auc, correlation = args.seed_spread, args.auc, args.correlation
        count, positives = args.test_images, args.positives
    fit_labels = np.r_[np.ones(positives, int), np.zeros(count - positives, int)]
    fitted = fit(auc, spread, correlation, fit_labels, np.random.default_rng(0))
    print(f"simulated runs fitted to that at {count} test images: separation {fitted[0]:.3f}, seed quality spread "
          f"{fitted[1]:.3f}, per-image run noise {fitted[2]:.3f} (image difficulty 1)")
    for n in grid.parse_ints(args.seeds_per_model, "--seeds_per_model"):
        if args.grid is not None:
            rng = np.random.default_rng(0)
            everyone = range(len(scores))
            splits = [(a, b) for a in itertools.combinations(everyone, n)
                      for b in itertools.combinations(sorted(set(everyone) - set(a)), n) if a < b]
            totals = dict.fromkeys(("old", "hierarchical", "satterthwaite", "new"), 0)
            for a, b in splits:
                found = declared(labels, [scores[i] for i in a], [scores[i] for i in b], args.samples,
                                 args.confidence, rng)
                for method, value in found.items():
                    totals[method] += value
            print(f"{n} seed(s) per name, real runs, all {len(splits)} splits into two names (overlapping, not "
                  "independent): " + ", ".join(f"{method} {value}/{len(splits)}" for method, value in totals.items()))
        sizes = [count] if args.simulated_test_images is None else grid.parse_ints(args.simulated_test_images,
                                                                                    "--simulated_test_images")
        for size in sizes:
            totals = simulate(args.repeats, n, fitted, size, round(size * positives / count), args.samples,
                              args.confidence)
            print(f"{n} seed(s) per name, simulation of {args.repeats} independent grids of {size} test images: "
                  f"declared a difference at {args.confidence:.0%} in "
                  + ", ".join(f"{method} {value}/{args.repeats} ({value / args.repeats:.1%})"
                              for method, value in totals.items()))


if __name__ == "__main__":
    main()
