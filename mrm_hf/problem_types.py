"""What the `labels` of a classification task are: transformers' `config.problem_type` values that MRM uses, shared by
the data loaders, the collator and the metrics."""

from typing import Literal


ProblemType = Literal["multi_label_classification", "single_label_classification"]
MULTI_LABEL = "multi_label_classification"  # `labels` a list of 0/1 floats per image: BCE with logits
SINGLE_LABEL = "single_label_classification"  # `labels` a ClassLabel: softmax cross-entropy


__all__ = ["MULTI_LABEL", "SINGLE_LABEL", "ProblemType"]
