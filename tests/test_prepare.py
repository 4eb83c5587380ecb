"""`python -m mrm_hf.data.prepare`: resized 8-bit records in a datasets folder, resumable, counting bad images."""

import csv
import json

import numpy as np
import pytest
from datasets import Image, load_from_disk
from PIL import Image as PILImage

import mrm_hf.data.prepare as prepare
from pretraining_setup import DataArguments, load_records


# (subject, study, dicom, (width, height), report); the last image is truncated on disk.
RECORDS = [
    (10000032, 50414267, "02aa804e-bde0afdd-112c0b34-7bc16630-4e384014", (600, 700), "Heart size is normal."),
    (10000032, 53189527, "2a2277a9-b0ded155-c0de8eb9-c124d10e-82c5caab", (1100, 1000), "Small left effusion."),
    (10000764, 57375967, "096052b7-d256dc40-453a102b-fa7d01c6-1b22c6b4", (300, 400), "No pneumothorax."),
    (10000898, 50771383, "8959e402-2175d68d-edba5a6c-520ec6ea-b9aca1f5", (520, 2100), "Lines and tubes."),
    (10000980, 51967283, "9f6e6e0f-4bd2b9f0-8e5b0b96-0c0b9ef6-0b3d5c1e", (640, 640), "Clear lungs."),
]


@pytest.fixture
def training_csv(tmp_path):
    rows = []
    rng = np.random.default_rng(0)
    for index, (subject, study, dicom, (width, height), report) in enumerate(RECORDS):
        path = tmp_path / "files" / f"p{str(subject)[:2]}" / f"p{subject}" / f"s{study}" / f"{dicom}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        smooth = np.add.outer(np.linspace(0, 200, height), np.linspace(0, 50, width))
        PILImage.fromarray((smooth + rng.integers(0, 5, (height, width))).astype(np.uint8)).save(path, quality=95)
        if index == len(RECORDS) - 1:
            path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])  # truncated
        rows.append([path.relative_to(tmp_path).as_posix(), report])
    csv_path = tmp_path / "training.csv"
    with open(csv_path, "w", newline="") as file:
        csv.writer(file).writerows([["image_path", "report_content"], *rows])
    return csv_path


def expected_size(width: int, height: int) -> tuple[int, int]:
    scale = 512 / min(width, height)
    if scale >= 1:
        return width, height
    return (512, round(height * scale)) if width <= height else (round(width * scale), 512)


def run(csv_path, output_dir, *extra):
    args = ["--training_csv", str(csv_path), "--output_dir", str(output_dir), "--shard_size", "2", "--num_proc", "1"]
    return prepare.main([*args, *extra])


def test_prepared_records_round_trip_sizes_reports_and_ids_and_count_unreadable_images(training_csv, tmp_path, capsys):
    output = tmp_path / "prepared"
    run(training_csv, output)
    assert "Left out 1 of 5 images that could not be read (truncated image: 1)" in capsys.readouterr().out
    report = json.loads((output / "prepare_report.json").read_text())
    assert report["skipped"] == {"truncated image": 1} and report["records"] == {"train": 4}
    assert not (output / prepare.SHARDS).exists()

    records = load_records(DataArguments(dataset="disk", data_dir=str(output)), seed=0)["train"]
    assert records.column_names == ["image", "report", "subject_id", "study_id", "dicom_id"]
    for row, (subject, study, dicom, size, report) in zip(records, RECORDS[:-1]):
        assert (row["subject_id"], row["study_id"], row["dicom_id"], row["report"]) == (subject, study, dicom, report)
        assert row["image"].mode == "L" and row["image"].size == expected_size(*size)
    # Lossless PGM of the source resized once: close to the source resized with PIL directly.
    source = PILImage.open(training_csv.parent / "files/p10/p10000032/s50414267" / f"{RECORDS[0][2]}.jpg")
    direct = np.asarray(source.resize(expected_size(*RECORDS[0][3]), PILImage.Resampling.BICUBIC), dtype=float)
    assert np.abs(np.asarray(records[0]["image"], dtype=float) - direct).mean() < 1.0


def test_an_interrupted_prepare_resumes_without_redoing_finished_shards(training_csv, tmp_path, monkeypatch):
    written = []
    original = prepare.write_shard

    def interrupt_at_second_shard(*args):
        if written:
            raise KeyboardInterrupt
        written.append(args[2])
        return original(*args)

    monkeypatch.setattr(prepare, "write_shard", interrupt_at_second_shard)
    output = tmp_path / "prepared"
    with pytest.raises(KeyboardInterrupt):
        run(training_csv, output, "--image_format", "jpeg")
    assert [p.name for p in (output / prepare.SHARDS / "train").iterdir()] == ["00000"]

    resumed = []
    monkeypatch.setattr(prepare, "write_shard", lambda *args: resumed.append(args[2]) or original(*args))
    run(training_csv, output, "--image_format", "jpeg")
    assert [p.rsplit("/", 1)[-1] for p in resumed] == ["00001", "00002"]  # the first shard was not written again

    straight = tmp_path / "straight"
    run(training_csv, straight, "--image_format", "jpeg")
    a, b = (load_from_disk(str(folder))["train"] for folder in (output, straight))
    encoded = [split.cast_column("image", Image(decode=False))["image"] for split in (a, b)]
    assert encoded[0] == encoded[1] and a["report"] == b["report"]


def test_resuming_with_other_options_is_refused(training_csv, tmp_path, monkeypatch):
    monkeypatch.setattr(prepare, "write_shard", lambda *args: (_ for _ in ()).throw(KeyboardInterrupt))
    output = tmp_path / "prepared"
    with pytest.raises(KeyboardInterrupt):
        run(training_csv, output)
    with pytest.raises(ValueError, match="other options"):
        run(training_csv, output, "--short_side", "256")
