"""Processor of MRM (Masked Record Modeling, Zhou et al., ICLR 2023): one object for a record's image and report.

A flat file: `save_pretrained` copies it beside the config for `trust_remote_code`, so it imports nothing from mrm_hf
but its sibling flat file `image_processing_mrm.py`, which is copied with it.

- `processor(images=...)` is the image processor as saved: the encoder's view (the published evaluation view, 224 px
  for the published model), which is what `MRMModel`, `MRMForImageClassification` and the encoder-only pipelines take.
- `processor(images=..., text=...)` is what `MRMForPreTraining` takes: the image at the pre-training view
  (`reconstruction_size` px square, bicubic, as published; the model makes its encoder view itself), and the report
  as `input_ids`, `token_type_ids` and `attention_mask` ([CLS] first), truncated to the report branch's positions.
"""

from transformers.processing_utils import ProcessorMixin
from transformers.utils import logging

from .image_processing_mrm import MRMImageProcessor


logger = logging.get_logger(__name__)


class MRMProcessor(ProcessorMixin):
    """An MRM image processor (the encoder's view) and the report tokenizer, with the pre-training view's size.

    reconstruction_size: side of the pre-training view, the model's `config.reconstruction_size`; None for a
        processor whose model has no report branch to feed.
    max_report_length: the report branch's positions (`config.report_max_position_embeddings`); longer reports are
        truncated, with a warning.
    """

    def __init__(self, image_processor=None, tokenizer=None, reconstruction_size=None, max_report_length=None, **kwargs):
        super().__init__(image_processor, tokenizer, **kwargs)
        self.reconstruction_size = reconstruction_size
        self.max_report_length = max_report_length

    def __call__(self, images=None, text=None, return_tensors=None, padding=True, **kwargs):
        """The encoder's inputs from `images` alone; the pre-training model's inputs from `images` and `text`."""
        if images is None:
            if text is not None:
                raise ValueError(
                    "MRMProcessor: expected an image with each report; found a report (`text`) without an image: "
                    "MRM's report branch reads the image's global feature, so pass the record's `images` too."
                )
            raise ValueError(
                "MRMProcessor: expected `images` (and, for the pre-training model, the reports as `text`); "
                "found neither."
            )
        if text is None:
            return self.image_processor(images, return_tensors=return_tensors, **kwargs)
        if self.reconstruction_size is None:
            raise ValueError(
                "This MRMProcessor: expected `images` only, as it has no `reconstruction_size`: it belongs to a model "
                "without a report branch; found reports (`text`) too."
            )
        reports = [text] if isinstance(text, str) else list(text)
        if not all(isinstance(report, str) for report in reports):
            raise ValueError(f"text: expected a report or a list of reports (strings); found {type(text).__name__}.")
        size = self.reconstruction_size
        pixel_values = self.image_processor(
            images, mode="pretraining", size={"height": size, "width": size}, return_tensors=return_tensors, **kwargs
        )["pixel_values"]
        if len(pixel_values) != len(reports):
            raise ValueError(
                f"text: expected one report per image; found {len(pixel_values)} images and {len(reports)} reports."
            )
        max_length = self.max_report_length or self.tokenizer.model_max_length
        lengths = [len(ids) for ids in self.tokenizer(reports, truncation=False)["input_ids"]]
        if max(lengths) > max_length:
            logger.warning_once(
                f"Reports longer than the report branch's {max_length} positions are truncated to their first "
                f"{max_length} tokens."
            )
        encoding = self.tokenizer(
            reports, padding=padding, truncation=True, max_length=max_length, return_tensors=return_tensors
        )
        encoding["pixel_values"] = pixel_values
        return encoding

    @property
    def model_input_names(self) -> list[str]:
        return ["pixel_values", *self.tokenizer.model_input_names]


def encoder_image_processor(image_size: int = 224) -> MRMImageProcessor:
    """The encoder's view: the published evaluation view (short side to `image_size`, centre crop) at its input size."""
    return MRMImageProcessor(
        mode="evaluation", size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size}
    )


def processor_for_model(model, tokenizer, image_processor: MRMImageProcessor | None = None):
    """The MRMProcessor of an MRM model: its encoder's view, the report tokenizer, and the sizes its config gives; the
    image processor alone when there is no tokenizer (an image-only model).

    A model with a report branch (`MRMForPreTraining`) gets the pre-training view's size and its report positions;
    an encoder or a classifier takes images only.
    """
    config = model.config
    image_processor = image_processor if image_processor is not None else encoder_image_processor(config.image_size)
    if tokenizer is None:
        return image_processor
    with_report = getattr(model, "report_branch", None) is not None
    return MRMProcessor(
        image_processor,
        tokenizer,
        reconstruction_size=config.reconstruction_size if with_report else None,
        max_report_length=config.report_max_position_embeddings if with_report else None,
    )


MRMProcessor.register_for_auto_class("AutoProcessor")

__all__ = ["MRMProcessor", "encoder_image_processor", "processor_for_model"]
