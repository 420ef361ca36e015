"""What the page looks like beyond Streamlit's defaults: print, a canvas that fits its column, inline pictures.

Four small fixes, each for something the page got wrong in use:

- **Print** (:data:`PRINT_CSS`, injected on every page by :func:`page_styles`): printing gave five pages of
  sidebar, sliders and the mask editor. Printed, the page keeps its results (pictures, numbers, tables, text)
  and drops the controls.
- **A canvas that fits** (:func:`fit_canvas`): the editor's drawing component draws at a fixed size (512 px) and
  scrolled sideways in a narrower column, so on a projector (1024-1300 px wide) part of the slice could not be
  reached. The component's host is zoomed to the column's width by CSS container queries, in 2% steps; the
  drawing library maps pointer positions through the zoom (it divides by the element's on-screen size), so a
  stroke still arrives in full-resolution canvas pixels and the editor's mapping to mask pixels is unchanged.
- **Pictures that cannot go missing** (:func:`inline_image`): ``st.image`` serves a picture as a media file that
  the next rerun replaces; after fast edits a browser could ask for a file already dropped (a broken-image
  icon until the next edit). A picture drawn inline (a data URI, encoded once per content and kept in the
  session) has no file to lose.
- **Button labels that wrap** (:data:`BUTTON_CSS`, with the print stylesheet): Streamlit cuts a label that does
  not fit its button with an ellipsis; in the editor's narrow column on a 1024 px projector "Download corrected
  mask (PNG)" read "Download corrected m…", hiding what the button gives. A label now wraps onto a second line.
"""

from __future__ import annotations

import base64
import hashlib
import html

import numpy as np
import streamlit as st

from lggdemo.data.imageio import encode_png

#: Hidden when printing: the sidebar and header, every control (sliders, uploaders, buttons, toggles, the mask
#: editor, chart toolbars). The app's scrolling containers are let out so every page of content prints.
PRINT_CSS = """
@media print {
  [data-testid="stSidebar"], [data-testid="stSidebarCollapsedControl"], [data-testid="stHeader"],
  [data-testid="stToolbar"], [data-testid="stDecoration"], [data-testid="stStatusWidget"],
  [data-testid="stSlider"], [data-testid="stSliderThumbValue"], [data-testid="stFileUploader"],
  [data-testid="stButton"], [data-testid="stDownloadButton"], [data-testid="stFormSubmitButton"],
  [data-testid="stCheckbox"], [data-testid="stElementToolbar"], [data-testid="stExpander"],
  [data-testid="stTabs"] [role="tablist"], .stSlider, .stSelectSlider, .stToggle, .stFileUploader,
  .stButton, .stDownloadButton, [class*="st-key-"][class*="_correct_editor"],
  [class*="st-key-"][class*="_correct_open"], [class*="st-key-"][class*="_compare"] {
    display: none !important;
  }
  [data-testid="stApp"], [data-testid="stAppViewContainer"], [data-testid="stMain"],
  [data-testid="stMainBlockContainer"] {
    position: static !important; overflow: visible !important; height: auto !important;
    max-width: none !important; margin: 0 !important; padding-top: 0 !important;
  }
  [data-testid="stImage"], [data-testid="stMetric"], [data-testid="stPlotlyChart"], figure {
    break-inside: avoid;
  }
}
"""
#: Button labels wrap instead of being cut with an ellipsis (Streamlit's ``stMarkdownEllipsis`` inside a button).
BUTTON_CSS = """
[data-testid="stButton"] button [data-testid="stMarkdownContainer"],
[data-testid="stDownloadButton"] button [data-testid="stMarkdownContainer"],
[data-testid="stButton"] button [data-testid="stMarkdownContainer"] p,
[data-testid="stDownloadButton"] button [data-testid="stMarkdownContainer"] p {
  white-space: normal !important; overflow: visible !important; text-overflow: clip !important;
}
"""
#: Zoom steps of a fitted canvas: from 30% of its drawn size to 100%.
MIN_ZOOM, ZOOM_STEP = 0.30, 0.02


def page_styles() -> None:
    """The app-wide stylesheet (print, button labels); called once per run by the entry script."""
    st.html(f"<style>{PRINT_CSS}{BUTTON_CSS}</style>")


def fit_canvas_css(key: str, side: int) -> str:
    """CSS that zooms the component inside ``st.container(key=key)`` to the container's width.

    One container query per step: the largest zoom whose canvas still fits wins (the later, smaller rules
    override the earlier ones only when the container is narrower). At or above ``side`` px no zoom applies.
    """
    if side <= 0:
        raise ValueError(f"side must be positive, got {side}")
    name = f"fit_{key}".replace("-", "_")
    rules = [f".st-key-{key} {{ container: {name} / inline-size; }}"]
    steps = int(round((1.0 - MIN_ZOOM) / ZOOM_STEP))
    for i in range(steps + 1):  # zoom 1.0 - step, ..., MIN_ZOOM - step: widest first
        fits = 1.0 - i * ZOOM_STEP  # the container is narrower than side * fits ...
        zoom = fits - ZOOM_STEP  # ... so the canvas is drawn one step smaller
        rules.append(f"@container {name} (max-width: {side * fits - 0.1:.1f}px) "
                     f"{{ .st-key-{key} .stBidiComponent {{ zoom: {max(zoom, MIN_ZOOM - ZOOM_STEP):.2f}; }} }}")
    return "\n".join(rules)


def fit_canvas(key: str, side: int) -> None:
    """Style ``st.container(key=key)`` so the drawing component in it never overflows its column."""
    st.html(f"<style>{fit_canvas_css(key, side)}</style>")


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


#: Session key of the encoded inline pictures (content hash -> data URI); a few dozen kept.
INLINE_KEY = "inline_images"
MAX_INLINE = 24


def inline_image(picture: np.ndarray | bytes, caption: str = "", width: int | None = None) -> None:
    """Draw ``picture`` (an RGB array or PNG bytes) inline, with its caption, at most ``width`` px wide.

    The PNG is encoded once per content and kept in this session, so a redraw after an edit reuses it.
    """
    raw = picture if isinstance(picture, bytes) else np.ascontiguousarray(picture).tobytes() + repr(
        np.shape(picture)).encode()
    digest = hashlib.sha1(raw).hexdigest()
    held: dict[str, str] = st.session_state.setdefault(INLINE_KEY, {})
    uri = held.get(digest)
    if uri is None:
        uri = _data_uri(picture if isinstance(picture, bytes) else encode_png(np.asarray(picture)))
        held[digest] = uri
        while len(held) > MAX_INLINE:
            held.pop(next(iter(held)))
    limit = f"max-width:{int(width)}px;" if width else ""
    label = html.escape(caption)
    st.html(f'<figure style="margin:0;{limit}"><img src="{uri}" alt="{label}" style="width:100%;height:auto;'
            'image-rendering:auto;display:block"/><figcaption style="font-size:0.875rem;opacity:0.7;'
            f'margin-top:0.25rem">{label}</figcaption></figure>')
