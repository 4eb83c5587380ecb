"""transformers' image pipelines, reading radiographs the way MRMImageProcessor does.

The stock image-classification, image-feature-extraction and image-segmentation pipelines open every input with
`transformers.image_utils.load_image` before the image processor sees it: PIL only (so no DICOM), converted to 8-bit
RGB (so a 16-bit PNG or TIFF is clipped at 255), and no numpy, torch or pydicom inputs for the last two. Their
`preprocess` is the one place that does this, so these subclasses change only that: for a model whose image processor
is an `MRMImageProcessor`, the raw input goes to the processor's own reader (`fetch_images`, then
`convert_to_grayscale`: DICOM paths and pydicom Datasets with windowing and MONOCHROME1, 16-bit files at full depth,
PIL, numpy and torch images), so `pipe(x)` scores exactly `processor(x)`. For any other image processor they are the
stock pipelines. `import mrm_hf` makes them the classes of the three tasks (`use_radiograph_pipelines`).

The report pipeline (`mrm_hf.report_filling`) hands its image to `MRMProcessor`, which reads it the same way.
"""

import os

from transformers.image_utils import load_image
from transformers.pipelines import PIPELINE_REGISTRY
from transformers.pipelines.image_classification import ImageClassificationPipeline
from transformers.pipelines.image_feature_extraction import ImageFeatureExtractionPipeline
from transformers.pipelines.image_segmentation import ImageSegmentationPipeline


def reads_radiographs(image_processor) -> bool:
    """Whether the processor is an MRMImageProcessor, the package's or a saved folder's remote-code copy."""
    return any(cls.__name__ == "MRMImageProcessor" for cls in type(image_processor).__mro__)


def read_radiograph(image_processor, image):
    """An input as the (H, W) float32 array in [0, 1] the processor makes of it (its `bits_stored` included).

    http(s) addresses go through transformers' `load_image` (8-bit), as in the stock pipelines.
    """
    if isinstance(image, str) and image.startswith(("http://", "https://")) and not os.path.exists(image):
        image = load_image(image)
    return image_processor.convert_to_grayscale(image_processor.fetch_images(image))


class RadiographImageClassificationPipeline(ImageClassificationPipeline):
    """`pipeline("image-classification")` that reads radiographs as MRMImageProcessor does (see the module)."""

    def preprocess(self, image, timeout=None):
        if not reads_radiographs(self.image_processor):
            return super().preprocess(image, timeout=timeout)
        gray = read_radiograph(self.image_processor, image)
        return self.image_processor(images=gray, return_tensors="pt").to(self.dtype)


class RadiographImageFeatureExtractionPipeline(ImageFeatureExtractionPipeline):
    """`pipeline("image-feature-extraction")` that reads radiographs as MRMImageProcessor does (see the module)."""

    def preprocess(self, image, timeout=None, **image_processor_kwargs):
        if not reads_radiographs(self.image_processor):
            return super().preprocess(image, timeout=timeout, **image_processor_kwargs)
        gray = read_radiograph(self.image_processor, image)
        return self.image_processor(gray, return_tensors="pt", **image_processor_kwargs).to(self.dtype)


class RadiographImageSegmentationPipeline(ImageSegmentationPipeline):
    """`pipeline("image-segmentation")` that reads radiographs as MRMImageProcessor does (see the module); masks come
    back at the radiograph's own size."""

    def preprocess(self, image, subtask=None, timeout=None):
        if not reads_radiographs(self.image_processor):
            return super().preprocess(image, subtask=subtask, timeout=timeout)
        gray = read_radiograph(self.image_processor, image)
        inputs = self.image_processor(images=[gray], return_tensors="pt").to(self.dtype)
        inputs["target_size"] = [gray.shape]
        return inputs


RADIOGRAPH_PIPELINES = {
    "image-classification": RadiographImageClassificationPipeline,
    "image-feature-extraction": RadiographImageFeatureExtractionPipeline,
    "image-segmentation": RadiographImageSegmentationPipeline,
}


def use_radiograph_pipelines() -> None:
    """Make these the classes `pipeline(task)` builds for their three tasks, keeping each task's models and defaults.

    The registry's own `register_pipeline` would log that it overwrites a task; replacing only the class of an entry
    is quiet, and the stock behaviour stays for every model whose processor is not MRM's.
    """
    for task, pipeline_class in RADIOGRAPH_PIPELINES.items():
        entry = PIPELINE_REGISTRY.supported_tasks[task]
        if entry["impl"] is not pipeline_class:
            PIPELINE_REGISTRY.supported_tasks[task] = {**entry, "impl": pipeline_class}


__all__ = [
    "RadiographImageClassificationPipeline",
    "RadiographImageFeatureExtractionPipeline",
    "RadiographImageSegmentationPipeline",
    "read_radiograph",
    "reads_radiographs",
    "use_radiograph_pipelines",
]
