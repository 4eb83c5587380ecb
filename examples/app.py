"""A demo page for any MRM folder, served on localhost (Gradio); also the `app.py` of a Hugging Face Space.

With `pip install "mrm-hf[app]"`:

    python examples/app.py --model outputs/mrm-demo          # a pre-training folder
    python examples/app.py --model my-classifier --port 7861  # a fine-tuned classifier, or a segmentation folder

What the page shows depends on the folder:
- a classifier: upload a radiograph (PNG, JPEG, 16-bit PNG or DICOM) and see every finding's score, highest first,
  and the why-heatmaps of the top findings (`mrm_hf.explain`: Integrated Gradients at the patch tokens);
- a segmentation folder: the predicted mask over the radiograph, and its area;
- a pre-training folder: the reconstruction figure of the uploaded image, and report filling (a report with
  [MASK] where a word is to be predicted).
Every upload is shown as the model reads it (a DICOM windowed, MONOCHROME1 inverted). A file that cannot be read, or
a report without [MASK], gives a message in the page; the server keeps serving.
"""

import argparse
import os
import tempfile
from pathlib import Path

import gradio as gr
import numpy as np
import torch
from PIL import Image
from transformers import (
    AutoConfig,
    AutoImageProcessor,
    AutoModelForImageClassification,
    AutoModelForPreTraining,
    pipeline,
)

import mrm_hf  # noqa: F401 - registers MRM with the Auto classes and the radiograph-reading pipelines
from mrm_hf.explain import explain_figure, finding_scores
from mrm_hf.figures import save_reconstruction_figure, tint
from mrm_hf.pipelines import read_radiograph
from mrm_hf.report_filling import TASK as REPORT_FILL_TASK


CLASSIFIER, SEGMENTATION, PRETRAINING = "classifier", "segmentation", "pre-training"


