import csv
import functools
import json
import math
import warnings

import numpy as np
import pytest
from transformers import EvalPrediction

from mrm_hf.metrics import load_metric, make_compute_metrics


sklearn_metrics = pytest.importorskip("sklearn.metrics", reason="scikit-learn is the reference these tests compare to")
NIH_LABELS = ["Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule", "Pneumonia", "Pneumothorax",
              "Consolidation", "Edema", "Emphysema", "Fibrosis", "Pleural_Thickening", "Hernia"]


@functools.cache
def roc_auc_metric():
    return load_metric("roc_auc")


def roc_auc(labels, scores):
    """The evaluate module's AUC of one class, as a one-column (N, 1) input."""
    return per_class_auc(np.asarray(labels, float)[:, None], np.asarray(scores, float)[:, None], ["0"])["auc_0"]


def per_class_auc(labels, scores, class_names):
    """The evaluate module's per-class and mean AUC."""
    return roc_auc_metric().compute(
        predictions=np.asarray(scores, float), references=np.asarray(labels, float), class_names=class_names
    )


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def softmax(x):
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("seed, size, prevalence", [(0, 10, 0.5), (1, 1000, 0.1), (2, 5000, 0.02), (3, 7, 0.6)])
def test_auc_equals_sklearn_on_random_scores(seed, size, prevalence):
    rng = np.random.default_rng(seed)
    labels = (rng.random(size) < prevalence).astype(int)
    labels[:2] = [0, 1]
    scores = rng.normal(size=size) + labels
    assert abs(roc_auc(labels, scores) - sklearn_metrics.roc_auc_score(labels, scores)) < 1e-12


@pytest.mark.parametrize("seed, levels", [(0, 2), (1, 3), (2, 10), (3, 1)])
def test_auc_equals_sklearn_on_tied_scores(seed, levels):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, size=500)
    labels[:2] = [0, 1]
    scores = rng.integers(0, levels, size=500).astype(np.float32) / 7  # few distinct values: heavy ties
    expected = sklearn_metrics.roc_auc_score(labels, scores)
    assert abs(roc_auc(labels, scores) - expected) < 1e-12
    if levels == 1:
        assert roc_auc(labels, scores) == 0.5


def test_auc_of_a_perfect_and_a_reversed_ranking():
    labels = [0, 0, 1, 1]
    assert roc_auc(labels, [0.1, 0.2, 0.3, 0.4]) == 1.0
    assert roc_auc(labels, [0.4, 0.3, 0.2, 0.1]) == 0.0
    assert roc_auc([True, False], [0.9, 0.1]) == 1.0


def test_auc_rejects_non_binary_labels_and_nan_scores():
    with pytest.raises(ValueError, match=r"Class '0': expected binary labels 0 and 1; found the values \[0, 1, 2\]"):
        roc_auc([0, 1, 2], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match=r"number of predictions \(3\) and references \(2\)"):
        roc_auc([0, 1], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match=r"Class 'Edema': expected scores without NaN; found 1 NaN of 3"):
        per_class_auc([[0], [1], [1]], [[0.1], [np.nan], [0.2]], ["Edema"])


def test_per_class_auc_equals_sklearn_per_class_and_on_average():
    rng = np.random.default_rng(0)
    labels = (rng.random((400, 5)) < [0.3, 0.1, 0.05, 0.3, 0.45]).astype(int)
    scores = rng.normal(size=(400, 5)) + labels
    scores[:, 1] = np.round(scores[:, 1], 1)  # ties in one class
    names = ["Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Pleural Effusion"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        metrics = per_class_auc(labels, scores, names)
    expected = [sklearn_metrics.roc_auc_score(labels[:, c], scores[:, c]) for c in range(5)]
    assert list(metrics) == [f"auc_{n}" for n in names] + ["mean_auc"]
    for name, value in zip(names, expected):
        assert abs(metrics[f"auc_{name}"] - value) < 1e-12
    assert abs(metrics["mean_auc"] - np.mean(expected)) < 1e-12
    assert abs(metrics["mean_auc"] - sklearn_metrics.roc_auc_score(labels, scores, average="macro")) < 1e-12


def test_a_class_with_one_label_value_is_nan_named_and_left_out_of_the_mean():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, size=(50, 3))
    labels[:, 2] = 0
    scores = rng.normal(size=(50, 3))
    with pytest.warns(UserWarning, match=r"undefined for \['Hernia'\]: their labels hold one value only in these 50"):
        metrics = per_class_auc(labels, scores, ["Mass", "Nodule", "Hernia"])
    assert math.isnan(metrics["auc_Hernia"])
    expected = np.mean([sklearn_metrics.roc_auc_score(labels[:, c], scores[:, c]) for c in range(2)])
    assert abs(metrics["mean_auc"] - expected) < 1e-12


def test_no_defined_class_gives_a_nan_mean_with_a_warning():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        metrics = per_class_auc(np.ones((4, 2)), np.zeros((4, 2)), ["a", "b"])
    assert math.isnan(metrics["auc_a"]) and math.isnan(metrics["auc_b"]) and math.isnan(metrics["mean_auc"])
    assert any("No class has a defined ROC-AUC" in str(w.message) for w in caught)


