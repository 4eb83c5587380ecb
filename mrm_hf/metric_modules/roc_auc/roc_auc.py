"""ROC-AUC per class and its mean over classes: the published metric of MRM's classification tasks.

Shipped with mrm_hf and loaded by path (`mrm_hf.metrics.load_metric("roc_auc")`), so nothing reaches the Hub. The AUC is
the Mann-Whitney statistic with average ranks for ties, which equals scikit-learn's `roc_auc_score` without needing it.

Inputs: `predictions`, scores of shape (N,) for one class or (N, C) for C classes (any monotone score: logits,
probabilities); `references`, 0/1 labels of the same shape. `class_names` names the C columns (default "0", "1", ...).
Output: `auc_<name>` per class and `mean_auc`, the mean over the classes whose AUC is defined. A class whose labels hold
one value only has no AUC: it is NaN, named in a warning, and left out of the mean (NaN when no class has an AUC).
"""

import math
import warnings

import datasets
import evaluate
import numpy as np


_DESCRIPTION = __doc__
_CITATION = """\
@article{hanley1982meaning,
  title   = {The meaning and use of the area under a receiver operating characteristic (ROC) curve},
  author  = {Hanley, James A and McNeil, Barbara J},
  journal = {Radiology},
  volume  = {143},
  number  = {1},
  pages   = {29--36},
  year    = {1982}
}
"""
_KWARGS_DESCRIPTION = """
Args:
    predictions: (N,) or (N, C) scores.
    references: (N,) or (N, C) 0/1 labels.
    class_names: the C class names, in column order (default "0", "1", ...).
Returns:
    auc_<name> per class (NaN where undefined) and mean_auc.
"""


def average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks of `values`, tied values sharing the mean of their ranks."""
    order = np.argsort(values, kind="mergesort")
    ordered = values[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    ends = np.r_[starts[1:], len(values)]
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = np.repeat((starts + ends + 1) / 2.0, ends - starts)
    return ranks


def binary_roc_auc(labels: np.ndarray, scores: np.ndarray, name: str = "The labels") -> float:
    """Area under the ROC curve of 0/1 `labels` against `scores`; NaN when the labels hold one value only. `name` says
    whose labels an error is about."""
    values = np.unique(labels)
    if not np.isin(values, (0, 1)).all():
        shown = [int(v) if float(v).is_integer() else float(v) for v in values[:10]]
        raise ValueError(f"{name}: expected binary labels 0 and 1; found the values {shown}.")
    if np.isnan(scores).any():
        raise ValueError(f"{name}: expected scores without NaN; found {int(np.isnan(scores).sum())} NaN of "
                         f"{scores.size}.")
    positive = labels == 1
    n_positive = int(positive.sum())
    n_negative = labels.size - n_positive
    if n_positive == 0 or n_negative == 0:
        return math.nan
    rank_sum = average_ranks(scores)[positive].sum()
    return float((rank_sum - n_positive * (n_positive + 1) / 2.0) / (n_positive * n_negative))


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class RocAuc(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=[
                datasets.Features(
                    {"predictions": datasets.Sequence(datasets.Value("float64")),
                     "references": datasets.Sequence(datasets.Value("float64"))}
                ),
                datasets.Features({"predictions": datasets.Value("float64"), "references": datasets.Value("float64")}),
            ],
            reference_urls=["https://scikit-learn.org/stable/modules/generated/sklearn.metrics.roc_auc_score.html"],
        )

    def _compute(self, predictions, references, class_names=None):
        scores = np.asarray(predictions, dtype=np.float64)
        labels = np.asarray(references, dtype=np.float64)
        if scores.ndim == 1:
            scores, labels = scores[:, None], labels[:, None]
        if class_names is None:
            class_names = [str(column) for column in range(scores.shape[1])]
        class_names = list(class_names)
        if labels.shape != scores.shape or scores.shape[1] != len(class_names):
            raise ValueError(f"The references and predictions: expected one shape (N, {len(class_names)}) for the "
                             f"classes {class_names}; found {labels.shape} and {scores.shape}.")
        if len(set(class_names)) != len(class_names):
            raise ValueError(f"class_names: expected distinct names; found {class_names}.")
        metrics, undefined = {}, []
        for column, name in enumerate(class_names):
            auc = binary_roc_auc(labels[:, column], scores[:, column], f"Class {name!r}")
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
