import re
from collections import Counter

import numpy as np
import pytest
from PIL import Image

from mrm_hf.data.demo import (
    KINDS,
    SIDES,
    SIZES,
    ZONES,
    draw_radiographs,
    make_demo_dataset_dict,
    make_demo_records,
    sample_record,
)
from mrm_hf.data.reports import extract_sections


# Words a report uses for each kind when it is present; a sentence that uses them for an absent kind must negate it.
KIND_WORDS = {
    "nodule": ("nodule",),
    "mass": ("mass",),
    "effusion": ("effusion", "costophrenic"),
    "cardiomegaly": ("cardiomegaly", "enlarged", "enlargement"),
}
NEGATIONS = ("no", "not", "without")


@pytest.fixture(scope="module")
def records():
    return make_demo_records(600, image_size=32, seed=0)


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z]+", text.lower())


def _sentences(text: str) -> list[str]:
    return [s for s in re.split(r"(?<=\.)\s+", text) if s]


def _as_array(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.int16)


def test_same_seed_gives_identical_records_whatever_the_count():
    first = make_demo_records(12, image_size=64, seed=3)
    again = make_demo_records(12, image_size=64, seed=3)
    prefix = make_demo_records(5, image_size=64, seed=3)
    other = make_demo_records(12, image_size=64, seed=4)

    assert list(first["report"]) == list(again["report"]) and list(first["findings"]) == list(again["findings"])
    assert all(np.array_equal(_as_array(a), _as_array(b)) for a, b in zip(first["image"], again["image"]))
    assert list(prefix["report"]) == list(first["report"])[:5]
    assert all(np.array_equal(_as_array(a), _as_array(b)) for a, b in zip(prefix["image"], first["image"]))
    assert not any(np.array_equal(_as_array(a), _as_array(b)) for a, b in zip(first["image"], other["image"]))
    assert sum(a != b for a, b in zip(first["report"], other["report"])) > 6


def test_columns_are_grayscale_images_reports_findings_and_labels(records):
    example = records[0]
    assert example["image"].mode == "L" and example["image"].size == (32, 32)
    assert set(records.column_names) == {"image", "report", "findings", "labels"}
    for findings, labels in zip(records["findings"], records["labels"]):
        assert labels == [float(any(f["kind"] == kind for f in findings)) for kind in KINDS]


def test_description_says_the_data_is_synthetic(records):
    splits = make_demo_dataset_dict(num_train=4, num_validation=2, image_size=32)
    for description in (records.info.description, *(split.info.description for split in splits.values())):
        assert "synthetic" in description.lower() and "not medical data" in description
    import mrm_hf.data.demo as demo

    assert "NOT medical data" in demo.__doc__


def test_drawn_findings_are_visible_where_stated_at_the_encoder_input_size():
    """Removing one finding darkens its box, and the change is centred in the box, on the stated side and zone."""
    seen = Counter()
    for index in range(150):
        chest, findings, _ = sample_record(seed=0, index=index)
        for j, finding in enumerate(findings):
            others = findings[:j] + findings[j + 1 :]
            drawn, without = draw_radiographs([chest, chest], [findings, others], image_size=64)
            # The model sees 32 px: downsample as an image processor would.
            change = np.asarray(Image.fromarray(drawn).resize((32, 32), Image.BICUBIC), np.float32) - np.asarray(
                Image.fromarray(without).resize((32, 32), Image.BICUBIC), np.float32
            )
            x0, y0, x1, y1 = (int(round(v * 32)) for v in finding.box)
            assert change[y0:y1, x0:x1].mean() > 4, finding

            weight = np.clip(change, 0, None)
            rows, cols = np.indices(change.shape) + 0.5
            cx, cy = (weight * cols).sum() / weight.sum() / 32, (weight * rows).sum() / weight.sum() / 32
            assert finding.box[0] <= cx <= finding.box[2] and finding.box[1] <= cy <= finding.box[3], finding
            if finding.side is not None:
                # The patient's right is on the image's left.
                assert (cx < chest.center) == (finding.side == "right"), finding
            if finding.zone is not None:
                middle = (chest.apex + chest.base_left) / 2
                assert (cy < middle) == (finding.zone == "upper"), finding
            seen[finding.kind] += 1
    assert set(seen) == set(KINDS)


def test_larger_findings_change_more_of_the_image():
    """Size words are visible: large effusions and masses cover more pixels than small ones."""
    area = {}
    for index in range(200):
        chest, findings, _ = sample_record(seed=1, index=index)
        for j, finding in enumerate(findings):
            others = findings[:j] + findings[j + 1 :]
            drawn, without = draw_radiographs([chest, chest], [findings, others], image_size=64)
            changed = (np.abs(drawn.astype(np.int16) - without) > 20).mean()
            area.setdefault((finding.kind, finding.size), []).append(changed)
    assert max(area[("effusion", "small")]) < min(area[("effusion", "large")])
    assert max(area[("nodule", "small")]) < min(area[("mass", "large")])
    assert np.mean(area[("cardiomegaly", "mild")]) < np.mean(area[("cardiomegaly", "moderate")])