def test_hernia_has_no_positive_in_the_real_nih_64px_validation_set(shared):
    with open(shared("data", "nih14", "nih14_64px_val.csv"), newline="") as file:
        labels = np.array([[int(row[c]) for c in NIH_LABELS] for row in csv.DictReader(file)])
    scores = np.random.default_rng(0).normal(size=labels.shape) + labels
    with pytest.warns(UserWarning, match=r"undefined for \['Hernia'\]"):
        metrics = per_class_auc(labels, scores, NIH_LABELS)
    expected = [sklearn_metrics.roc_auc_score(labels[:, c], scores[:, c]) for c in range(13)]
    assert abs(metrics["mean_auc"] - np.mean(expected)) < 1e-12


def test_compute_metrics_multi_label_on_an_eval_prediction_is_plain_and_json_safe():
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 2, size=(64, 3)).astype(np.float32)
    labels[:, 2] = 1.0  # undefined
    logits = rng.normal(size=(64, 3)).astype(np.float32)
    compute = make_compute_metrics(["Edema", "Pleural Effusion", "Hernia"], "multi_label_classification")
    with pytest.warns(UserWarning, match=r"\['Hernia'\]"):
        metrics = compute(EvalPrediction(predictions=(logits, np.zeros(1)), label_ids=labels))
    assert list(metrics) == ["auc_Edema", "auc_Pleural Effusion", "auc_Hernia", "mean_auc"]
    assert metrics["auc_Hernia"] is None
    assert all(type(v) is float for k, v in metrics.items() if k != "auc_Hernia")
    expected = [sklearn_metrics.roc_auc_score(labels[:, c], sigmoid(logits[:, c].astype(np.float64))) for c in range(2)]
    assert abs(metrics["auc_Edema"] - expected[0]) < 1e-12
    assert abs(metrics["mean_auc"] - np.mean(expected)) < 1e-12
    json.dumps(metrics, allow_nan=False)


def test_compute_metrics_ranks_logits_so_saturated_sigmoids_do_not_tie():
    labels = np.array([[0], [1], [0], [1]])
    logits = np.array([[40.0], [50.0], [60.0], [70.0]], dtype=np.float32)  # sigmoid is exactly 1.0 in float32
    assert sklearn_metrics.roc_auc_score(labels[:, 0], sigmoid(logits[:, 0])) == 0.5
    metrics = make_compute_metrics(["Pneumonia"], "multi_label_classification")(EvalPrediction(logits, labels))
    assert metrics == {"auc_Pneumonia": 0.75, "mean_auc": 0.75}


def test_compute_metrics_single_label_is_one_vs_rest_on_the_softmax():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 3, size=200)
    logits = rng.normal(size=(200, 3)) + np.eye(3)[labels]
    metrics = make_compute_metrics(["a", "b", "c"], "single_label_classification")(EvalPrediction(logits, labels))
    probabilities = softmax(logits)
    for k, name in enumerate("abc"):
        assert abs(metrics[f"auc_{name}"] - sklearn_metrics.roc_auc_score(labels == k, probabilities[:, k])) < 1e-12
    expected = sklearn_metrics.roc_auc_score(labels, probabilities, multi_class="ovr", average="macro")
    assert abs(metrics["mean_auc"] - expected) < 1e-12


def test_compute_metrics_binary_with_two_logits_reports_class_1():
    rng = np.random.default_rng(4)
    labels = rng.integers(0, 2, size=100)
    logits = rng.normal(size=(100, 2)) + np.eye(2)[labels]
    compute = make_compute_metrics(["other", "COVID-19"], "single_label_classification")
    metrics = compute(EvalPrediction(logits.astype(np.float32), labels))
    expected = sklearn_metrics.roc_auc_score(labels, softmax(logits.astype(np.float32).astype(np.float64))[:, 1])
    assert list(metrics) == ["auc_COVID-19", "mean_auc"]
    assert abs(metrics["auc_COVID-19"] - expected) < 1e-12 and metrics["mean_auc"] == metrics["auc_COVID-19"]


def test_compute_metrics_says_what_shape_it_expected():
    compute = make_compute_metrics(NIH_LABELS, "multi_label_classification")
    with pytest.raises(ValueError, match=r"logits: expected 14 columns .* found the shape \(4, 5\)"):
        compute(EvalPrediction(np.zeros((4, 5)), np.zeros((4, 5))))
    with pytest.raises(ValueError, match="problem_type: expected one of 'multi_label_classification', 'single_label"):
        make_compute_metrics(NIH_LABELS, "regression")


def test_the_roc_auc_module_takes_one_class_as_a_vector_and_equals_sklearn():
    rng = np.random.default_rng(5)
    labels = rng.integers(0, 2, size=300)
    scores = rng.normal(size=300) + labels
    metric = load_metric("roc_auc")  # a fresh instance: evaluate fixes the input format on the first call
    metrics = metric.compute(predictions=scores, references=labels)
    assert list(metrics) == ["auc_0", "mean_auc"]
    assert abs(metrics["auc_0"] - sklearn_metrics.roc_auc_score(labels, scores)) < 1e-12
