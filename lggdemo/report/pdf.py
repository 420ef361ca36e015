"""One A4 page per study: disclaimer, the input's identifiers, model, measurements with ranges, three key
slices, the grade sentence.

Everything printed comes from one row of the JSON report's document (``inference.reports.patient_report_document``)
and is formatted with the digits the document states (``document["digits"]``): a test extracts the PDF's text and
finds the JSON's numbers in it. The only inputs besides the document are the pixels to draw (the Volume's display
slices and the mask the row describes). The page states which mask that is (the row's ``mask``: the model's, or one
corrected by hand, in the document's ``mask_notes`` words), since a corrected report and the model's look alike
otherwise; and every slice carries the orientation letters the page draws (``viz.orientation.with_letters``, with
the row's ``display_edges``).

Identifiers are printed as the input carried them (its name, its files, DICOM attributes present in it); nothing
is filled in. Text is set in DejaVu Sans (shipped with matplotlib, which grad-cam installs) so the page can say
"≥", "²" and "–" as the app does; without it, the PDF's core Helvetica and a Latin-1 transliteration.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from lggdemo import NOT_FOR_DIAGNOSIS, __version__
from lggdemo.data.directions import KAGGLE_EDGES, WORDS, EdgeLetters
from lggdemo.viz.measurements import LONGEST_COLOUR, PERPENDICULAR_COLOUR, Line, draw_diameters
from lggdemo.viz.orientation import with_letters
from lggdemo.viz.overlay import channel_rgb, overlay_mask

NO_TUMOUR = "No tumour found: the model marked no voxel of this study, so no diameter is drawn or measured."
#: The transliteration used only when no Unicode font is available.
_LATIN1 = {"–": "-", "—": "-", "≥": ">=", "≤": "<=", "·": "-", "→": "->", "’": "'", "“": '"', "”": '"', "…": "..."}
PAGE_W, MARGIN = 210.0, 12.0


class PdfReportError(ValueError):
    """A document or pictures a report cannot be drawn from (no such patient row, pixels that do not match)."""


def _font_dir() -> Path | None:
    spec = importlib.util.find_spec("matplotlib")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "mpl-data" / "fonts" / "ttf"
    return folder if (folder / "DejaVuSans.ttf").is_file() and (folder / "DejaVuSans-Bold.ttf").is_file() else None


def _num(row: Mapping[str, Any], key: str, digits: Mapping[str, int], unit: str = "") -> str | None:
    """A row's number as the JSON holds it, with the document's digits; None when the row has none."""
    v = row.get(key)
    if v is None:
        return None
    text = f"{float(v):.{int(digits.get(key, 2))}f}" if isinstance(v, float) else str(v)
    return f"{text} {unit}".rstrip()


def measurement_lines(row: Mapping[str, Any], digits: Mapping[str, int]) -> list[tuple[str, str, str]]:
    """(what, value, range or note) rows of the measurements table, in mm where the input records a spacing."""
    n = lambda key, unit="": _num(row, key, digits, unit)  # noqa: E731
    mm = row.get("spacing_mm") is not None
    out: list[tuple[str, str, str]] = []
    if mm and row.get("tumour_ml") is not None:
        low, high = n("tumour_ml_low"), n("tumour_ml_high")
        out.append(("Tumour volume", n("tumour_ml", "mL") or "", f"range {low}–{high} mL" if low and high else ""))
    else:
        low, high = row.get("tumour_voxels_low"), row.get("tumour_voxels_high")
        out.append(("Tumour volume", f"{row.get('tumour_voxels')} voxels",
                    (f"range {low}–{high} voxels; " if low is not None else "") + "no voxel spacing, so no mL"))
    if not row.get("tumour_voxels"):
        return out
    key = row.get("key_slice")
    unit, suffix = ("mm", "_mm") if mm else ("px", "_px")
    out += [
        ("Longest axial diameter", n(f"longest{suffix}", unit) or "–", f"slice {key}"),
        ("Perpendicular diameter", n(f"perpendicular{suffix}", unit) or "–", "longest chord at right angles, same slice"),
        ("Bidimensional product", n(f"product{suffix}2", f"{unit}²") or "–", "RANO-LGG: longest × perpendicular"),
        ("Measurable (RANO-LGG)", {True: "yes", False: "no", None: "unknown"}[row.get("measurable")],
         "both diameters ≥ 10 mm" if mm else "needs the voxel spacing"),
    ]
    if mm:
        out += [("Largest 3D diameter", n("max_diameter_3d_mm", "mm") or "–", "largest lesion"),
                ("Mean tumour diameter", n("mean_diameter_mm", "mm") or "–", "(2·V)^(1/3), the LGG growth measure")]
        extent = [n(k) for k in ("extent_rl_mm", "extent_ap_mm", "extent_si_mm")]
        if all(extent):
            out.append(("Extent R–L × A–P × S–I", " × ".join(extent) + " mm", "bounding box"))  # type: ignore[arg-type]
    out += [("Lesions", str(row.get("lesions")), "3D connected pieces"), ("Laterality", str(row.get("laterality")),
                                                                         "side of the head's midline")]
    return out


def agreement_lines(row: Mapping[str, Any], digits: Mapping[str, int]) -> list[tuple[str, str, str]]:
    """The comparison with the input's reference mask; empty when it came without one."""
    if row.get("dice") is None:
        return []
    n = lambda key, unit="": _num(row, key, digits, unit) or "–"  # noqa: E731
    unit = row.get("distance_units") or "mm"
    rough = "" if unit == "mm" else "; no voxel spacing: voxel units, a rough ranking only"
    return [("Dice vs reference", n("dice"), f"reference: {row.get('truth_voxels')} voxels"),
            ("HD95 / ASSD", f"{n('hd95_mm', unit)} / {n('assd_mm', unit)}", "surface distances" + rough),
            (f"Surface Dice at 1 / 2 {unit}", f"{n('surface_dice_1mm')} / {n('surface_dice_2mm')}", ""),
            ("Volume / product difference", f"{n('volume_diff_pct', '%')} / {n('product_diff_pct', '%')}",
             "model minus reference, % of reference")]


