"""Every image pipeline takes what MRMImageProcessor takes: DICOM paths and pydicom Datasets (the two real ones in
../shared/data/dicom), 16-bit PNG and TIFF paths at full depth, PIL, numpy and torch images."""

import json

import numpy as np
import pytest
import torch
from conftest import run_without_mrm_hf, shared_path, tiny_config
from PIL import Image
from transformers import ImageClassificationPipeline, pipeline

from mrm_hf import MRMForImageClassification, MRMForPreTraining, MRMImageProcessor, MRMModel
from mrm_hf.processing_mrm import encoder_image_processor, processor_for_model
from mrm_hf.segmentation import build_segmentation_model
from mrm_hf.tokenization_mrm import train_report_tokenizer


pydicom = pytest.importorskip("pydicom", reason="DICOM needs pydicom: pip install \"mrm-hf[dicom]\"")
LABELS = ["Atelectasis", "Effusion", "Pneumothorax"]


def dicom_paths():
    folder = shared_path("data", "dicom")
    return sorted(folder.glob("*.dcm"))


def sixteen_bit(tmp_path, suffix):
    """A 16-bit radiograph-like ramp using the whole range, saved as PNG or TIFF."""
    rows, columns = np.mgrid[:48, :40]
    values = ((rows * 40 + columns) * 34).astype(np.uint16)
    path = tmp_path / f"ramp16{suffix}"
    Image.fromarray(values).save(path)
    assert Image.open(path).mode.startswith("I;16")
    return path, values


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """A tiny classifier, an encoder and a segmenter, each saved with its image processor."""
    tmp = tmp_path_factory.mktemp("pipelines")
    torch.manual_seed(0)
    config = tiny_config(num_labels=3, id2label=dict(enumerate(LABELS)), label2id={n: i for i, n in enumerate(LABELS)},
                         problem_type="multi_label_classification")
    MRMForImageClassification(config).save_pretrained(tmp / "classifier")
    encoder_image_processor(32).save_pretrained(tmp / "classifier")
    MRMModel(tiny_config(num_hidden_layers=4)).save_pretrained(tmp / "encoder")
    encoder_image_processor(32).save_pretrained(tmp / "encoder")
    build_segmentation_model(str(tmp / "encoder"), decoder_channels=16, auxiliary_channels=8).save_pretrained(
        tmp / "segmenter")
    MRMImageProcessor(mode="segmentation", size={"height": 32, "width": 32}).save_pretrained(tmp / "segmenter")
    return tmp


