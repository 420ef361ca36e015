"""A study's one-page PDF report, drawn from the one report schema (``lggdemo.inference.reports``).

``study_pdf(document, slices, mask)`` takes the JSON report's document (``patient_report_document``) and prints
its numbers as they are there, with the digits the document names (``digits``): nothing is measured or recomputed here,
so the PDF and the JSON cannot disagree. The pictures come from ``lggdemo.viz`` (the page's overlay and its
diameter drawing).
"""

from lggdemo.report.pdf import PdfReportError, key_slices, study_pdf

__all__ = ["PdfReportError", "key_slices", "study_pdf"]
