"""ROC-AUC for chest X-ray classification, the published metric (mean of the per-class AUCs), without scikit-learn.

The AUC is the Mann-Whitney statistic with average ranks for ties, which equals scikit-learn's `roc_auc_score`.
A class whose labels hold one value only has no AUC: it is NaN, left out of the mean, and named in a warning.

`make_compute_metrics` gives Trainer a `compute_metrics` returning plain Python values, JSON-safe as Trainer writes
them to `trainer_state.json`: an undefined per-class AUC is None (JSON null), not NaN. `mean_auc` is always a float so
that `metric_for_best_model="mean_auc"` can compare it; it is NaN only when no class has an AUC (never a new best).
"""

import math
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal

import numpy as np


ProblemType = Literal["multi_label_classification", "single_label_classification"]

METRIC_MODULES = Path(__file__).with_name("metric_modules")


def load_metric(name: str, **kwargs):
    """An `evaluate` metric shipped with the package (`mrm_hf/metric_modules/<name>/<name>.py`), loaded by path.

    Loading by path keeps evaluation offline: `evaluate.load("<hub name>")` would reach the Hub.
    """
    import evaluate

    path = METRIC_MODULES / name / f"{name}.py"
    if not path.is_file():
        shipped = sorted(p.name for p in METRIC_MODULES.iterdir() if (p / f"{p.name}.py").is_file())
        raise ValueError(f"Expected a metric shipped in {METRIC_MODULES}, one of {shipped}; found no module {name!r}.")
    return evaluate.load(str(path), **kwargs)


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks of `values`, tied values sharing the mean of their ranks."""
    order = np.argsort(values, kind="mergesort")
    ordered = values[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    ends = np.r_[starts[1:], len(values)]
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = np.repeat((starts + ends + 1) / 2.0, ends - starts)
    return ranks


def roc_auc(labels, scores) -> float:
    """Area under the ROC curve of 0/1 `labels` against `scores`; NaN when the labels hold one value only."""
    labels, scores = np.asarray(labels).ravel(), np.asarray(scores, dtype=np.float64).ravel()
    if labels.shape != scores.shape:
        raise ValueError(f"Expected as many labels as scores; found {labels.size} labels and {scores.size} scores.")
    values = np.unique(labels)
    if not np.isin(values, (0, 1)).all():
        raise ValueError(f"Expected binary labels 0 and 1; found the values {values[:10].tolist()}.")
    if np.isnan(scores).any():
        raise ValueError(f"Expected scores without NaN; found {int(np.isnan(scores).sum())} NaN of {scores.size}.")
    positive = labels == 1
    n_positive = int(positive.sum())
    n_negative = labels.size - n_positive
    if n_positive == 0 or n_negative == 0:
        return math.nan
    rank_sum = _average_ranks(scores)[positive].sum()
    return float((rank_sum - n_positive * (n_positive + 1) / 2.0) / (n_positive * n_negative))


def per_class_auc(labels, scores, class_names: Sequence[str]) -> dict[str, float]:
    """`auc_<name>` for each class (column) of (N, C) 0/1 labels and scores, and `mean_auc` over the defined ones."""
    labels, scores = np.asarray(labels), np.asarray(scores, dtype=np.float64)
    if labels.ndim == 1 and len(class_names) == 1:
        labels = labels[:, None]
    if scores.ndim == 1 and len(class_names) == 1:
        scores = scores[:, None]
    if labels.ndim != 2 or labels.shape != scores.shape or labels.shape[1] != len(class_names):
        raise ValueError(f"Expected labels and scores of one shape (N, {len(class_names)}) for the classes "
                         f"{list(class_names)}; found {labels.shape} and {scores.shape}.")
    if len(set(class_names)) != len(class_names):
        raise ValueError(f"Expected distinct class names; found {list(class_names)}.")
    metrics, undefined = {}, []
    for column, name in enumerate(class_names):
        try:
            auc = roc_auc(labels[:, column], scores[:, column])
        except ValueError as error:
            raise ValueError(f"Class {name!r}: {error}") from None
        if math.isnan(auc):
            undefined.append(name)
        metrics[f"auc_{name}"] = auc
    defined = [auc for auc in metrics.values() if not math.isnan(auc)]
    if undefined:
        warnings.warn(
            f"ROC-AUC is undefined for {undefined}: their labels hold one value only in these {labels.shape[0]} "
            "samples. They are NaN and left out of mean_auc.",
            UserWarning,
            stacklevel=2,
        )
    if not defined:
        warnings.warn("No class has a defined ROC-AUC: mean_auc is NaN.", UserWarning, stacklevel=2)
    metrics["mean_auc"] = float(np.mean(defined)) if defined else math.nan
    return metrics


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def make_compute_metrics(class_names: Sequence[str], problem_type: ProblemType) -> Callable:
    """A Trainer `compute_metrics(eval_pred)` giving `auc_<name>` per class and `mean_auc`.

    "multi_label_classification": logits (N, C), 0/1 labels (N, C); the AUC of sigmoid(logits) is taken on the
    logits themselves (the same ranks, without float saturation ties). "single_label_classification": logits (N, K),
    class ids (N,); one-vs-rest AUC of the softmax of each class (ranked by its log-softmax). With K = 2 only the
    AUC of class 1 is reported (class 0's is the same), under `class_names[1]`.
    """
    class_names = list(class_names)
    if problem_type not in ("multi_label_classification", "single_label_classification"):
        raise ValueError("`problem_type` must be 'multi_label_classification' or 'single_label_classification'; "
                         f"found {problem_type!r}.")

    def compute_metrics(eval_pred) -> dict[str, float | None]:
        logits, labels = eval_pred.predictions, eval_pred.label_ids
        if isinstance(logits, (tuple, list)):
            logits = logits[0]
        logits, labels = np.asarray(logits, dtype=np.float64), np.asarray(labels)
        if logits.ndim == 1:
            logits = logits[:, None]
        if logits.shape[-1] != len(class_names):
            raise ValueError(f"Expected logits with {len(class_names)} columns for the classes {class_names}; found "
                             f"the shape {logits.shape}.")
        if problem_type == "multi_label_classification":
            metrics = per_class_auc(labels.reshape(logits.shape), logits, class_names)
        else:
            labels = labels.reshape(-1).astype(np.int64)
            if labels.min(initial=0) < 0 or labels.max(initial=0) >= logits.shape[1]:
                raise ValueError(f"Expected class ids 0 .. {logits.shape[1] - 1}; found {np.unique(labels)[:10]}.")
            scores = _log_softmax(logits)
            one_hot = labels[:, None] == np.arange(logits.shape[1])[None, :]
            if logits.shape[1] == 2:
                metrics = per_class_auc(one_hot[:, 1:], scores[:, 1:], class_names[1:])
            else:
                metrics = per_class_auc(one_hot, scores, class_names)
        return {k: None if math.isnan(v) and k != "mean_auc" else float(v) for k, v in metrics.items()}

    return compute_metrics
