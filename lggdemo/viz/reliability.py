"""The reliability diagram of a grade model's out-of-fold P(G3) (plotly): predicted against observed G3 fraction.

Points come from the model card (``grade.out_of_fold.*.reliability_bins``, sklearn's ``calibration_curve`` bins
with their patient counts), one line per predictor. A well-calibrated predictor sits on the diagonal; a
predictor that says the base rate for everyone is a single point at it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import plotly.graph_objects as go

#: Line colours by predictor name (others get plotly's defaults).
COLOURS = {"model": "#E45756", "age alone": "#4C78A8", "model, calibrated (cross-fitted)": "#F58518"}


def reliability_figure(series: Mapping[str, Sequence[Mapping[str, float]]]) -> go.Figure:
    """``series``: predictor name -> bins (``predicted``, ``observed``, ``n``). Marker size grows with ``n``."""
    fig = go.Figure(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="perfectly calibrated",
                               line={"color": "#999999", "dash": "dot"}))
    for name, bins in series.items():
        if not bins:
            continue
        fig.add_trace(go.Scatter(
            x=[b["predicted"] for b in bins], y=[b["observed"] for b in bins], mode="lines+markers", name=name,
            marker={"size": [6 + 2 * float(b.get("n", 1)) ** 0.5 for b in bins], "color": COLOURS.get(name)},
            line={"color": COLOURS.get(name)}, text=[f"n = {int(b.get('n', 0))}" for b in bins],
            hovertemplate="predicted %{x:.2f}, observed %{y:.2f} (%{text})<extra>" + name + "</extra>"))
    fig.update_layout(height=320, margin={"l": 40, "r": 10, "t": 40, "b": 40}, title="Reliability of P(G3), out of fold",
                      xaxis={"title": "predicted P(G3) (bin mean)", "range": [0, 1]},
                      yaxis={"title": "observed fraction grade III", "range": [0, 1]},
                      legend={"orientation": "h", "y": -0.3})
    return fig
