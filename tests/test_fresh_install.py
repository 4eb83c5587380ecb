"""What a new user gets from each kind of folder the project writes: it opens with its Auto class and runs the pipeline
the README and docs/ name for it in a Python where mrm_hf cannot be imported (`trust_remote_code=True`), and opening a
folder in the class they point to reports only what the user must act on.

The folders are tiny and built once for the module, each by the code that writes that kind of folder.
"""

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image
from transformers import AutoModel, AutoModelForSemanticSegmentation
from transformers.utils import logging as transformers_logging

from conftest import REPO_ROOT, run_without_mrm_hf, tiny_config
from mrm_hf import MRMForImageClassification, MRMForPreTraining, MRMImageProcessor
from mrm_hf.convert import main as convert
from mrm_hf.figures import save_reconstruction_figure
from mrm_hf.hub import card_results, write_model_card
from mrm_hf.processing_mrm import processor_for_model
from mrm_hf.segmentation import build_segmentation_model
from mrm_hf.timm_export import main as export_to_timm
from mrm_hf.tokenization_mrm import train_report_tokenizer
from run_classification import image_processor_for
from test_docs import DOCUMENTS, code_blocks, document_name, fake_published_checkpoint


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """One folder of every kind, as the project writes it: {kind: path}."""
    root = tmp_path_factory.mktemp("folders")
    torch.manual_seed(0)
    tokenizer = train_report_tokenizer(["no pleural effusion normal heart size"] * 3, vocab_size=60)
    pretraining = MRMForPreTraining(tiny_config(num_hidden_layers=4, report_vocab_size=len(tokenizer)))
    pretraining.save_pretrained(root / "pretraining")
    processor_for_model(pretraining, tokenizer).save_pretrained(root / "pretraining")

    image_only = MRMForPreTraining(tiny_config(use_report_branch=False))
    image_only.save_pretrained(root / "image-only")
    processor_for_model(image_only, None).save_pretrained(root / "image-only")

    for kind in ("encoder", "classifier"):  # `python -m mrm_hf.convert` on the published layouts
        fake_published_checkpoint(root / f"{kind}.pth", kind, num_classes=3)
        assert convert(["--checkpoint", str(root / f"{kind}.pth"), "--output-dir", str(root / f"converted-{kind}")]) == 0

    # what run_classification.py saves: the classifier and the encoder's evaluation view
    classifier = MRMForImageClassification.from_pretrained(root / "pretraining", num_labels=2,
                                                           problem_type="multi_label_classification",
                                                           id2label={0: "effusion", 1: "edema"},
                                                           label2id={"effusion": 0, "edema": 1})  # fmt: skip
    classifier.save_pretrained(root / "fine-tuned")
    image_processor_for(classifier).save_pretrained(root / "fine-tuned")

    # what run_segmentation.py saves: UperNet on the backbone and the segmentation view
    segmenter = build_segmentation_model(str(root / "pretraining"), decoder_channels=8, auxiliary_channels=8)
    segmenter.save_pretrained(root / "segmentation")
    MRMImageProcessor(mode="segmentation", size={"height": 32, "width": 32},
                      crop_size={"height": 32, "width": 32}).save_pretrained(root / "segmentation")  # fmt: skip

    assert export_to_timm(["--checkpoint", str(root / "converted-encoder"), "--output-dir",
                           str(root / "timm")]) == 0  # fmt: skip
    Image.new("L", (40, 36), 120).save(root / "chest_xray.png")
    return root


WITHOUT_MRM_HF = """
import json, sys
import torch
from PIL import Image
from transformers import (AutoModel, AutoModelForImageClassification, AutoModelForPreTraining,
                          AutoModelForSemanticSegmentation, AutoProcessor, pipeline)
root = sys.argv[1] if len(sys.argv) > 1 else {root!r}
image = Image.open(root + "/chest_xray.png")
found = {{}}

def features(folder):
    extractor = pipeline("image-feature-extraction", model=folder, trust_remote_code=True)
    return torch.tensor(extractor(image, pool=True, return_tensors=True)).shape[-1]

# pre-training: the whole model, its record processor, and the encoder's features
model = AutoModelForPreTraining.from_pretrained(root + "/pretraining", trust_remote_code=True)
processor = AutoProcessor.from_pretrained(root + "/pretraining", trust_remote_code=True)
inputs = processor(images=image, text="no pleural effusion", return_tensors="pt")
found["pretraining"] = [type(model).__name__, float(model(**inputs).loss) > 0, features(root + "/pretraining")]

model = AutoModelForPreTraining.from_pretrained(root + "/image-only", trust_remote_code=True)
found["image-only"] = [type(model).__name__, model.report_branch is None, features(root + "/image-only")]

model = AutoModel.from_pretrained(root + "/converted-encoder", trust_remote_code=True)
found["converted-encoder"] = [type(model).__name__, features(root + "/converted-encoder")]

for kind in ("converted-classifier", "fine-tuned"):
    model = AutoModelForImageClassification.from_pretrained(root + "/" + kind, trust_remote_code=True)
    scores = pipeline("image-classification", model=root + "/" + kind, trust_remote_code=True)(image, top_k=None)
    found[kind] = [type(model).__name__, sorted(score["label"] for score in scores)]

model = AutoModelForSemanticSegmentation.from_pretrained(root + "/segmentation", trust_remote_code=True)
masks = pipeline("image-segmentation", model=root + "/segmentation", trust_remote_code=True)(image)
found["segmentation"] = [type(model).__name__, type(model.backbone).__name__,
                         bool(masks) and all(m["label"] in ("background", "foreground") for m in masks),
                         [m["mask"].size for m in masks][0]]

import timm
vit = timm.create_model("local-dir:" + root + "/timm", pretrained=True).eval()
found["timm"] = list(vit(torch.zeros(1, 3, 32, 32)).shape)
print(json.dumps(found))
"""


