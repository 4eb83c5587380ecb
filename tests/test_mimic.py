import csv
import gzip
import logging
import os
import shutil
import warnings
import zipfile
from pathlib import Path

import pytest
from datasets import Image, Value
from conftest import shared_path
from PIL import Image as PILImage

import mrm_hf.data.mimic as mimic
from mrm_hf.data import CHEXPERT_LABELS, RecordError, load_mimic_cxr, load_training_csv, write_resized_copy
from mrm_hf.image_processing_mrm import MRMImageProcessor, load_radiograph
from mrm_hf.transforms import PretrainingTransform
from test_bad_input import broken_stream_jpeg


METADATA_COLUMNS = [
    "dicom_id", "subject_id", "study_id", "PerformedProcedureStepDescription", "ViewPosition", "Rows", "Columns",
    "StudyDate", "StudyTime", "ProcedureCodeSequence_CodeMeaning", "ViewCodeSequence_CodeMeaning",
    "PatientOrientationCodeSequence_CodeMeaning",
]
# (dicom_id, subject_id, study_id, split, view, what is wrong with the record)
RECORDS = [
    ("02aa804e-bde0afdd-112c0b34-7bc16630-4e384014", 10000032, 50414267, "train", "PA", None),
    ("174413ec-4ec4c1f7-34ea26b7-c5f994f8-79ef1962", 10000032, 50414267, "train", "LATERAL", None),
    ("2a2277a9-b0ded155-c0de8eb9-c124d10e-82c5caab", 10000032, 53189527, "train", "PA", "missing image"),
    ("68b5c4b1-227d0485-9cc38c3f-7b84ab51-4b472714", 10000032, 53911762, "train", "AP", "truncated image"),
    ("ea030e7a-2e3b1346-bc518786-7a8fd698-f673b44c", 10000032, 56699142, "train", "AP", "missing report"),
    ("096052b7-d256dc40-453a102b-fa7d01c6-1b22c6b4", 10000764, 57375967, "train", "AP", "empty report"),
    ("8959e402-2175d68d-edba5a6c-520ec6ea-b9aca1f5", 10000898, 50771383, "train", "PA", "unreadable image"),
    ("9f6e6e0f-4bd2b9f0-8e5b0b96-0c0b9ef6-0b3d5c1e", 10000980, 51967283, "train", "AP", None),
    ("4b7a1c2e-7d1e0a55-b6f2c8e1-33a9e7d0-5c2f9a18", 11000011, 51029426, "validate", "PA", None),
    ("c5e1b2f0-1a9d4e33-8f27d6b1-0e4c3a92-7b1f6d08", 19999733, 57132437, "test", "PA", None),
]
FINDINGS_ONLY_STUDY = 51967283  # its report has FINDINGS and no IMPRESSION


