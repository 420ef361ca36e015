"""The pair's page: two studies of one patient, the registration, the change table and the categories.

Drawn from the comparison's JSON document (``longitudinal.outputs.comparison_document``) and the change table's rows,
exactly as the CSV holds them, plus four pictures of one slice on the baseline grid (baseline, registered follow-up,
the change overlay, the registration checkerboard). Nothing is measured here, so the PDF, the JSON and the CSV
cannot disagree. This module never imports ``longitudinal``: it takes plain dicts and arrays, so the report layer
stays below the pipeline that writes it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

import numpy as np
from PIL import Image

from lggdemo import NOT_FOR_DIAGNOSIS, __version__
from lggdemo.report.pdf import MARGIN, PAGE_W, PdfReportError, _Page

PICTURES = (("baseline", "Baseline"), ("followup", "Follow-up, registered"), ("change", "Change"),
            ("checkerboard", "Registration check"))
LEGEND = ("Baseline and follow-up: FLAIR on the baseline's grid, red: the mask, yellow / cyan: the two diameters on "
          "each visit's key slice. Change: red = tumour at both visits, orange = new at follow-up, blue = gone. "
          "Registration check: squares alternate baseline and follow-up; edges that run on across the squares mean "
          "the two are aligned. Anterior at the top, the patient's right on the image's left.")


def _visit_line(label: str, visit: Mapping[str, Any]) -> str:
    date = visit.get("date") or "no date"
    source = visit.get("date_source")
    return f"{label}: {visit.get('name')} ({date}{'' if not source or source == 'unknown' else ', ' + source})"


def _registration_lines(reg: Mapping[str, Any]) -> list[str]:
    rot = ", ".join(f"{a:+.1f}" for a in reg.get("rotation_deg") or [])
    shift = ", ".join(f"{t:+.1f}" for t in reg.get("translation_mm") or [])
    before, after = reg.get("similarity_before") or {}, reg.get("similarity_after") or {}
    out = [f"Registration (rigid, FLAIR, Mattes mutual information): rotation {rot} deg (total "
           f"{reg.get('rotation_total_deg', 0.0):.1f} deg), translation {shift} mm "
           "(about / towards the patient's left, posterior, superior).",
           f"Similarity before -> after: normalised MI {before.get('nmi', 0.0):.3f} -> {after.get('nmi', 0.0):.3f}; "
           f"Mattes MI {before.get('mattes_mi', 0.0):.3f} -> {after.get('mattes_mi', 0.0):.3f}; correlation "
           f"{before.get('correlation', 0.0):.2f} -> {after.get('correlation', 0.0):.2f}.",
           f"Verdict: {reg.get('verdict')}: {reg.get('verdict_text')}"]
    out += [str(n) for n in reg.get("notes") or []]
    return out


def pair_pdf(document: Mapping[str, Any], rows: Sequence[Mapping[str, str]], pictures: Mapping[str, np.ndarray], *,
             generated: datetime | None = None) -> bytes:
    """The one-page PDF of a comparison.

    Args:
        document: the comparison's JSON document (``registration``, ``change``, ``baseline``, ``followup``, ...).
        rows: the change table's rows (measure, baseline, follow-up, change), as the CSV holds them.
        pictures: (H, W, 3) uint8 arrays under ``baseline``, ``followup``, ``change``, ``checkerboard``; ``index``
            (0-based slice) for the caption.
        generated: the date printed (default: now, UTC).
    """
    change = document.get("change")
    reg = document.get("registration")
    if not isinstance(change, Mapping) or not isinstance(reg, Mapping):
        raise PdfReportError("the comparison document has no change table or registration")
    missing = [k for k, _ in PICTURES if k not in pictures]
    if missing:
        raise PdfReportError(f"the pair page needs the pictures {', '.join(missing)}")
    when = generated or datetime.now(timezone.utc)
    page = _Page(when)
    pdf = page.pdf
    page.para("lggdemo pair report: has the tumour changed?", 14, bold=True, h=7)
    page.para(f"Report date {when:%Y-%m-%d %H:%M} UTC", 8.5, colour=(80, 80, 80))
    page.para(document.get("disclaimer") or NOT_FOR_DIAGNOSIS, 9, bold=True, colour=(180, 20, 20), h=4.6)
    pdf.ln(1)
    page.para(_visit_line("Baseline", change.get("baseline") or {}), 8.5)
    page.para(_visit_line("Follow-up", change.get("followup") or {}), 8.5)
    page.para(f"Masks: {document.get('model_version') or 'given masks'}. lggdemo {document.get('lggdemo_version', __version__)}.",
              8.5)
    pdf.ln(1)
    for line in _registration_lines(reg):
        page.para(line, 8)
    pdf.ln(1.5)

    page.para("Change", 11, bold=True, h=6)
    page.font(8.5)
    with pdf.table(col_widths=(58, 38, 38, 52), text_align=("LEFT", "LEFT", "LEFT", "LEFT"), line_height=4.6,
                   first_row_as_headings=True) as table:
        for cells in (("Measure", "Baseline", "Follow-up", "Change"),
                      *((r["measure"], r["baseline"], r["follow-up"], r["change"]) for r in rows)):
            row = table.row()
            for c in cells:
                row.cell(page.text(str(c)))
    for key in ("volume_beyond_error", "product_beyond_error"):
        verdict = change.get(key) or {}
        if verdict.get("text"):
            page.para(str(verdict["text"]), 7.8)
    page.para(str(change.get("growth_note") or ""), 7.8)
    page.para(f"Categories: {change.get('imaging_only')}.", 7.8, bold=True)
    page.para(str(change.get("fragility") or ""), 7.8, colour=(80, 80, 80))
    for note in change.get("notes") or []:
        page.para(str(note), 7.5, colour=(80, 80, 80))
    pdf.ln(1.5)

    width = (PAGE_W - 2 * MARGIN - 3 * 3) / 4
    y = pdf.get_y()
    if y + width + 22 > 297 - MARGIN:
        raise PdfReportError("the pair page ran out of room for its pictures")
    index = int(np.asarray(pictures.get("index", -1)))
    for i, (key, title) in enumerate(PICTURES):
        x = MARGIN + i * (width + 3)
        pdf.image(Image.fromarray(np.asarray(pictures[key], np.uint8)), x=x, y=y, w=width, h=width)
        pdf.set_xy(x, y + width + 0.5)
        page.font(7.5, colour=(60, 60, 60))
        pdf.multi_cell(width, 3.4, page.text(title + (f", slice {index + 1}" if index >= 0 else "")), align="L",
                       new_x="LEFT", new_y="NEXT")
    pdf.set_xy(MARGIN, y + width + 5)
    page.para(LEGEND, 7, colour=(80, 80, 80), h=3.3)
    pdf.set_y(297 - MARGIN - 4)
    page.para(f"{NOT_FOR_DIAGNOSIS} Generated by lggdemo {__version__}.", 7, colour=(120, 120, 120), h=3.4)
    if pdf.page_no() != 1:  # pragma: no cover - sized for one page
        raise PdfReportError("the pair report ran over one page")
    return bytes(pdf.output())
