"""What MRM's report branch reads from the image: image-conditioned report filling, and a diagnostic of image use.

The report branch is a BERT that fills masked report words with the image's global feature added to every token.
- `pipeline("mrm-report-fill-mask", model=folder)` (registered when `mrm_hf` is imported) and `fill_report` take an
  image and a report with [MASK] tokens, and give the top-k tokens for each [MASK], shaped as transformers'
  `fill-mask` result: for one [MASK] a list of `{score, token, token_str, sequence}`, for several one list each.
- `report_loss_by_image` is the report loss of held-out records with each record's own image, with the image feature
  zeroed, and with another record's image. A report branch that ignores the image gives three equal losses; one that
  reads it does worse without its own image.

Both read the model through its doors, `MRMForPreTraining.get_image_features` and `get_report_logits`, the ones its
own forward uses, and look at the whole image: the encoder sees the unmasked view (in pre-training it saw a quarter of
the patches), so the global feature is the mean over every patch.
"""

import math
import warnings

import numpy as np
import torch
from transformers import AutoModelForPreTraining, Pipeline, pipeline
from transformers.pipelines import PIPELINE_REGISTRY

from .modeling_mrm import MRMForPreTraining


TASK = "mrm-report-fill-mask"
IMAGE_CONDITIONS = ("own", "zero", "shuffled")


@torch.no_grad()
def image_reliance_verdict(own: float, zero: float, shuffled: float, tolerance: float = 0.01) -> str:
    """What the three held-out report losses of `report_loss_by_image` say, in words: whether the report branch reads
    the image, and whether it reads which image. A loss counts as higher when it exceeds the own-image loss by more
    than `tolerance` of it."""
    if any(math.isnan(loss) for loss in (own, zero, shuffled)):
        return "Not decided: one of the losses is undefined (too few held-out records)."
    uses_image, uses_which = zero > own * (1 + tolerance), shuffled > own * (1 + tolerance)
    if uses_image and uses_which:
        return ("The report branch reads the image: its held-out report loss is lowest with each record's own image "
                "and rises both with the image feature zeroed and with another record's image.")
    if uses_image:
        return ("The report branch relies on the image feature, but not yet on which image it sees: the loss rises "
                "when the feature is zeroed, not when it comes from another record. Longer pre-training is needed "
                "for the report to depend on its own image.")
    if uses_which:
        return ("The report branch prefers its own image to another record's, but does no worse with no image at "
                "all: it reads the image only weakly.")
    percent = f"{100 * tolerance:g}%"
    return f"The report branch does not read the image: the three losses are within {percent} of each other."


def report_loss_by_image(model: MRMForPreTraining, batches, accelerator=None) -> dict[str, float]:
    """Report loss of held-out masked records: `report_loss_own_image`, `report_loss_zero_image` (no image feature)
    and `report_loss_shuffled_image` (the feature of the next record, cyclically), summed over every labelled token
    of every process (pass the `accelerator` of a distributed run), over the same masked reports.

    `batches` are pre-training batches (`pixel_values`, `input_ids`, `attention_mask`, `labels`). The shuffled loss is
    NaN, with a warning, when a process holds fewer than two records. Under FSDP, whose sharded parameters exist only
    inside the wrapped model's own forward, nothing is measured ({} and a warning); nor for a model without a report
    branch ({}).
    """
    if getattr(model, "report_branch", None) is None:  # an image-only model (--image_only): nothing to measure
        return {}
    if accelerator is not None and str(accelerator.distributed_type).endswith("FSDP"):
        warnings.warn("report_loss_by_image calls the model's doors (get_image_features, get_report_logits) outside "
                      "its forward, which FSDP's sharded parameters do not allow: the image-use diagnostic is not "
                      "measured in this run.", UserWarning)
        return {}
    was_training = model.training
    model.eval()
    reports, features = [], []
    for number, batch in enumerate(batches):
        if batch.get("labels") is None:
            raise ValueError(f"report_loss_by_image, batch {number}: expected masked reports with `labels`; found "
                             "none.")
        features.append(model.get_image_features(batch["pixel_values"]).pooler_output)
        reports.append({k: batch.get(k) for k in ("input_ids", "attention_mask", "token_type_ids", "labels")})
    if not features:
        raise ValueError("report_loss_by_image: expected at least one batch; found none.")
    others = torch.cat(features).roll(1, dims=0).split([len(feature) for feature in features])
    totals = torch.zeros(5, dtype=torch.float64, device=features[0].device)  # 3 summed losses, tokens, lone records
    for report, feature, other in zip(reports, features, others):
        for index, condition in enumerate((feature, torch.zeros_like(feature), other)):
            logits = model.get_report_logits(
                report["input_ids"], condition, report["attention_mask"], report["token_type_ids"]
            )
            summed, count = model.report_loss(logits, report["labels"])
            totals[index] += summed.double()
        totals[3] += count
    totals[4] = float(sum(len(feature) for feature in features) < 2)
    if accelerator is not None:
        totals = accelerator.reduce(totals, "sum")
    model.train(was_training)
    losses = {f"report_loss_{name}_image": (totals[i] / totals[3].clamp(min=1)).item()
              for i, name in enumerate(IMAGE_CONDITIONS)}
    if totals[4] > 0:
        warnings.warn("report_loss_shuffled_image needs two records or more per process; it is NaN.", UserWarning)
        losses["report_loss_shuffled_image"] = math.nan
    return losses


