"""Data: report sections, MIMIC-CXR records, the MRM collator, the synthetic demo records and the downstream
classification datasets. Imports nothing from the model."""

from ..problem_types import MULTI_LABEL, SINGLE_LABEL
from .classification import (
    CHEXPERT_COMPETITION_LABELS,
    COVID_LABELS,
    NIH_LABELS,
    RSNA_LABELS,
    VIRAL_LABELS,
    label_names,
    label_subset,
    load_chexpert,
    load_covid,
    load_csv,
    load_nih,
    load_rsna,
    problem_type_of,
)
from .collator import (
    ClassificationCollator,
    DataCollatorForMRM,
    ImageCollator,
    collate_segmentation,
    token_lookups,
    whole_word_mask,
)
from .demo import DEMO_DESCRIPTION, demo_report_texts, make_demo_dataset_dict, make_demo_records
from .mimic import CHEXPERT_LABELS, RecordError, load_mimic_cxr, load_training_csv, write_resized_copy
from .reports import REPORT_POLICIES, extract_sections, report_text
from .seeding import SAMPLE_INDEX, SeededDraws
from .splits import SplitListError, read_split_list


__all__ = [
    "CHEXPERT_COMPETITION_LABELS",
    "ClassificationCollator",
    "ImageCollator",
    "collate_segmentation",
    "MULTI_LABEL",
    "SINGLE_LABEL",
    "label_subset",
    "problem_type_of",
    "CHEXPERT_LABELS",
    "COVID_LABELS",
    "DEMO_DESCRIPTION",
    "NIH_LABELS",
    "RSNA_LABELS",
    "SplitListError",
    "VIRAL_LABELS",
    "demo_report_texts",
    "label_names",
    "load_chexpert",
    "load_covid",
    "load_csv",
    "load_nih",
    "load_rsna",
    "make_demo_dataset_dict",
    "make_demo_records",
    "read_split_list",
    "REPORT_POLICIES",
    "DataCollatorForMRM",
    "RecordError",
    "SAMPLE_INDEX",
    "SeededDraws",
    "extract_sections",
    "load_mimic_cxr",
    "load_training_csv",
    "report_text",
    "token_lookups",
    "whole_word_mask",
    "write_resized_copy",
]
