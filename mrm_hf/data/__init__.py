"""Data: report sections, MIMIC-CXR records and the MRM collator. Imports nothing from the model."""

from .collator import DataCollatorForMRM, token_lookups, whole_word_mask
from .mimic import CHEXPERT_LABELS, RecordError, load_mimic_cxr, load_training_csv, write_resized_copy
from .reports import REPORT_POLICIES, extract_sections, report_text


__all__ = [
    "CHEXPERT_LABELS",
    "REPORT_POLICIES",
    "DataCollatorForMRM",
    "RecordError",
    "extract_sections",
    "load_mimic_cxr",
    "load_training_csv",
    "report_text",
    "token_lookups",
    "whole_word_mask",
    "write_resized_copy",
]