class MRMReportFillMaskPipeline(Pipeline):
    """Fill the [MASK] tokens of a report given the record's image, with an MRM pre-training model and its processor."""

    _load_processor = True
    _load_image_processor = False
    _load_feature_extractor = False
    _load_tokenizer = False

    def _sanitize_parameters(self, top_k=None, **kwargs):
        postprocess_params = {} if top_k is None else {"top_k": top_k}
        return {}, {}, postprocess_params

    def __call__(self, image, report: str | list[str] | None = None, **kwargs):
        """`pipe(image, report)`, `pipe([images], [reports])`, or `pipe({"image": ..., "report": ...})`."""
        if report is None:
            inputs = image
        elif isinstance(report, str):
            inputs = {"image": image, "report": report}
        else:
            images = image if isinstance(image, (list, tuple)) else [image] * len(report)
            if len(images) != len(report):
                raise ValueError(
                    f"image, report: expected one image per report; found {len(images)} images and {len(report)} "
                    "reports."
                )
            inputs = [{"image": i, "report": r} for i, r in zip(images, report)]
        return super().__call__(inputs, **kwargs)

    def preprocess(self, inputs: dict) -> dict:
        if not isinstance(inputs, dict) or not {"image", "report"} <= set(inputs):
            raise ValueError(
                f"inputs: expected an image and a report, or a dict with 'image' and 'report'; found {inputs!r:.80}."
            )
        report, mask = inputs["report"], self.processor.tokenizer.mask_token
        if mask not in report:
            raise ValueError(f"The report: expected at least one {mask}; found no {mask} token to fill: "
                             f"{report!r:.200}. Write {mask} where a word is to be predicted, e.g. 'no pleural "
                             "[MASK].'")
        model_inputs = self.processor(images=inputs["image"], text=report, return_tensors="pt")
        if not (model_inputs["input_ids"] == self.processor.tokenizer.mask_token_id).any():
            raise ValueError(f"The report's {mask} tokens: expected at least one within the report branch's "
                             f"{model_inputs['input_ids'].shape[1]} positions; found every one beyond them. Shorten "
                             "the report.")
        model_inputs["pixel_values"] = model_inputs["pixel_values"].to(self.dtype)
        return model_inputs

    def _forward(self, model_inputs: dict) -> dict:
        logits = self.model.get_report_logits(
            model_inputs["input_ids"],
            self.model.get_image_features(model_inputs["pixel_values"]).pooler_output,
            model_inputs.get("attention_mask"),
            model_inputs.get("token_type_ids"),
        )
        return {"logits": logits, "input_ids": model_inputs["input_ids"]}

    def postprocess(self, model_outputs: dict, top_k: int = 5):
        tokenizer = self.processor.tokenizer
        input_ids = model_outputs["input_ids"][0]
        masked = torch.nonzero(input_ids == tokenizer.mask_token_id).squeeze(-1)
        probabilities = model_outputs["logits"][0, masked].float().softmax(dim=-1)
        values, predictions = probabilities.topk(min(top_k, probabilities.shape[-1]))
        single_mask = len(masked) == 1
        result = []
        for position, scores, tokens in zip(masked.tolist(), values.tolist(), predictions.tolist()):
            row = []
            for score, token in zip(scores, tokens):
                filled = input_ids.numpy().copy()
                filled[position] = token
                filled = filled[np.where(filled != tokenizer.pad_token_id)]
                # As fill-mask: special tokens are dropped from the sequence unless other [MASK]s must stay visible.
                sequence = tokenizer.decode(filled, skip_special_tokens=single_mask)
                row.append({"score": score, "token": token, "token_str": tokenizer.decode([token]), "sequence": sequence})
            result.append(row)
        return result[0] if single_mask else result


PIPELINE_REGISTRY.register_pipeline(TASK, pipeline_class=MRMReportFillMaskPipeline, pt_model=AutoModelForPreTraining)


def fill_report(image, report: str, model, processor=None, top_k: int = 5):
    """The top-k tokens for each [MASK] of `report` given `image`, from an MRM pre-training folder or model."""
    return pipeline(TASK, model=model, processor=processor)(image, report, top_k=top_k)


__all__ = [
    "TASK",
    "MRMReportFillMaskPipeline",
    "fill_report",
    "image_reliance_verdict",
    "report_loss_by_image",
]