def test_reports_state_exactly_the_drawn_side_zone_size_and_kind(records):
    for report, findings in zip(records["report"], records["findings"]):
        sections = extract_sections(report)
        words = Counter(_words(report))
        # Location and size words come only from the drawn findings, once each.
        for side in SIDES:
            assert words[side] == sum(f["side"] == side for f in findings), report
        for zone in ZONES:
            assert words[zone] == sum(f["zone"] == zone for f in findings), report
        for size in ("small", "large"):
            assert words[size] == sum(f["size"] == size for f in findings), report
        for size in ("mild", "moderate"):
            assert words[size] + words[size + "ly"] == sum(f["size"] == size for f in findings), report

        sentences = _sentences(sections["findings"])
        for finding in findings:
            required = [w for w in (finding["side"], finding["zone"]) if w]
            assert any(
                all(w in _words(s) for w in required)
                and any(word.startswith(finding["size"]) for word in _words(s))
                and any(k in _words(s) for k in KIND_WORDS[finding["kind"]])
                for s in sentences
            ), (finding, report)

        present = {f["kind"] for f in findings}
        for kind in set(KINDS) - present:
            mentions = [s for s in sentences if any(k in _words(s) for k in KIND_WORDS[kind])]
            assert all(any(n in _words(s) for n in NEGATIONS) for s in mentions), (kind, report)
        if "effusion" not in present:
            assert any("effusion" in s and any(n in _words(s) for n in NEGATIONS) for s in sentences), report
        if not present & {"nodule", "mass"}:
            assert any("nodule or mass" in s for s in sentences), report
        if "cardiomegaly" not in present:
            normal_heart = r"heart size is (normal|within normal)|silhouette is (normal|not enlarged)"
            assert any(re.search(normal_heart, s, re.IGNORECASE) for s in sentences), report
        assert re.search(r"pneumothorax", sections["findings"]), report


def test_impression_never_gives_away_side_zone_or_size(records):
    for report, findings in zip(records["report"], records["findings"]):
        impression = extract_sections(report)["impression"]
        assert impression
        assert not set(_words(impression)) & {*SIDES, *ZONES, *(s for sizes in SIZES.values() for s in sizes)}, report
        if not findings:
            assert re.search(r"No acute|Normal chest", impression), report


def test_reports_vary_and_every_finding_is_common(records):
    reports, findings = list(records["report"]), list(records["findings"])
    assert len(set(reports)) > 0.9 * len(reports)
    assert len({r.split(".")[0] for r in reports}) > 10  # the first sentence varies too

    normal = sum(not f for f in findings) / len(findings)
    assert 0.2 < normal < 0.4
    counts = Counter((f["kind"], f["side"]) for fs in findings for f in fs)
    for kind in ("nodule", "mass", "effusion"):
        for side in SIDES:
            assert counts[(kind, side)] > 0.05 * len(findings), (kind, side)
    assert counts[("cardiomegaly", None)] > 0.1 * len(findings)
    sizes = Counter((f["kind"], f["size"]) for fs in findings for f in fs)
    assert all(sizes[(kind, size)] > 0.03 * len(findings) for kind in KINDS for size in SIZES[kind])


def test_reports_fit_the_report_encoder(records):
    from mrm_hf.tokenization_mrm import train_report_tokenizer

    reports = list(records["report"])
    assert max(len(r.split()) for r in reports) < 80
    tokenizer = train_report_tokenizer(reports, vocab_size=300)
    lengths = [len(ids) for ids in tokenizer(reports)["input_ids"]]  # [CLS] included
    assert max(lengths) < 100


def test_reports_fit_the_published_vocabulary(records, shared):
    from mrm_hf.tokenization_mrm import load_published_tokenizer

    tokenizer = load_published_tokenizer(shared("reference", "mimic_wordpiece.json"))
    encoded = tokenizer(list(records["report"]))["input_ids"]
    assert max(len(ids) for ids in encoded) < 100
    assert all(tokenizer.unk_token_id not in ids for ids in encoded)


def test_dataset_dict_has_independent_train_and_validation():
    splits = make_demo_dataset_dict(num_train=30, num_validation=10, image_size=32, seed=5)
    assert (splits["train"].num_rows, splits["validation"].num_rows) == (30, 10)
    assert list(splits["validation"]["report"]) == list(make_demo_records(10, image_size=32, seed=6)["report"])
    train_images = {_as_array(image).tobytes() for image in splits["train"]["image"]}
    assert not any(_as_array(image).tobytes() in train_images for image in splits["validation"]["image"])
