"""Sections of free-text chest X-ray reports (MIMIC-CXR layout) and the report text each policy feeds the model.

A report is split at known headings ("FINDINGS:", "IMPRESSION:", ...) followed by a colon. A heading counts at the
start of a line or after a sentence (".", ":", ";") in any case, and anywhere else when written in capitals, so the
multi-line MIMIC-CXR files and the one-line flattened `training.csv` form parse alike, while "compared to the prior
exam: no change" inside a sentence does not start a section.
"FINAL REPORT" is a banner, not content, and is dropped. De-identification blanks (`___`) are kept as they are.

Fallbacks, in the order they apply:
- Unlabelled text is every paragraph after the first of a header section (EXAMINATION, INDICATION, HISTORY,
  TECHNIQUE, COMPARISON, ...; the text before the first heading counts as one, its first paragraph being a title such
  as "PA AND LATERAL CHEST"): radiologists often start the findings as a new paragraph after COMPARISON without a
  heading. A report with no heading at all is unlabelled text throughout. Only multi-line reports have paragraphs.
- `findings`: all FINDINGS-like sections, joined. If there is none, the unlabelled text before the impression.
- `impression`: all IMPRESSION-like sections (IMPRESSION, CONCLUSION, FINDINGS AND IMPRESSION, misspellings), joined.
  If the report has neither findings nor impression, the last paragraph of the unlabelled text is the impression
  (as in the official MIMIC-CXR section extraction) and is left out of the findings. A report with findings and no
  impression keeps an empty impression: its findings are not copied.
"""

import re
from typing import Literal

from ..utils import check_choice


ReportPolicy = Literal["full", "findings_impression", "impression"]
REPORT_POLICIES = ("full", "findings_impression", "impression")

# Heading (lowercase, single spaces) -> section name. Longer headings are matched first.
SECTION_ALIASES = {
    "findings": "findings",
    "finding": "findings",
    "reference findings": "findings",
    "findins": "findings",
    "findngs": "findings",
    "findnings": "findings",
    "finidngs": "findings",
    "impression": "impression",
    "impressions": "impression",
    "conclusion": "impression",
    "conclusions": "impression",
    "findings and impression": "impression",
    "findings and impressions": "impression",
    "findings/impression": "impression",
    "findings / impression": "impression",
    "impresson": "impression",
    "impresion": "impression",
    "imprssion": "impression",
    "impressoin": "impression",
    "impession": "impression",
    "examination": "examination",
    "exam": "examination",
    "type of examination": "examination",
    "indication": "indication",
    "indications": "indication",
    "clinical indication": "indication",
    "reason for examination": "indication",
    "reason for exam": "indication",
    "history": "history",
    "clinical history": "history",
    "clinical information": "history",
    "patient history": "history",
    "technique": "technique",
    "comparison": "comparison",
    "comparisons": "comparison",
    "comparison exam": "comparison",
    "comparison film": "comparison",
    "reference exam": "comparison",
    "recommendation": "recommendations",
    "recommendations": "recommendations",
    "recommendation(s)": "recommendations",
    "notification": "notification",
    "wet read": "wet read",
    "addendum": "addendum",
}
BODY_SECTIONS = ("findings", "impression")

_HEADING = re.compile(
    r"(?<![\w/-])("
    + "|".join(
        r"\s+".join(re.escape(word) for word in heading.split())
        for heading in sorted(SECTION_ALIASES, key=len, reverse=True)
    )
    + r")\s*:",
    re.IGNORECASE,
)
_BANNER = re.compile(r"\bFINAL\s+REPORT\b", re.IGNORECASE)
_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n")


def _flatten(text: str) -> str:
    """Collapse every run of whitespace to one space."""
    return " ".join(text.split())


def _paragraphs(text: str) -> list[str]:
    """Non-empty paragraphs (split at blank lines), each flattened to one line."""
    return [p for p in (_flatten(chunk) for chunk in _PARAGRAPH_BREAK.split(text)) if p]


def _starts_section(text: str, heading: re.Match) -> bool:
    """Whether a heading-like match is a heading: in capitals, or at a line start or after a sentence."""
    before = text[: heading.start()].rstrip(" \t")
    return heading.group(1).isupper() or not before or before.endswith(("\n", ".", ":", ";"))


def _heading_name(heading: str) -> str:
    return SECTION_ALIASES[" ".join(heading.lower().split())]


def extract_sections(report: str) -> dict[str, str]:
    """Split a report into named sections with flattened whitespace; always has `findings` and `impression`."""
    if not isinstance(report, str):
        found = f"{type(report).__name__} ({report!r:.60})"
        raise TypeError(f"extract_sections: expected the report as a str; found {found}")
    text = _BANNER.sub(" ", report.replace("\r\n", "\n").replace("\r", "\n"))
    headings = [heading for heading in _HEADING.finditer(text) if _starts_section(text, heading)]

    # (section name, or None for unlabelled text; its paragraphs), in reading order.
    bounds = [("preamble" if headings else None, 0, headings[0].start() if headings else len(text))] + [
        (_heading_name(h.group(1)), h.end(), following.start() if following else len(text))
        for h, following in zip(headings, headings[1:] + [None])
    ]
    blocks: list[tuple[str | None, list[str]]] = []
    for name, start, end in bounds:
        paragraphs = _paragraphs(text[start:end])
        if name is None or name in BODY_SECTIONS:
            blocks.append((name, paragraphs))
        else:
            blocks += [(name, paragraphs[:1]), (None, paragraphs[1:])]

    sections: dict[str, list[str]] = {"findings": [], "impression": []}
    for name, paragraphs in blocks:
        if name is not None:
            sections.setdefault(name, []).extend(paragraphs)
    first_impression = next((i for i, (name, _) in enumerate(blocks) if name == "impression"), len(blocks))
    unlabelled = [p for name, paragraphs in blocks[:first_impression] if name is None for p in paragraphs]
    if not sections["findings"] and not sections["impression"]:
        sections["impression"] = unlabelled[-1:]
        unlabelled = unlabelled[:-1]
    if not sections["findings"]:
        sections["findings"] = unlabelled
    return {name: " ".join(paragraphs) for name, paragraphs in sections.items() if paragraphs or name in BODY_SECTIONS}


def check_report_policy(policy: str) -> str:
    """`policy` if it is one of `REPORT_POLICIES`, else a ValueError: the one check of the choice, which the loaders
    make before reading and `report_text` on each report."""
    return check_choice("report_sections", policy, REPORT_POLICIES)


def report_text(report: str, policy: ReportPolicy = "full") -> str:
    """The text the model sees: the whole report on one line, findings + impression, or the impression ("" if none,
    and "" for a whole report with no word beyond its banner and headings, such as "FINAL REPORT" alone)."""
    if check_report_policy(policy) == "full":
        words = _HEADING.sub(" ", _BANNER.sub(" ", report))
        return _flatten(report) if re.search(r"[^\W_]", words) else ""
    sections = extract_sections(report)
    if policy == "impression":
        return sections["impression"]
    return " ".join(part for part in (sections["findings"], sections["impression"]) if part)


__all__ = [
    "REPORT_POLICIES",
    "SECTION_ALIASES",
    "ReportPolicy",
    "check_report_policy",
    "extract_sections",
    "report_text",
]