def write_gzip_csv(path: Path, header: list[str], rows: list[list]):
    with gzip.open(path, "wt", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(header)
        writer.writerows(rows)


def image_path(root: Path, subject: int, study: int, dicom: str, suffix: str = "") -> Path:
    return root / "files" / f"p{str(subject)[:2]}" / f"p{subject}" / f"s{study}" / f"{dicom}{suffix}.jpg"


def report_member(subject: int, study: int) -> str:
    return f"files/p{str(subject)[:2]}/p{subject}/s{study}.txt"


@pytest.fixture(scope="module")
def mimic_root(tmp_path_factory):
    """A MIMIC-CXR-JPG tree in the official layout, with reports zipped and unpacked, and broken records."""
    website = shared_path("data", "reports", "mimic_cxr_style", "mimic_cxr_website_example_report.txt").read_text()
    sources = sorted(shared_path("data", "covid", "images").glob("*.jpg"))[:12]
    root = tmp_path_factory.mktemp("mimic-cxr-jpg")
    reports = {}
    for number, (dicom, subject, study, split, view, problem) in enumerate(RECORDS):
        path = image_path(root, subject, study, dicom)
        path.parent.mkdir(parents=True, exist_ok=True)
        if problem != "missing image":
            with PILImage.open(sources[number]) as image:
                image.resize((96, 96 * image.height // image.width)).save(path, quality=90)
        if problem == "truncated image":
            path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
        if problem == "unreadable image":
            path.write_bytes(b"<html>403 Forbidden</html>")
        if problem == "empty report":
            reports[(subject, study)] = "\n \n"
        elif study == FINDINGS_ONLY_STUDY:
            reports[(subject, study)] = website.split(" IMPRESSION:")[0]
        elif problem != "missing report":
            reports[(subject, study)] = website.replace("Large left", f"Study {study}: large left")

    write_gzip_csv(root / mimic.SPLIT_CSV, ["dicom_id", "study_id", "subject_id", "split"],
                   [[d, t, s, split] for d, s, t, split, _, _ in RECORDS])
    write_gzip_csv(root / mimic.METADATA_CSV, METADATA_COLUMNS, [
        [d, s, t, "CHEST (PA AND LAT)", view, 3056, 2544, 21800506, 213014.531, "CHEST (PA AND LAT)",
         "postero-anterior" if view == "PA" else "lateral", "Erect"]
        for d, s, t, _, view, _ in RECORDS
    ])
    chexpert = {label: "" for label in CHEXPERT_LABELS}
    write_gzip_csv(root / mimic.CHEXPERT_CSV, ["subject_id", "study_id", *CHEXPERT_LABELS], [
        [10000032, 50414267, *{**chexpert, "No Finding": "1.0"}.values()],
        [10000980, 51967283, *{**chexpert, "Pleural Effusion": "1.0", "Edema": "-1.0", "Pneumonia": "0.0"}.values()],
    ])
    with zipfile.ZipFile(root / mimic.REPORTS_ZIP, "w") as archive:
        for (subject, study), text in reports.items():
            archive.writestr(report_member(subject, study), text)
    for (subject, study), text in reports.items():
        path = root / "unpacked-reports" / report_member(subject, study)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def load_with_warnings(*args, **kwargs):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dataset = load_mimic_cxr(*args, **kwargs)
    return dataset, [str(w.message) for w in caught if w.category is UserWarning and "Skipped" in str(w.message)]


def good(split: str) -> list[str]:
    return [d for d, _, _, s, view, problem in RECORDS if s == split and problem is None and view != "LATERAL"]


def test_train_split_keeps_good_frontal_records_and_warns_once_with_counts(mimic_root, tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="mrm_hf.data.mimic"):
        dataset, messages = load_with_warnings(mimic_root, cache_dir=tmp_path)
    assert dataset["dicom_id"] == good("train")
    assert len(messages) == 1
    for reason in ("missing image: 1", "truncated image: 1", "unreadable image: 1", "missing report: 1",
                   "empty report: 1"):
        assert reason in messages[0]
    assert "Skipped 5 of 7 records" in messages[0]  # of 8 train images: the lateral one is filtered, not skipped
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING] == messages


def test_columns_feature_types_and_lazy_images(mimic_root, tmp_path):
    dataset, _ = load_with_warnings(mimic_root, cache_dir=tmp_path)
    assert list(dataset.features)[:7] == ["image", "report", "subject_id", "study_id", "dicom_id", "view", "split"]
    assert dataset.features["image"] == Image(decode=False)  # read by the processor and transforms, which name failures
    assert dataset.features["subject_id"] == Value("int64") and dataset.features["report"] == Value("string")
    assert all(dataset.features[label] == Value("float32") for label in CHEXPERT_LABELS)
    paths = dataset["image"]
    assert paths[0] == {"path": str(image_path(mimic_root, 10000032, 50414267, RECORDS[0][0])), "bytes": None}
    first = dataset[0]
    assert load_radiograph(first["image"]).size[0] == 96 and load_radiograph(first["image"]).mode == "L"
    assert [first[k] for k in ("subject_id", "study_id", "view", "split")] == [10000032, 50414267, "PA", "train"]
    assert first["report"].startswith("FINAL REPORT EXAMINATION: CHEST (PA AND LAT)")
    assert first["report"].endswith("IMPRESSION: Study 50414267: large left pleural effusion")


def test_chexpert_labels_keep_blank_as_none(mimic_root, tmp_path):
    dataset, _ = load_with_warnings(mimic_root, cache_dir=tmp_path)
    by_study = {row["study_id"]: row for row in dataset}
    assert by_study[50414267]["No Finding"] == 1.0 and by_study[50414267]["Atelectasis"] is None
    labels = by_study[51967283]
    values = [labels[k] for k in ("Pleural Effusion", "Edema", "Pneumonia", "Cardiomegaly")]
    assert values == [1.0, -1.0, 0.0, None]


def test_split_names_and_views(mimic_root, tmp_path):
    validation, _ = load_with_warnings(mimic_root, split="validation", cache_dir=tmp_path)
    validate, _ = load_with_warnings(mimic_root, split="validate", cache_dir=tmp_path)
    assert validation["dicom_id"] == validate["dicom_id"] == good("validate")
    assert validation["split"] == ["validate"]
    test, _ = load_with_warnings(mimic_root, split="test", cache_dir=tmp_path)
    assert test["dicom_id"] == good("test")
    everything, _ = load_with_warnings(mimic_root, split=None, views=None, cache_dir=tmp_path)
    assert "LATERAL" in everything["view"] and {"train", "validate", "test"} == set(everything["split"])
    lateral, _ = load_with_warnings(mimic_root, views=("lateral",), cache_dir=tmp_path)
    assert lateral["view"] == ["LATERAL"]
    with pytest.raises(ValueError, match="split: expected one of"):
        load_mimic_cxr(mimic_root, split="val", cache_dir=tmp_path)
    with pytest.raises(RecordError, match="expected at least one usable record; found none of 0 candidates"):
        load_mimic_cxr(mimic_root, views=("SWIMMERS",), cache_dir=tmp_path)  # nothing left: an error, not an empty set


def test_strict_mode_names_the_first_broken_record(mimic_root, tmp_path):
    dicom, subject, study = RECORDS[2][:3]
    record = f"dicom_id {dicom} \\(subject {subject}, study {study}\\)"
    with pytest.raises(RecordError, match=rf"{record}: expected a usable record; found .*\(missing image\)"):
        load_mimic_cxr(mimic_root, strict=True, cache_dir=tmp_path)
    with pytest.raises(RecordError, match=str(image_path(mimic_root, subject, study, dicom))):
        load_mimic_cxr(mimic_root, strict=True, cache_dir=tmp_path)
    dataset = load_mimic_cxr(mimic_root, split="validate", strict=True, cache_dir=tmp_path)
    assert dataset["dicom_id"] == good("validate")


def test_report_policies_and_unpacked_reports(mimic_root, tmp_path):
    from_zip, _ = load_with_warnings(mimic_root, report_sections="findings_impression", cache_dir=tmp_path)
    unpacked, _ = load_with_warnings(
        mimic_root, report_sections="findings_impression", reports=mimic_root / "unpacked-reports", cache_dir=tmp_path
    )
    assert from_zip["report"] == unpacked["report"] and len(from_zip) == 2
    assert from_zip["report"][0].endswith("in the thoracic spine Study 50414267: large left pleural effusion")
    impressions, messages = load_with_warnings(mimic_root, report_sections="impression", cache_dir=tmp_path)
    assert impressions["report"] == ["Study 50414267: large left pleural effusion"]
    assert "empty report: 2" in messages[0]  # the blank report and the findings-only one


def test_missing_files_raise_naming_what_was_expected(mimic_root, tmp_path):
    with pytest.raises(FileNotFoundError, match="MIMIC-CXR-JPG root"):
        load_mimic_cxr(tmp_path / "nowhere")
    partial = tmp_path / "partial"
    shutil.copytree(mimic_root / "files", partial / "files")
    with pytest.raises(FileNotFoundError, match=mimic.SPLIT_CSV):
        load_mimic_cxr(partial, cache_dir=tmp_path)
    shutil.copy(mimic_root / mimic.SPLIT_CSV, partial)
    with pytest.raises(FileNotFoundError, match=mimic.METADATA_CSV):
        load_mimic_cxr(partial, cache_dir=tmp_path)
    shutil.copy(mimic_root / mimic.METADATA_CSV, partial)
    with pytest.raises(FileNotFoundError, match=mimic.REPORTS_ZIP):
        load_mimic_cxr(partial, cache_dir=tmp_path)
    dataset, _ = load_with_warnings(partial, reports=mimic_root / mimic.REPORTS_ZIP, cache_dir=tmp_path)
    assert "No Finding" not in dataset.features  # no CheXpert CSV, no label columns
    assert dataset["dicom_id"] == good("train")


def test_second_load_comes_from_the_cache(mimic_root, tmp_path, monkeypatch):
    first, _ = load_with_warnings(mimic_root, cache_dir=tmp_path)
    calls = []
    original = mimic.generate_mimic_records

    def counting(options):
        calls.append(options)
        yield from original(options)

    monkeypatch.setattr(mimic, "generate_mimic_records", counting)
    again, messages = load_with_warnings(mimic_root, cache_dir=tmp_path)
    assert calls == [] and messages == []
    assert again.cache_files == first.cache_files and again["dicom_id"] == first["dicom_id"]
    load_with_warnings(mimic_root, report_sections="findings_impression", cache_dir=tmp_path)
    assert len(calls) == 1  # other arguments, another build
    os.utime(mimic_root / mimic.SPLIT_CSV, ns=(0, 0))
    rebuilt, _ = load_with_warnings(mimic_root, cache_dir=tmp_path)
    assert len(calls) == 2 and rebuilt.cache_files != first.cache_files  # a changed CSV, another build


def test_image_checks_can_be_switched_off_and_run_in_processes(mimic_root, tmp_path):
    unchecked, messages = load_with_warnings(mimic_root, check_images="none", cache_dir=tmp_path)
    assert RECORDS[3][0] in unchecked["dicom_id"] and RECORDS[6][0] in unchecked["dicom_id"]  # exist, not opened
    parallel, _ = load_with_warnings(mimic_root, num_proc=2, cache_dir=tmp_path / "other")
    assert parallel["dicom_id"] == good("train")


def test_training_csv_rows(shared, mimic_root, tmp_path):
    with open(shared("data", "reports", "mimic_cxr_style", "mrm_readme_training_csv_example.txt"), newline="") as file:
        published = next(csv.DictReader(file))
    assert published["image_path"].startswith("./dataset/mimic_512/p10/p10000032/s50414267/02aa804e")
    target = tmp_path / published["image_path"]
    target.parent.mkdir(parents=True)
    shutil.copy(image_path(mimic_root, 10000032, 50414267, RECORDS[0][0]), target)
    table = tmp_path / "training.csv"
    with open(table, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["image_path", "report_content"])
        writer.writerow([published["image_path"], published["report_content"]])
        missing = "./dataset/mimic_512/p10/p10000032/s53189527/2a2277a9-b0ded155-c0de8eb9-c124d10e-82c5caab-512.jpg"
        writer.writerow([missing, published["report_content"]])
        writer.writerow([published["image_path"], "   "])
    with pytest.warns(UserWarning, match=r"Skipped 2 of 3 records .*\(missing image: 1, missing report: 1\)"):
        dataset = load_training_csv(table, cache_dir=tmp_path / "cache")
    row = dataset[0]
    assert len(dataset) == 1
    assert (row["subject_id"], row["study_id"], row["dicom_id"]) == (10000032, 50414267, RECORDS[0][0])
    assert row["report"] == " ".join(published["report_content"].split())
    assert load_radiograph(row["image"]).size[0] == 96
    with pytest.warns(UserWarning, match="Skipped 2 of 3"):
        impression = load_training_csv(table, report_sections="impression", cache_dir=tmp_path / "cache")
    assert impression["report"] == ["No acute cardiopulmonary process."]
    with pytest.raises(RecordError, match="row 3"):
        load_training_csv(table, strict=True, cache_dir=tmp_path / "cache")


def test_resized_copy_keeps_layout_and_aspect_and_loads(mimic_root, tmp_path):
    with pytest.warns(UserWarning, match=r"truncated image: 1, unreadable image: 1"):
        out = write_resized_copy(mimic_root, tmp_path / "small", short_side=48, suffix="-48")
    dicom, subject, study = RECORDS[0][:3]
    with PILImage.open(image_path(mimic_root, subject, study, dicom)) as original:
        width, height = original.size
    with PILImage.open(image_path(out, subject, study, dicom, "-48")) as small:
        assert min(small.size) == 48 and small.format == "JPEG"
        assert abs(small.size[0] / small.size[1] - width / height) < 0.03
    dataset, _ = load_with_warnings(mimic_root, image_root=out, image_suffix="-48", cache_dir=tmp_path)
    assert dataset["dicom_id"] == good("train")
    assert all(min(load_radiograph(image).size) == 48 for image in dataset["image"])

    original_dataset, _ = load_with_warnings(mimic_root, cache_dir=tmp_path)
    again = write_resized_copy(original_dataset, tmp_path / "from-dataset", short_side=48, num_proc=2)
    copied = sorted(p.relative_to(again).as_posix() for p in again.rglob("*.jpg"))
    assert copied == sorted(
        image_path(Path("."), s, t, d).as_posix() for d, s, t, *_ in RECORDS if d in good("train")
    )


def test_the_library_route_names_a_corrupt_jpeg_or_skips_and_counts_it(mimic_root, tmp_path):
    """load_mimic_cxr + set_transform(PretrainingTransform): a JPEG whose coded data is broken (it passes the loader's
    header check) is named by the transform, not left to fail unnamed inside `datasets`."""
    root = tmp_path / "copy"
    shutil.copytree(mimic_root, root)
    dataset, _ = load_with_warnings(root, cache_dir=tmp_path / "cache")
    path = dataset[0]["image"]["path"]
    Path(path).write_bytes(broken_stream_jpeg(Path(path).read_bytes()))  # PIL: "broken data stream"
    processor = MRMImageProcessor(mode="pretraining")
    dataset.set_transform(PretrainingTransform(processor, size=64, seed=0))
    with pytest.raises(RecordError, match=rf"{path}: expected a readable radiograph"):
        dataset[0]
    skipping = PretrainingTransform(processor, size=64, seed=0, on_bad_image="skip")
    dataset.set_transform(skipping)
    assert dataset[0]["pixel_values"] is None and skipping.skipped == 1
    assert dataset[1]["pixel_values"].shape == (3, 64, 64)