def test_every_folder_kind_loads_and_runs_its_pipeline_without_mrm_hf(folders, tmp_path):
    pytest.importorskip("timm", reason="the timm export is opened by timm")
    printed = run_without_mrm_hf(WITHOUT_MRM_HF.format(root=str(folders)), tmp_path)
    found = json.loads(printed.strip().splitlines()[-1])
    assert found == {
        "pretraining": ["MRMForPreTraining", True, 32],
        "image-only": ["MRMForPreTraining", True, 32],
        "converted-encoder": ["MRMModel", 48],
        "converted-classifier": ["MRMForImageClassification", ["LABEL_0", "LABEL_1", "LABEL_2"]],
        "fine-tuned": ["MRMForImageClassification", ["edema", "effusion"]],
        "segmentation": ["UperNetForSemanticSegmentation", "MRMBackbone", True, [40, 36]],
        "timm": [1, 48],
    }


def test_segmentation_folder_carries_the_code_that_opens_it(folders):
    saved = json.loads((folders / "segmentation" / "config.json").read_text())
    assert saved["architectures"] == ["UperNetForSemanticSegmentation"] and saved["model_type"] == "upernet"
    assert saved["auto_map"] == {"AutoConfig": "configuration_mrm.MRMUperNetConfig",
                                 "AutoModelForSemanticSegmentation": "modeling_mrm.UperNetForSemanticSegmentation"}
    names = {path.name for path in (folders / "segmentation").iterdir()}
    assert {"configuration_mrm.py", "modeling_mrm.py", "image_processing_mrm.py"} <= names
    assert "segmentation.py" not in names  # the training loss's module stays home


# ---- loads that report only what a user must act on -------------------------------------------------------------


@pytest.fixture
def load_reports():
    """The LOAD REPORTs transformers logs while the test runs, as text."""
    records = []
    handler = logging.Handler()
    handler.emit = lambda record: records.append(record.getMessage())
    logger = transformers_logging.get_logger("transformers")
    logger.addHandler(handler)
    try:
        yield records
    finally:
        logger.removeHandler(handler)


@pytest.mark.parametrize("kind", ["pretraining", "fine-tuned"])
def test_the_encoder_opens_pretraining_and_classifier_folders_without_a_report(folders, kind, load_reports):
    AutoModel.from_pretrained(folders / kind)
    assert not [message for message in load_reports if "LOAD REPORT" in message]


def test_the_segmenter_reports_its_new_neck_and_nothing_by_design(folders, load_reports):
    build_segmentation_model(str(folders / "pretraining"), decoder_channels=8, auxiliary_channels=8)
    (report,) = [message for message in load_reports if "LOAD REPORT" in message]
    assert "neck.stages" in report and "MISSING" in report
    assert "UNEXPECTED" not in report and "layernorm" not in report


def test_a_new_classification_head_stays_reported(folders, load_reports):
    MRMForImageClassification.from_pretrained(folders / "pretraining", num_labels=2)
    (report,) = [message for message in load_reports if "LOAD REPORT" in message]
    assert "classifier.weight" in report and "MISSING" in report


# ---- every Python block of the README, of the docs/ pages and of each generated card, run as written --------------


