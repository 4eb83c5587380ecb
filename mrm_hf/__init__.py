"""mrm-hf: Masked Record Modeling (MRM, ICLR 2023) for the Hugging Face stack."""

from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForImageClassification,
    AutoModelForPreTraining,
)

from .configuration_mrm import MRMConfig
from .modeling_mrm import MRMForImageClassification, MRMForPreTraining, MRMModel, MRMPreTrainedModel


__version__ = "0.1.0"

AutoConfig.register("mrm", MRMConfig, exist_ok=True)
AutoModel.register(MRMConfig, MRMModel, exist_ok=True)
AutoModelForPreTraining.register(MRMConfig, MRMForPreTraining, exist_ok=True)
AutoModelForImageClassification.register(MRMConfig, MRMForImageClassification, exist_ok=True)

__all__ = [
    "MRMConfig",
    "MRMModel",
    "MRMForPreTraining",
    "MRMForImageClassification",
    "MRMPreTrainedModel",
]
