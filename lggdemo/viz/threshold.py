"""The threshold lesson's curve (plotly): Dice and mask area against the threshold, the chosen one marked.

Plain arrays in (from :func:`lggdemo.teach.threshold_curve`), a figure out: the Dice on the left axis (0-1),
the final mask's area in pixels on the right, a solid line at the slider's threshold and a dotted one at the
model's own. Without a reference mask only the area is drawn.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go

TITLE = "Dice and mask area against the threshold (this slice)"
DICE_COLOUR, AREA_COLOUR, CHOSEN_COLOUR, SHIPPED_COLOUR = "#E45756", "#4C78A8", "#262730", "#9D9D9D"


def threshold_figure(thresholds: Sequence[float] | np.ndarray, area_px: Sequence[int] | np.ndarray,
                     dice: Sequence[float] | np.ndarray | None, chosen: float, shipped: float) -> go.Figure:
    """The curve of one slice; ``chosen`` is the slider's threshold, ``shipped`` the model's own."""
    ts = [float(t) for t in thresholds]
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=ts, y=[int(a) for a in area_px], name="mask area (px)", mode="lines", yaxis="y2",
                             line={"color": AREA_COLOUR, "width": 2},
                             hovertemplate="threshold %{x:.3f}: %{y} px<extra></extra>"))
    if dice is not None:
        fig.add_trace(go.Scatter(x=ts, y=[float(d) for d in dice], name="Dice", mode="lines",
                                 line={"color": DICE_COLOUR, "width": 3},
                                 hovertemplate="threshold %{x:.3f}: Dice %{y:.3f}<extra></extra>"))
    fig.add_vline(x=float(chosen), line={"color": CHOSEN_COLOUR, "width": 2},
                  annotation={"text": f"chosen {chosen:.2f}", "yanchor": "bottom"}, annotation_position="top")
    if abs(float(shipped) - float(chosen)) > 1e-9:
        fig.add_vline(x=float(shipped), line={"color": SHIPPED_COLOUR, "dash": "dot"},
                      annotation={"text": f"model's {shipped:.2f}", "yanchor": "top"}, annotation_position="bottom")
    fig.update_layout(
        title={"text": TITLE, "font": {"size": 14}}, height=320, margin={"l": 50, "r": 50, "t": 60, "b": 40},
        template="plotly_white", legend={"orientation": "h", "y": -0.2},
        xaxis={"title": "threshold", "range": [0, 1]},
        yaxis={"title": "Dice", "range": [0, 1.02], "visible": dice is not None},
        yaxis2={"title": "area (px)", "overlaying": "y", "side": "right", "rangemode": "tozero", "showgrid": False},
    )
    return fig