def parse_arguments(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    # In a Space, where app.py runs without arguments: the MRM_MODEL variable names the model (a Hub id or folder),
    # and Gradio's own GRADIO_SERVER_NAME/GRADIO_SERVER_PORT the address.
    model = os.environ.get("MRM_MODEL")
    parser.add_argument("--model", required=model is None, default=model,
                        help="an MRM classifier, segmentation or pre-training folder or Hub id (default: $MRM_MODEL)")
    parser.add_argument("--host", default=None, help="address to serve on (default: Gradio's, 127.0.0.1)")
    parser.add_argument("--port", type=int, default=None, help="port to serve on (default: Gradio's, 7860)")
    parser.add_argument("--explain_top_k", type=int, default=3, help="findings with a why-heatmap (classifiers)")
    return parser.parse_args(argv)


def folder_kind(folder: str) -> str:
    """Which page the folder gets, from its config; any other folder is refused, naming what was found."""
    config = AutoConfig.from_pretrained(folder)
    architectures = config.architectures or []
    if config.model_type == "upernet":
        return SEGMENTATION
    if config.model_type == "mrm" and "MRMForImageClassification" in architectures:
        return CLASSIFIER
    if config.model_type == "mrm" and "MRMForPreTraining" in architectures:
        return PRETRAINING
    raise ValueError(f"{folder}: expected an MRM classifier, segmentation or pre-training folder; found model_type "
                     f"{config.model_type!r} with architectures {architectures}.")


def shown(gray: np.ndarray) -> Image.Image:
    """The radiograph as the model reads it, as an 8-bit image for the page."""
    return Image.fromarray(np.round(np.clip(gray, 0.0, 1.0) * 255).astype(np.uint8))


def unreadable(upload, error: Exception) -> str:
    """The page's message for an upload that cannot be read: the file's own name (not the server's copy) and why."""
    name = Path(upload).name if upload else "the upload"
    reason = str(error).replace(f"{upload}: ", "").replace(str(upload), name) if upload else str(error)
    return f"**Could not read `{name}`**: {reason} Upload a radiograph as PNG, JPEG, TIFF or DICOM."


class Page:
    """The models of one folder and what the page does with an upload."""

    def __init__(self, folder: str, explain_top_k: int = 3):
        self.folder, self.kind, self.explain_top_k = folder, folder_kind(folder), explain_top_k
        self.image_processor = AutoImageProcessor.from_pretrained(folder)
        self.figures = Path(tempfile.mkdtemp(prefix="mrm-app-"))
        if self.kind == CLASSIFIER:
            # Eager attention: the why-figure's attention rollout needs the attention weights.
            self.model = AutoModelForImageClassification.from_pretrained(folder, attn_implementation="eager").eval()
        elif self.kind == SEGMENTATION:
            self.segmenter = pipeline("image-segmentation", model=folder)
        else:
            self.model = AutoModelForPreTraining.from_pretrained(folder).eval()
            self.fill = pipeline(REPORT_FILL_TASK, model=folder)

    def read(self, upload) -> np.ndarray:
        if not upload:
            raise ValueError("The upload: expected a radiograph file; found no file.")
        return read_radiograph(self.image_processor, upload)

    def classify(self, upload):
        """(message, the image as read, scores table, why-figure)."""
        try:
            gray = self.read(upload)
        except Exception as error:  # noqa: BLE001 - an unreadable upload is a message, never a crash
            return unreadable(upload, error), None, None, None
        pixel_values = self.image_processor(gray, return_tensors="pt")["pixel_values"]
        with torch.no_grad():
            scores = finding_scores(self.model, self.model(pixel_values=pixel_values).logits.float())[0]
        order = scores.argsort(descending=True).tolist()
        table = [[self.model.config.id2label[i], round(scores[i].item(), 4)] for i in order]
        figure = explain_figure(self.model, pixel_values, self.figures / f"{abs(hash(upload))}.png",
                                targets=order[: self.explain_top_k])
        return f"**{Path(upload).name}**: {len(table)} findings scored.", shown(gray), table, str(figure)

    def segment(self, upload):
        """(message, the image as read, the mask over it, area table)."""
        try:
            gray = self.read(upload)
        except Exception as error:  # noqa: BLE001
            return unreadable(upload, error), None, None, None
        image = shown(gray)
        drawn = np.zeros(gray.shape, dtype=bool)
        rows = []
        for segment in self.segmenter(gray):
            if segment["label"] == self.segmenter.model.config.id2label[0]:
                continue  # the background
            mask = np.asarray(segment["mask"]) > 0
            drawn |= mask
            rows.append([segment["label"], int(mask.sum()), round(float(mask.mean()), 4)])
        if not rows:
            rows = [[label, 0, 0.0] for index, label in sorted(self.segmenter.model.config.id2label.items()) if index]
        message = f"**{Path(upload).name}**: the mask is drawn in red over the radiograph."
        return message, image, Image.fromarray(tint(np.asarray(image), drawn)), rows

    def pretrain(self, upload, report: str):
        """(message, the image as read, reconstruction figure, report-filling table)."""
        try:
            gray = self.read(upload)
        except Exception as error:  # noqa: BLE001
            return unreadable(upload, error), None, None, None
        view = self.image_processor(gray, mode="pretraining", size={"height": self.model.config.reconstruction_size,
                                                                     "width": self.model.config.reconstruction_size},
                                    return_tensors="pt")["pixel_values"]
        figure = save_reconstruction_figure(self.model, view, self.image_processor,
                                            self.figures / f"{abs(hash(upload))}.png")
        fills, message = None, f"**{Path(upload).name}**: masked patches are reconstructed; visible ones pasted back."
        if report and report.strip():
            try:
                results = self.fill(gray, report, top_k=5)
            except ValueError as error:
                message += f"\n\n**Report filling**: {error}"
            else:
                results = results if isinstance(results[0], list) else [results]
                fills = [[position + 1, row["token_str"], round(row["score"], 4)]
                         for position, candidates in enumerate(results) for row in candidates]
        return message, shown(gray), str(figure), fills


def build(page: Page) -> gr.Blocks:
    """One page: an upload, a button, and the outputs of the folder's kind."""
    with gr.Blocks(title=f"MRM: {Path(page.folder).name}") as demo:
        gr.Markdown(f"# MRM {page.kind}: `{Path(page.folder).name}`\nUpload a chest radiograph (PNG, JPEG, TIFF or "
                    "DICOM). Research use only: not for diagnosis.")
        with gr.Row():
            with gr.Column():
                upload = gr.File(label="Radiograph", type="filepath", elem_id="upload")
                report = gr.Textbox(label="Report with [MASK]", value="no pleural [MASK].", elem_id="report",
                                    visible=page.kind == PRETRAINING)
                run = gr.Button("Run", variant="primary", elem_id="run")
                message = gr.Markdown(elem_id="message")
                image = gr.Image(label="As the model reads it", type="pil", elem_id="image")
            with gr.Column():
                if page.kind == CLASSIFIER:
                    table = gr.Dataframe(headers=["finding", "score"], label="Scores", elem_id="scores")
                    figure = gr.Image(label=f"Why: the top {page.explain_top_k} findings", type="filepath",
                                      elem_id="figure")
                    run.click(page.classify, inputs=upload, outputs=[message, image, table, figure])
                elif page.kind == SEGMENTATION:
                    figure = gr.Image(label="Mask", type="pil", elem_id="figure")
                    table = gr.Dataframe(headers=["structure", "area (px)", "area (fraction)"], label="Area",
                                         elem_id="scores")
                    run.click(page.segment, inputs=upload, outputs=[message, image, figure, table])
                else:
                    figure = gr.Image(label="Reconstruction", type="filepath", elem_id="figure")
                    table = gr.Dataframe(headers=["[MASK]", "word", "score"], label="Report filling",
                                         elem_id="scores")
                    run.click(page.pretrain, inputs=[upload, report], outputs=[message, image, figure, table])
    return demo


def main(argv=None):
    args = parse_arguments(argv)
    page = Page(args.model, args.explain_top_k)
    build(page).launch(server_name=args.host, server_port=args.port, show_error=True)


if __name__ == "__main__":
    main()
