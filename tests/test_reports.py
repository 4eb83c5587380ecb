import csv
import re

import pytest

from mrm_hf.data import extract_sections, report_text


MIMIC_STYLE = ("data", "reports", "mimic_cxr_style")
IU_CSV = ("data", "reports", "iu_xray_openi", "iu_reports.csv")
# Text that itself looks like a heading ("Comparison:" inside an IU findings column): such rows cannot round-trip.
HEADING_LIKE = re.compile(
    r"(?i)(?<![\w/-])(findings?|impressions?|conclusions?|comparisons?|indications?|history|technique|exam|"
    r"examination|notification|recommendations?|addendum)\s*:"
)


def flat(text: str) -> str:
    return " ".join(text.split())


def website_report(shared) -> str:
    return shared(*MIMIC_STYLE, "mimic_cxr_website_example_report.txt").read_text()


def training_csv_report(shared) -> str:
    with open(shared(*MIMIC_STYLE, "mrm_readme_training_csv_example.txt"), newline="") as file:
        return next(csv.DictReader(file))["report_content"]


def iu_rows(shared) -> list[dict[str, str]]:
    with open(shared(*IU_CSV), newline="", encoding="utf-8") as file:
        return list(csv.DictReader(file))


def mimic_layout(row: dict[str, str], heading=str.upper, flatten=False) -> str:
    """An IU report re-assembled in the MIMIC-CXR layout (banner, one heading per non-empty field)."""
    parts = ["                                 FINAL REPORT"]
    for field in ("indication", "comparison", "findings", "impression"):
        if row[field].strip():
            parts.append(f" {heading(field)}:  {row[field]}\n \n")
    text = "\n".join(parts)
    return flat(text) if flatten else text


def test_website_example_sections(shared):
    sections = extract_sections(website_report(shared))
    assert sections["examination"] == "CHEST (PA AND LAT)"
    assert sections["indication"] == "___ year old woman with ?pleural effusion // ?pleural effusion"
    assert sections["technique"] == "Chest PA and lateral"
    assert sections["comparison"] == "___"
    assert sections["findings"].startswith("Cardiac size cannot be evaluated. Large left pleural effusion is new.")
    assert sections["findings"].endswith("There are mild degenerative changes in the thoracic spine")
    assert sections["impression"] == "Large left pleural effusion"
    assert "FINAL REPORT" not in " ".join(sections.values())


def test_flattened_training_csv_row_gives_the_same_sections_as_its_layout(shared):
    sections = extract_sections(training_csv_report(shared))
    assert sections["indication"] == "___F with new onset ascites // eval for infection"
    assert sections["comparison"] == "None."
    assert sections["findings"].startswith("There is no focal consolidation, pleural effusion or pneumothorax.")
    assert sections["findings"].endswith("Chronic deformity of the posterior left sixth and seventh ribs are noted.")
    assert sections["impression"] == "No acute cardiopulmonary process."


def test_full_policy_is_the_whole_report_on_one_line(shared):
    text = report_text(website_report(shared), "full")
    assert "\n" not in text and "  " not in text
    assert text.startswith("FINAL REPORT EXAMINATION: CHEST (PA AND LAT) INDICATION:")
    assert text.endswith("IMPRESSION: Large left pleural effusion")


@pytest.mark.parametrize(
    "layout",
    [dict(), dict(flatten=True), dict(heading=str.lower)],
    ids=["multiline", "flattened", "lowercase"],
)
def test_iu_reports_reassembled_give_back_their_findings_and_impression(shared, layout):
    rows = iu_rows(shared)
    assert len(rows) == 3955
    checked = 0
    for row in rows:
        if any(HEADING_LIKE.search(row[field]) for field in ("indication", "comparison", "findings", "impression")):
            continue
        report = mimic_layout(row, **layout)
        sections = extract_sections(report)
        assert sections["findings"] == flat(row["findings"]), report
        assert sections["impression"] == flat(row["impression"]), report
        expected = " ".join(p for p in (flat(row["findings"]), flat(row["impression"])) if p)
        assert report_text(report, "findings_impression") == expected
        assert report_text(report, "impression") == flat(row["impression"])
        checked += 1
    assert checked > 3900  # only a handful of IU fields contain heading-like text themselves


def test_findings_without_heading_after_comparison_is_found(shared):
    sections = extract_sections(website_report(shared).replace(" FINDINGS: \n", ""))
    assert sections["findings"].startswith("Cardiac size cannot be evaluated.")
    assert sections["comparison"] == "___"
    assert sections["impression"] == "Large left pleural effusion"


def test_report_without_findings_or_impression_headings_uses_its_last_paragraph_as_impression(shared):
    report = website_report(shared).replace(" FINDINGS: \n", "").replace(" IMPRESSION: \n", "")
    sections = extract_sections(report)
    assert sections["impression"] == "Large left pleural effusion"
    assert sections["findings"] == extract_sections(website_report(shared))["findings"]


def test_findings_only_report_has_empty_impression(shared):
    report = website_report(shared).split(" IMPRESSION:")[0]
    sections = extract_sections(report)
    assert sections["impression"] == ""
    assert report_text(report, "impression") == ""
    assert report_text(report, "findings_impression") == sections["findings"] != ""


@pytest.mark.parametrize("heading", ["CONCLUSION", "FINDINGS AND IMPRESSION", "Findings/Impression", "impressions"])
def test_impression_variants(shared, heading):
    report = website_report(shared).replace(" FINDINGS: \n", "").replace("IMPRESSION:", f"{heading}:")
    sections = extract_sections(report)
    assert sections["impression"] == "Large left pleural effusion"


def test_recommendations_and_notification_are_not_impression(shared):
    report = website_report(shared) + (
        "\n \n RECOMMENDATION(S):  Chest CT.\n \n NOTIFICATION:  The findings were discussed with Dr. ___ at 10:00.\n"
    )
    sections = extract_sections(report)
    assert sections["impression"] == "Large left pleural effusion"
    assert sections["recommendations"] == "Chest CT."
    assert sections["notification"] == "The findings were discussed with Dr. ___ at 10:00."


def test_heading_words_inside_a_sentence_do_not_start_a_section(shared):
    report = website_report(shared).replace("thoracic spine", "thoracic spine, as on the prior exam: unchanged")
    sections = extract_sections(report)
    assert sections["findings"].endswith("thoracic spine, as on the prior exam: unchanged")
    assert sections["examination"] == "CHEST (PA AND LAT)"
    flattened = extract_sections("Findings: Lungs are clear. Impression: normal chest. notification: called.")
    assert (flattened["findings"], flattened["impression"]) == ("Lungs are clear.", "normal chest.")
    assert flattened["notification"] == "called."


def test_lowercase_negbio_reports(shared):
    sections = extract_sections(shared(*MIMIC_STYLE, "negbio_examples", "00000086.txt").read_text())
    assert sections["findings"].startswith("pa and lat cxr at 7:34 p.m.. heart and mediastinum are stable.")
    assert sections["impression"] == "stable chest. dictating"


def test_report_that_is_only_a_banner_is_empty():
    assert report_text("                FINAL REPORT\n \n", "impression") == ""
    assert report_text("FINAL REPORT  FINDINGS:   IMPRESSION:  ", "findings_impression") == ""


def test_unknown_policy_is_rejected():
    with pytest.raises(ValueError, match="findings_impression"):
        report_text("FINDINGS: clear.", "findings")