def run_block(block: str, cwd, name: str) -> str:
    """One documented block in a fresh Python (mrm_hf importable, as after `pip install mrm-hf`), from `cwd`."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(REPO_ROOT), HF_MODULES_CACHE=str(cwd / ".hf_modules"))
    result = subprocess.run([sys.executable, "-c", block], cwd=cwd, env=env, capture_output=True, text=True,
                            timeout=300)  # fmt: skip
    assert result.returncode == 0, f"{name} block fails as written:\n{block}\n{result.stderr[-3000:]}"
    return result.stdout


def place(folders, cwd, names: dict) -> None:
    """The documented placeholders, as the documents name them: folders of their kind, and `chest_xray.png`."""
    for name, kind in names.items():
        (cwd / name).parent.mkdir(parents=True, exist_ok=True)
        (cwd / name).symlink_to(folders / kind, target_is_directory=True)
    (cwd / "chest_xray.png").symlink_to(folders / "chest_xray.png")


# The folders the documents' blocks name, and the kind each stands for.
README_FOLDERS = {"mrm-base": "pretraining", "mrm-nih-1pct": "fine-tuned", "mrm-siim-10pct": "segmentation",
                  "outputs/mrm-demo": "pretraining", "my-classifier": "fine-tuned"}  # fmt: skip
DOCUMENTED_BLOCKS = [(document_name(document), number, block) for document in DOCUMENTS
                     for number, block in enumerate(code_blocks(document.read_text(), "python"), start=1)]  # fmt: skip


@pytest.mark.parametrize("document, number, block", DOCUMENTED_BLOCKS,
                         ids=[f"{document}:{number}" for document, number, _ in DOCUMENTED_BLOCKS])  # fmt: skip
def test_documented_python_block_runs_as_written(folders, tmp_path, document, number, block):
    place(folders, tmp_path, {name: kind for name, kind in README_FOLDERS.items() if f'"{name}"' in block})
    run_block(block, tmp_path, f"{document} python block {number}")


def pretraining_card(folders, tmp_path) -> Path:
    """The demo's card, written by the pre-training scripts' `write_card` into the folder the demo command names."""
    from pretraining_setup import parse_arguments, write_card

    model_args, data_args, training_args = parse_arguments(["--args_file", str(REPO_ROOT / "examples" / "configs" /
                                                                               "demo.args")])  # fmt: skip
    folder = tmp_path / training_args.output_dir
    shutil.copytree(folders / "pretraining", folder)
    model = MRMForPreTraining.from_pretrained(folder)
    save_reconstruction_figure(model, torch.randn(2, 3, 64, 64), MRMImageProcessor(mode="pretraining"),
                               folder / "reconstruction.png")  # fmt: skip
    metrics = {"eval_report_loss_own_image": 3.0, "eval_report_loss_zero_image": 3.5,
               "eval_report_loss_shuffled_image": 3.01}  # fmt: skip
    return write_card(folder, model, model_args, data_args, training_args, metrics)


def test_demo_card_says_how_to_use_the_folder_and_what_it_shows(folders, tmp_path):
    text = pretraining_card(folders, tmp_path).read_text()
    (block,) = code_blocks(text, "python")
    assert '"outputs/mrm-demo"' in block and "Image.open(\"chest_xray.png\")" in block
    assert "![Held-out images: original, masked input, reconstruction](reconstruction.png)" in text
    assert "pasted back" in text and "true patch's mean and variance" in text
    assert "relies on the image feature, but not yet on which image it sees" in text
    limitations = text.split("## Limitations")[1].split("##")[0]
    assert "synthetic records" in limitations and "MIMIC" not in limitations
    place(folders, tmp_path, {})
    printed = run_block(block + "\nprint(tuple(features.shape))", tmp_path, "the demo card's")
    assert printed.strip().splitlines()[-1] == "(1, 32)"


def classification_card(folders, tmp_path) -> Path:
    import run_classification

    model_args, data_args, training_args = run_classification.parse_arguments([
        "--model_name_or_path", str(folders / "pretraining"), "--dataset", "csv", "--train_csv", "train.csv",
        "--output_dir", "mrm-classifier", "--use_cpu"])  # fmt: skip
    folder = tmp_path / training_args.output_dir
    shutil.copytree(folders / "fine-tuned", folder)
    model = MRMForImageClassification.from_pretrained(folder)
    results = card_results({"test_mean_auc": 0.5}, run_classification.auc_names(["effusion", "edema"]))
    return write_model_card(folder, run_classification.MODEL_CARD_TEMPLATE, **results,
                            **run_classification.model_card_fields(model, model_args, data_args, training_args, 8))


def segmentation_card(folders, tmp_path) -> Path:
    import run_segmentation

    model_args, data_args, training_args = run_segmentation.parse_arguments([
        "--model_name_or_path", str(folders / "pretraining"), "--dataset", "csv", "--train_csv", "train.csv",
        "--output_dir", "mrm-segmenter", "--use_cpu"])  # fmt: skip
    folder = tmp_path / training_args.output_dir
    shutil.copytree(folders / "segmentation", folder)
    model = AutoModelForSemanticSegmentation.from_pretrained(folder)
    return write_model_card(folder, run_segmentation.MODEL_CARD_TEMPLATE, **card_results({}, run_segmentation.CARD_METRICS),
                            **run_segmentation.model_card_fields(model, model_args, data_args, training_args, 8))


@pytest.mark.parametrize("card", [classification_card, segmentation_card], ids=["classification", "segmentation"])
def test_card_python_blocks_run_as_written(folders, tmp_path, card):
    blocks = code_blocks(card(folders, tmp_path).read_text(), "python")
    assert blocks
    place(folders, tmp_path, {})
    for number, block in enumerate(blocks):
        run_block(block, tmp_path, f"{card.__name__} block {number + 1}")
