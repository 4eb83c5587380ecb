"""ROC-AUC for chest X-ray classification, the published metric (mean of the per-class AUCs), through `evaluate`.

The metric is the local module `metric_modules/roc_auc` (loaded by path, so offline), equal to scikit-learn's
`roc_auc_score`. A class whose labels hold one value only has no AUC: it is NaN, left out of the mean, and named in a
warning.

`make_compute_metrics` gives Trainer a `compute_metrics` returning plain Python values, JSON-safe as Trainer writes
them to `trainer_state.json`: an undefined per-class AUC is None (JSON null), not NaN. `mean_auc` is always a float so
that `metric_for_best_model="mean_auc"` can compare it; it is NaN only when no class has an AUC (never a new best).

Segmentation is scored by the local module `metric_modules/mask_dice`, on masks packed by `pack_masks`.
"""

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import get_args

import numpy as np

from .problem_types import ProblemType
from .utils import check_choice


METRIC_MODULES = Path(__file__).with_name("metric_modules")


def load_metric(name: str, **kwargs):
    """An `evaluate` metric shipped with the package (`mrm_hf/metric_modules/<name>/<name>.py`), loaded by path.

    Loading by path keeps evaluation offline: `evaluate.load("<hub name>")` would reach the Hub.
    """
    import evaluate

    path = METRIC_MODULES / name / f"{name}.py"
    if not path.is_file():
        shipped = sorted(p.name for p in METRIC_MODULES.iterdir() if (p / f"{p.name}.py").is_file())
        raise ValueError(
            f"metric {name!r}: expected one shipped in {METRIC_MODULES}, one of {shipped}; found no {name}/{name}.py."
        )
    return evaluate.load(str(path), **kwargs)


def pack_masks(masks) -> list[bytes]:
    """Each (H, W) 0/1 mask as the bytes of `np.packbits` of its pixels: the compact input of the `mask_dice` metric."""
    masks = np.asarray(masks)
    return [row.tobytes() for row in np.packbits(masks.reshape(len(masks), -1) != 0, axis=1)]


def single_label_scores(logits: np.ndarray, class_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, slice]:
    """The single-label AUC rule, in one place: (scores, references, columns) for one-vs-rest AUCs of the softmax.

    The scores are the log-softmax of the logits (it ranks like the softmax, without float saturation ties) and the
    references the one-hot class ids; `columns` keeps every class, or with two classes only class 1 (class 0's AUC is
    the same)."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    scores = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    one_hot = class_ids[:, None] == np.arange(logits.shape[1])[None, :]
    return scores, one_hot, slice(1, None) if logits.shape[1] == 2 else slice(None)


def make_compute_metrics(class_names: Sequence[str], problem_type: ProblemType) -> Callable:
    """A Trainer `compute_metrics(eval_pred)` giving `auc_<name>` per class and `mean_auc`.

    "multi_label_classification": logits (N, C), 0/1 labels (N, C); the AUC of sigmoid(logits) is taken on the
    logits themselves (the same ranks, without float saturation ties). "single_label_classification": logits (N, K),
    class ids (N,); one-vs-rest AUC of the softmax of each class (ranked by its log-softmax). With K = 2 only the
    AUC of class 1 is reported (class 0's is the same), under `class_names[1]`.
    """
    class_names = list(class_names)
    check_choice("problem_type", problem_type, get_args(ProblemType))
    roc_auc = load_metric("roc_auc")

    def compute_metrics(eval_pred) -> dict[str, float | None]:
        logits, labels = eval_pred.predictions, eval_pred.label_ids
        if isinstance(logits, (tuple, list)):
            logits = logits[0]
        logits, labels = np.asarray(logits, dtype=np.float64), np.asarray(labels)
        if logits.ndim == 1:
            logits = logits[:, None]
        if logits.shape[-1] != len(class_names):
            raise ValueError(f"logits: expected {len(class_names)} columns for the classes {class_names}; found "
                             f"the shape {logits.shape}.")
        if problem_type == "multi_label_classification":
            metrics = roc_auc.compute(
                predictions=logits, references=labels.reshape(logits.shape), class_names=class_names
            )
        else:
            labels = labels.reshape(-1).astype(np.int64)
            if labels.min(initial=0) < 0 or labels.max(initial=0) >= logits.shape[1]:
                raise ValueError(
                    f"labels: expected class ids in [0, {logits.shape[1]}); found {np.unique(labels)[:10]}."
                )
            scores, one_hot, columns = single_label_scores(logits, labels)
            metrics = roc_auc.compute(
                predictions=scores[:, columns], references=one_hot[:, columns], class_names=class_names[columns]
            )
        return {k: None if math.isnan(v) and k != "mean_auc" else float(v) for k, v in metrics.items()}

    return compute_metrics
