"""`python -m mrm_hf.predict`: a folder of radiographs (the real DICOMs in ../shared/data/dicom among them) scored into
one CSV row per image; unreadable files reported, never fatal; a second run skips what is done."""

import csv
import shutil

import numpy as np
import pytest
import torch
from conftest import save_tiny_folder, shared_path, tiny_config
from PIL import Image
from transformers import pipeline

from mrm_hf import MRMForPreTraining
from mrm_hf.predict import DICOM_FIELDS, load_model, main


pydicom = pytest.importorskip("pydicom", reason="DICOM needs pydicom: pip install \"mrm-hf[dicom]\"")
LABELS = ["Atelectasis", "Effusion", "Pneumothorax"]


def save_classifier(folder):
    return save_tiny_folder(folder, "classifier", LABELS)


def write_studies(folder):
    """A nested folder of a 16-bit PNG, an 8-bit PNG, a JPEG, a corrupt PNG and a text file that is no image."""
    rng = np.random.default_rng(0)
    (folder / "a" / "b").mkdir(parents=True)
    Image.fromarray((rng.integers(0, 65536, (40, 36))).astype(np.uint16)).save(folder / "a" / "sixteen.png")
    Image.fromarray(rng.integers(0, 256, (30, 44), dtype=np.uint8)).save(folder / "a" / "b" / "eight.png")
    Image.fromarray(rng.integers(0, 256, (50, 50, 3), dtype=np.uint8)).save(folder / "a" / "b" / "colour.jpg")
    (folder / "a" / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    (folder / "notes.txt").write_text("not an image")


def read_rows(path):
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


def test_predict_scores_a_folder_reports_the_corrupt_file_and_resumes(tmp_path, capsys):
    dicom_folder = shared_path("data", "dicom")
    model = save_classifier(tmp_path / "classifier")
    write_studies(tmp_path / "studies")
    output = tmp_path / "out"
    summary = main([str(model), str(dicom_folder), str(tmp_path / "studies"), "--output_dir", str(output),
                    "--batch_size", "2", "--num_workers", "1"])
    printed = capsys.readouterr().out
    assert summary["scored"] == 5 and summary["failed"] == 1, summary
    rows = {row["path"]: row for row in read_rows(output / "predictions.csv")}
    assert list(next(iter(rows.values()))) == ["path", *DICOM_FIELDS, *LABELS]
    classify = pipeline("image-classification", model=str(model))
    for path, row in rows.items():
        expected = {item["label"]: item["score"] for item in classify(path)}
        assert {label: float(row[label]) for label in LABELS} == pytest.approx(expected, abs=2e-6), path
    for dicom in sorted(dicom_folder.glob("*.dcm")):
        dataset = pydicom.dcmread(dicom, stop_before_pixels=True)
        assert {f: rows[str(dicom)][f] for f in DICOM_FIELDS} == {f: str(dataset.get(f, "")) for f in DICOM_FIELDS}
    assert rows[str(tmp_path / "studies" / "a" / "sixteen.png")]["SOPInstanceUID"] == ""
    corrupt = str(tmp_path / "studies" / "a" / "corrupt.png")
    assert read_rows(output / "failures.csv")[0]["path"] == corrupt
    assert f"1 could not be read (listed in {output / 'failures.csv'}):\n  {corrupt}: OSError: " in printed

    # Run again with one more image: only that one is scored; the corrupt file is tried (and reported) again.
    Image.fromarray(np.full((20, 20), 7, dtype=np.uint8)).save(tmp_path / "studies" / "new.png")
    again = main([str(model), str(dicom_folder), str(tmp_path / "studies"), "--output_dir", str(output)])
    assert (again["scored"], again["skipped"], again["failed"]) == (1, 5, 1)
    assert len(read_rows(output / "predictions.csv")) == 6


def test_predict_segments_csv_and_glob_inputs_with_masks_and_overlays(tmp_path):
    save_tiny_folder(tmp_path / "segmenter", "segmentation")
    write_studies(tmp_path / "studies")
    dicom = sorted(shared_path("data", "dicom").glob("*.dcm"))[0]
    with open(tmp_path / "list.csv", "w", newline="") as file:
        csv.writer(file).writerows([["image", "note"], ["studies/a/sixteen.png", "x"], ["missing.png", "y"]])
    summary = main([str(tmp_path / "segmenter"), str(tmp_path / "studies" / "a" / "b" / "*.*"), str(dicom),
                    "--csv", str(tmp_path / "list.csv"), "--csv_column", "image", "--output_dir", str(tmp_path / "o"),
                    "--num_workers", "0"])
    assert (summary["scored"], summary["failed"]) == (4, 1), summary
    rows = read_rows(tmp_path / "o" / "predictions.csv")
    assert [r["path"] for r in rows][-1] == str(tmp_path / "studies" / "a" / "sixteen.png")
    for row in rows:
        mask = np.asarray(Image.open(tmp_path / "o" / row["mask"]))
        if row["path"].endswith(".dcm"):
            dataset = pydicom.dcmread(row["path"], stop_before_pixels=True)
            assert mask.shape == (dataset.Rows, dataset.Columns)
        else:
            assert mask.shape == Image.open(row["path"]).size[::-1]
        assert int(row["foreground_area_px"]) == int((mask > 0).sum())
        assert float(row["foreground_area_fraction"]) == pytest.approx((mask > 0).mean(), abs=1e-6)
        assert (tmp_path / "o" / row["overlay"]).is_file()
    assert read_rows(tmp_path / "o" / "failures.csv")[0]["path"] == str(tmp_path / "missing.png")


def test_predict_refuses_a_model_that_is_not_fine_tuned(tmp_path):
    MRMForPreTraining(tiny_config()).save_pretrained(tmp_path / "pretraining")
    with pytest.raises(ValueError, match="expected a fine-tuned MRM classifier .* found model_type 'mrm' with "
                                         r"architectures \['MRMForPreTraining'\]"):
        main([str(tmp_path / "pretraining"), str(tmp_path), "--output_dir", str(tmp_path / "o")])


def test_predict_explain_writes_a_figure_per_image(tmp_path):
    pytest.importorskip("captum", reason="--explain needs captum: pip install \"mrm-hf[explain]\"")
    model = save_classifier(tmp_path / "classifier")
    write_studies(tmp_path / "studies")
    main([str(model), str(tmp_path / "studies" / "a" / "b"), "--output_dir", str(tmp_path / "o"), "--explain",
          "--explain_steps", "2", "--num_workers", "0"])
    figures = sorted((tmp_path / "o" / "explanations").glob("*.png"))
    assert [f.name.rsplit("-", 1)[0] for f in figures] == ["colour", "eight"]


def test_predict_in_bfloat16_scores_close_to_float32_and_refuses_explain(tmp_path):
    model = save_classifier(tmp_path / "classifier")  # its head drawn with std 1: scores away from 0.5
    write_studies(tmp_path / "studies")
    rows = {}
    for dtype in ("float32", "bfloat16"):
        summary = main([str(model), str(tmp_path / "studies"), "--output_dir", str(tmp_path / dtype), "--dtype", dtype,
                        "--num_workers", "0"])
        assert (summary["scored"], summary["failed"]) == (3, 1), summary
        rows[dtype] = {row["path"]: [float(row[label]) for label in LABELS]
                       for row in read_rows(tmp_path / dtype / "predictions.csv")}
    assert load_model(str(model), "cpu", explain=False, dtype="bfloat16")[0].dtype == torch.bfloat16
    assert rows["bfloat16"].keys() == rows["float32"].keys()
    for path, scores in rows["float32"].items():
        assert np.isfinite(rows["bfloat16"][path]).all()
        assert rows["bfloat16"][path] == pytest.approx(scores, abs=2e-2), path
    with pytest.raises(SystemExit):
        main([str(model), str(tmp_path / "studies"), "--output_dir", str(tmp_path / "x"), "--dtype", "bfloat16",
              "--explain"])
