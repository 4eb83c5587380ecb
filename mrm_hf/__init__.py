"""mrm-hf: Masked Record Modeling (MRM, ICLR 2023) for the Hugging Face stack."""

from transformers import (
    AutoBackbone,
    AutoConfig,
    AutoImageProcessor,
    AutoModel,
    AutoModelForImageClassification,
    AutoModelForPreTraining,
    AutoProcessor,
    AutoVideoProcessor,
)
from transformers.utils import is_torchvision_available

from .configuration_mrm import MRMConfig
from .image_processing_mrm import MRMImageProcessor
from .modeling_mrm import MRMBackbone, MRMForImageClassification, MRMForPreTraining, MRMModel, MRMPreTrainedModel
from .processing_mrm import MRMProcessor
from .report_filling import fill_report
from .tokenization_mrm import load_published_tokenizer, train_report_tokenizer


__version__ = "0.1.0"

AutoConfig.register("mrm", MRMConfig, exist_ok=True)
AutoModel.register(MRMConfig, MRMModel, exist_ok=True)
AutoModelForPreTraining.register(MRMConfig, MRMForPreTraining, exist_ok=True)
AutoModelForImageClassification.register(MRMConfig, MRMForImageClassification, exist_ok=True)
AutoBackbone.register(MRMConfig, MRMBackbone, exist_ok=True)
# One PIL-based processor serves every backend name, so that no backend choice falls back with a warning.
AutoImageProcessor.register(
    MRMConfig, image_processor_classes={"pil": MRMImageProcessor, "torchvision": MRMImageProcessor}, exist_ok=True
)
AutoProcessor.register(MRMConfig, MRMProcessor, exist_ok=True)
# MRM has no video processor. Saying so keeps pipelines, which look for one, from inferring "MRMVideoProcessor"
# from the image processor's auto_map and prompting to run custom code that does not exist. AutoVideoProcessor exists
# only with torchvision, which mrm_hf does not need (its transforms are PIL/torch); without it, pipelines find no video
# processor anyway, so there is nothing to say.
if is_torchvision_available():
    AutoVideoProcessor.register(MRMConfig, video_processor_classes={}, exist_ok=True)

__all__ = [
    "MRMConfig",
    "MRMModel",
    "MRMForPreTraining",
    "MRMForImageClassification",
    "MRMBackbone",
    "MRMPreTrainedModel",
    "MRMImageProcessor",
    "MRMProcessor",
    "fill_report",
    "load_published_tokenizer",
    "train_report_tokenizer",
]
