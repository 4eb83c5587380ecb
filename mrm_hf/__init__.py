"""mrm-hf: Masked Record Modeling (MRM, ICLR 2023) for the Hugging Face stack."""

import transformers
from transformers import AutoConfig, AutoImageProcessor, AutoProcessor, AutoVideoProcessor
from transformers.utils import is_torchvision_available

from .configuration_mrm import MRMConfig
from .image_processing_mrm import MRMImageProcessor
from .modeling_mrm import (
    AUTO_MODEL_CLASSES,
    MRMBackbone,
    MRMForImageClassification,
    MRMForPreTraining,
    MRMModel,
    MRMPreTrainedModel,
)
from .pipelines import use_radiograph_pipelines
from .processing_mrm import MRMProcessor
from .report_filling import fill_report
from .tokenization_mrm import load_published_tokenizer, train_report_tokenizer


__version__ = "0.1.0"

# Local registrations, so that the Auto classes open MRM folders without remote code; the models' come from the same
# table as the auto_map their saved configs carry.
AutoConfig.register(MRMConfig.model_type, MRMConfig, exist_ok=True)
for auto_class, model_class in AUTO_MODEL_CLASSES.items():
    getattr(transformers, auto_class).register(MRMConfig, model_class, exist_ok=True)
del auto_class, model_class
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
# The image pipelines read what MRMImageProcessor reads (DICOM, 16-bit files, arrays) for MRM models, and are the
# stock ones for every other model (mrm_hf.pipelines).
use_radiograph_pipelines()

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