def grade_statement(row: Mapping[str, Any]) -> str:
    """The grade as the Predict page states it: its "Patient P(G3)" figure when shown, then ``PatientGrade.text``
    (the withheld sentence and the note, ``grade_note``); the page's "No grade." when there is neither."""
    parts = []
    if row.get("p_g3") is not None:
        parts.append(f"Patient P(G3): {float(row['p_g3']):.0%}.")
    if row.get("grade_note"):
        parts.append(str(row["grade_note"]))
    return " ".join(parts) or "No grade."


def key_slices(row: Mapping[str, Any], n_slices: int) -> list[int]:
    """Three 0-based slices to print, in order: the key slice (where the diameters are) and the tumour's slices a
    quarter and three quarters through it (neighbours when it spans fewer); without a tumour, three evenly spaced."""
    if n_slices <= 0:
        return []
    tumour = sorted(int(s) - 1 for s in (row.get("tumour_slices") or []))
    if not tumour or row.get("key_slice") is None:
        picks = [n_slices // 4, n_slices // 2, (3 * n_slices) // 4]
    else:
        key = int(row["key_slice"]) - 1
        others = [tumour[len(tumour) // 4], tumour[(3 * len(tumour)) // 4], key - 1, key + 1, key - 2, key + 2]
        picks = [key] + [s for s in others if 0 <= s < n_slices and s != key]
    out: list[int] = []
    for s in picks:
        if s not in out:
            out.append(s)
    return sorted(out[:3])


#: What each kind of mask is called where a report names it (its ``mask`` field); the details are ``mask_notes``.
MASK_TITLES = {"model": "the model's prediction", "corrected": "corrected by hand in the editor"}


def mask_statement(document: Mapping[str, Any], row: Mapping[str, Any]) -> str:
    """Which mask the report describes, in the JSON's words: "Mask: corrected by hand in the editor. <its note>
    Corrected slices: 12, 13." (a row without ``mask`` is the model's: no measurements were taken of another)."""
    kind = str(row.get("mask") or "model")
    note = str((document.get("mask_notes") or {}).get(kind, "")).strip()
    edited = [str(s) for s in row.get("edited_slices") or []]
    slices = f" Corrected slices: {', '.join(edited[:20])}{' …' if len(edited) > 20 else ''}." if edited else ""
    return f"Mask: {MASK_TITLES.get(kind, kind)}." + (f" {note}" if note else "") + slices


def display_letters(row: Mapping[str, Any]) -> EdgeLetters:
    """The orientation letters of the row's display slices (``display_edges``); the kaggle_3m layout's without."""
    edges = row.get("display_edges")
    return EdgeLetters(**edges) if edges else KAGGLE_EDGES


def slice_picture(slices: np.ndarray, mask: np.ndarray, index: int, row: Mapping[str, Any]) -> np.ndarray:
    """FLAIR with the mask, and on the key slice the two diameters; a mm scale bar whenever the spacing is known;
    the orientation letters at the edges, as on every slice the page shows."""
    base = overlay_mask(channel_rgb(slices[index], 1), mask[index], alpha=0.35)
    lines: list[Line] = []
    drawn = row.get("diameter_lines")
    mm = row.get("spacing_mm") is not None
    if drawn and int(drawn["slice"]) - 1 == index:
        for name, colour in (("longest", LONGEST_COLOUR), ("perpendicular", PERPENDICULAR_COLOUR)):
            length = row.get(f"{name}_mm" if mm else f"{name}_px")
            label = "" if length is None else f"{float(length):.1f} {'mm' if mm else 'px'}"
            lines.append(Line(tuple(drawn[name]["p0"]), tuple(drawn[name]["p1"]), label, colour))  # type: ignore[arg-type]
    spacing = row.get("spacing_mm")
    return with_letters(draw_diameters(base, lines, float(spacing[2]) if spacing else None, scale=3),
                        display_letters(row))


class _Page:
    """fpdf2 with the report's font and a few layout helpers."""

    def __init__(self, generated: datetime) -> None:
        from fpdf import FPDF

        self.pdf = FPDF(orientation="P", unit="mm", format="A4")
        self.pdf.set_auto_page_break(False)
        self.pdf.set_margins(MARGIN, MARGIN, MARGIN)
        self.pdf.set_creation_date(generated)
        fonts = _font_dir()
        self.unicode = fonts is not None
        if fonts is not None:
            self.pdf.add_font("DejaVu", "", str(fonts / "DejaVuSans.ttf"))
            self.pdf.add_font("DejaVu", "B", str(fonts / "DejaVuSans-Bold.ttf"))
        self.family = "DejaVu" if self.unicode else "Helvetica"
        self.pdf.add_page()

    def text(self, s: str) -> str:
        if self.unicode:
            return s
        for a, b in _LATIN1.items():
            s = s.replace(a, b)
        return s.encode("latin-1", "replace").decode("latin-1")

    def font(self, size: float, bold: bool = False, colour: tuple[int, int, int] = (0, 0, 0)) -> None:
        self.pdf.set_font(self.family, "B" if bold else "", size)
        self.pdf.set_text_color(*colour)

    def para(self, s: str, size: float = 8.5, bold: bool = False, colour: tuple[int, int, int] = (0, 0, 0),
             h: float = 4.2) -> None:
        self.font(size, bold, colour)
        self.pdf.multi_cell(0, h, self.text(s), align="L", new_x="LMARGIN", new_y="NEXT")


def _identifier_lines(row: Mapping[str, Any]) -> list[str]:
    ids = row.get("identifiers") or {"name": row.get("input")}
    files = list(ids.get("files") or [])
    shown = ", ".join(files[:4]) + (f" and {len(files) - 4} more" if len(files) > 4 else "")
    out = [f"Input: {ids.get('name')} ({ids.get('kind') or row.get('kind')})" + (f"; files: {shown}" if shown else "")]
    dicom = [f"{k}: {v}" for k, v in ids.items() if k not in ("name", "kind", "files")]
    if dicom:
        out.append("As recorded in the DICOM input: " + "; ".join(dicom))
    return out


def _model_line(document: Mapping[str, Any], row: Mapping[str, Any]) -> str:
    model = document.get("model") or {}
    cv = model.get("cross_validated_dice")
    dice = "not recorded by the card"
    if cv:
        ci = cv.get("ci95")
        dice = f"{cv['value']:.3f}" + (f" (95% CI {ci[0]:.3f}–{ci[1]:.3f})" if ci else "") + \
               (f" over {cv['n']} patients" if cv.get("n") else "")
    return (f"Model: weights {row.get('model_version') or model.get('version')}; cross-validated per-volume Dice "
            f"{dice}. lggdemo {document.get('lggdemo_version', __version__)}.")


def study_pdf(document: Mapping[str, Any], slices: np.ndarray, mask: np.ndarray, *, index: int = 0,
              generated: datetime | None = None) -> bytes:
    """The one-page PDF of ``document["patients"][index]``.

    Args:
        document: ``inference.reports.patient_report_document`` (the JSON report, as a dict).
        slices: (S, 256, 256, 3) uint8 display slices of that study (``Volume.slices``).
        mask: (S, 256, 256) 0/1, the mask the row describes (its ``mask`` field says which).
        generated: the date printed (default: now, UTC).
    """
    patients = document.get("patients") or []
    if not 0 <= index < len(patients):
        raise PdfReportError(f"the report has no patient {index} (it lists {len(patients)})")
    row = patients[index]
    if row.get("error"):
        raise PdfReportError(f"{row.get('input')}: no report for an input that failed ({row['error']})")
    slices, mask = np.asarray(slices), np.asarray(mask)
    if slices.ndim != 4 or mask.shape != slices.shape[:3] or (row.get("slices") not in (None, len(slices))):
        raise PdfReportError(f"{row.get('input')}: pictures {slices.shape} / mask {mask.shape} do not match the "
                             f"report's {row.get('slices')} slices")
    digits = document.get("digits") or {}
    when = generated or datetime.now(timezone.utc)
    page = _Page(when)
    pdf = page.pdf
    page.para("lggdemo study report: FLAIR abnormality measurements", 14, bold=True, h=7)
    page.para(f"Report date {when:%Y-%m-%d %H:%M} UTC", 8.5, colour=(80, 80, 80))
    page.para(document.get("disclaimer") or NOT_FOR_DIAGNOSIS, 9, bold=True, colour=(180, 20, 20), h=4.6)
    pdf.ln(1.5)
    page.para(mask_statement(document, row), 9, bold=True, h=4.6)
    for line in (*_identifier_lines(row), _model_line(document, row)):
        page.para(line, 8.5)
    if row.get("age") is not None or row.get("sex") is not None:
        page.para(f"Clinical values used by the grade: age {row.get('age') if row.get('age') is not None else 'not given'}, "
                  f"sex {row.get('sex') or 'not given'}.", 8.5)
    pdf.ln(2)

    whose = "the corrected mask" if row.get("mask") == "corrected" else "the model's mask"
    page.para(f"Measurements of {whose}", 11, bold=True, h=6)
    found = bool(row.get("tumour_voxels"))
    if not found:
        page.para(NO_TUMOUR, 9, bold=True)
    table = measurement_lines(row, digits) + agreement_lines(row, digits)
    page.font(8.5)
    with pdf.table(col_widths=(52, 46, 88), text_align=("LEFT", "LEFT", "LEFT"), line_height=4.6,
                   first_row_as_headings=True) as t:
        for cells in (("Measurement", "Value", "Range / how"), *table):
            r = t.row()
            for c in cells:
                r.cell(page.text(c))
    notes = [str(n) for n in row.get("measurement_notes") or [] if n != "no tumour found"]
    if notes:
        page.para("Note: " + "; ".join(notes) + ".", 7.5, colour=(80, 80, 80))
    pdf.ln(2)

    picks = key_slices(row, len(slices))
    key = int(row["key_slice"]) - 1 if found and row.get("key_slice") else None
    width = (PAGE_W - 2 * MARGIN - 2 * 4) / 3
    y = pdf.get_y()
    for i, s in enumerate(picks):
        x = MARGIN + i * (width + 4)
        pdf.image(Image.fromarray(slice_picture(slices, mask, s, row)), x=x, y=y, w=width)
        pdf.set_xy(x, y + width + 0.5)
        page.font(7.5, colour=(60, 60, 60))
        what = ("key slice: largest cross-section, the two diameters" if s == key else "tumour extent" if found
                else "no tumour")
        pdf.multi_cell(width, 3.4, page.text(f"Slice {s + 1} of {len(slices)} ({what})"), align="L", new_x="LEFT",
                       new_y="NEXT")
    pdf.set_xy(MARGIN, y + width + 8.5)
    letters = display_letters(row)
    page.para("FLAIR, red: the mask; yellow: the longest diameter, cyan: the perpendicular one; bar: millimetres "
              f"along the image's columns. Edge letters name the patient's directions: {WORDS[letters.top]} at the "
              f"top, the patient's {WORDS[letters.left]} on the image's left.", 7.5, colour=(80, 80, 80))
    pdf.ln(2)
    page.para("Grade", 11, bold=True, h=6)
    page.para(grade_statement(row), 9)
    page.para(str(document.get("grade_caveat") or ""), 7, colour=(100, 100, 100), h=3.4)
    pdf.set_y(297 - MARGIN - 4)
    page.para(f"{NOT_FOR_DIAGNOSIS} Generated by lggdemo {__version__}.", 7, colour=(120, 120, 120), h=3.4)
    if pdf.page_no() != 1:  # pragma: no cover - the layout above is sized for one page
        raise PdfReportError("the report ran over one page")
    return bytes(pdf.output())