def inputs(tmp_path):
    """(name, input) pairs of every kind the processor reads."""
    first, second = dicom_paths()
    png, values = sixteen_bit(tmp_path, ".png")
    tiff, _ = sixteen_bit(tmp_path, ".tif")
    return [
        ("DICOM path (MONOCHROME2, JPEG)", str(first)),
        ("DICOM path (MONOCHROME1, JPEG 2000)", second),
        ("pydicom Dataset", pydicom.dcmread(second)),
        ("16-bit PNG path", str(png)),
        ("16-bit TIFF path", tiff),
        ("PIL", Image.open(png)),
        ("numpy uint16", values),
        ("torch uint8", torch.from_numpy((values // 257).astype(np.uint8))),
    ]


def test_classification_pipeline_scores_what_the_processor_reads(folders, tmp_path):
    classify = pipeline("image-classification", model=str(folders / "classifier"))
    model = MRMForImageClassification.from_pretrained(folders / "classifier").eval()
    processor = MRMImageProcessor.from_pretrained(folders / "classifier")
    for name, image in inputs(tmp_path):
        scores = {item["label"]: item["score"] for item in classify(image)}
        with torch.no_grad():
            expected = model(**processor(image, return_tensors="pt")).logits.sigmoid()[0]
        assert scores == pytest.approx(dict(zip(LABELS, expected.tolist())), abs=1e-6), name


def test_sixteen_bit_paths_are_not_read_as_eight_bit(folders, tmp_path):
    """The stock pipeline reads a 16-bit PNG through load_image's 8-bit RGB, clipped at 255: another answer."""
    png, values = sixteen_bit(tmp_path, ".png")
    ours = pipeline("image-classification", model=str(folders / "classifier"))(str(png))
    stock = pipeline("image-classification", model=str(folders / "classifier"),
                     pipeline_class=ImageClassificationPipeline)(str(png))
    from_array = pipeline("image-classification", model=str(folders / "classifier"))(values)
    assert ours == from_array
    assert {i["label"]: i["score"] for i in ours} != pytest.approx({i["label"]: i["score"] for i in stock}, abs=1e-4)


def test_feature_extraction_pipeline_reads_dicom(folders):
    extract = pipeline("image-feature-extraction", model=str(folders / "encoder"))
    model = MRMModel.from_pretrained(folders / "encoder").eval()
    processor = MRMImageProcessor.from_pretrained(folders / "encoder")
    for path in dicom_paths():
        for image in (path, pydicom.dcmread(path)):
            with torch.no_grad():
                expected = model(**processor(image, return_tensors="pt")).pooler_output
            torch.testing.assert_close(extract(image, pool=True, return_tensors=True), expected)


def test_segmentation_pipeline_masks_a_dicom_at_its_own_size(folders):
    segment = pipeline("image-segmentation", model=str(folders / "segmenter"))
    for path in dicom_paths():
        dataset = pydicom.dcmread(path)
        masks = segment(str(path))
        assert masks and all(item["mask"].size == (dataset.Columns, dataset.Rows) for item in masks)
        assert [np.asarray(m["mask"]).sum() for m in masks] == [np.asarray(m["mask"]).sum() for m in segment(dataset)]


def test_report_fill_pipeline_reads_dicom(tmp_path):
    tokenizer = train_report_tokenizer(["no pleural effusion left basal opacity small"] * 4, vocab_size=60)
    model = MRMForPreTraining(tiny_config(report_vocab_size=len(tokenizer))).eval()
    model.save_pretrained(tmp_path)
    processor_for_model(model, tokenizer).save_pretrained(tmp_path)
    fill = pipeline("mrm-report-fill-mask", model=str(tmp_path))
    path = dicom_paths()[1]
    from_path = fill(str(path), "no pleural [MASK].", top_k=3)
    assert from_path == fill(pydicom.dcmread(path), "no pleural [MASK].", top_k=3)
    assert from_path == fill(np.asarray(MRMImageProcessor().fetch_images(str(path))), "no pleural [MASK].", top_k=3)


def test_other_models_keep_the_stock_pipeline(tmp_path):
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    ViTForImageClassification(ViTConfig(image_size=32, patch_size=8, hidden_size=16, num_hidden_layers=1,
                                         num_attention_heads=2, intermediate_size=16, num_labels=2)).save_pretrained(tmp_path)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(tmp_path)
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(tmp_path / "x.jpg")
    ours = pipeline("image-classification", model=str(tmp_path))(str(tmp_path / "x.jpg"))
    stock = pipeline("image-classification", model=str(tmp_path), pipeline_class=ImageClassificationPipeline)(
        str(tmp_path / "x.jpg"))
    assert ours == stock


def test_without_mrm_hf_pipelines_read_images_and_say_what_reads_dicom(folders, tmp_path):
    """Remote code: the stock pipeline reads 8-bit files; for a DICOM, the error names what to install."""
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 36), dtype=np.uint8)).save(tmp_path / "x.png")
    expected = pipeline("image-classification", model=str(folders / "classifier"))(str(tmp_path / "x.png"))
    printed = run_without_mrm_hf(
        f"""
import json
from transformers import pipeline
classify = pipeline("image-classification", model={str(folders / "classifier")!r}, trust_remote_code=True)
scores = classify("x.png")
try:
    classify({str(dicom_paths()[0])!r})
    error = None
except Exception as err:
    error = f"{{type(err).__name__}}: {{err}}"
print(json.dumps({{"scores": scores, "error": error}}))
""",
        tmp_path,
    )
    result = json.loads(printed.strip().splitlines()[-1])
    assert [(i["label"], round(i["score"], 5)) for i in result["scores"]] == [
        (i["label"], round(i["score"], 5)) for i in expected]
    assert result["error"].startswith("UnidentifiedImageError") and 'pip install "mrm-hf[dicom]"' in result["error"]
