"""What a person drew on the editor's canvas, as edits of the mask: the drawing component's JSON read here.

The editor uses ``streamlit-drawable-canvas`` (Fabric.js). It reports the canvas as Fabric's JSON: a
free-hand drag is a ``Path`` whose ``path`` holds the pointer's samples in canvas pixels (``M``, ``Q``
and ``L`` commands), a click in point mode a ``Circle`` placed around the pointer. Reading it needs no
Streamlit, so the mapping from canvas pixels to mask pixels is tested on plain dictionaries.

The canvas shows the slice ``scale`` times its mask size; a drawn width ``w`` canvas pixels is a brush
of radius ``w / (2 * scale)`` mask pixels.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from lggdemo.corrections.edit import Click, Edit, Point, Stroke

#: The editor's tools, in the order its radio shows them (brush first: chosen when the editor opens).
TOOLS = ("Brush", "Eraser", "Delete a piece")
#: Where Fabric's origin names put the anchor, as a fraction of the object's width or height.
_ORIGIN = {"left": 0.0, "top": 0.0, "center": 0.5, "right": 1.0, "bottom": 1.0}


def drawing_mode(tool: str) -> str:
    """The canvas mode of an editor tool: free-hand drawing for brush and eraser, single points to delete."""
    if tool not in TOOLS:
        raise ValueError(f"unknown tool {tool!r}: one of {', '.join(TOOLS)}")
    return "point" if tool == TOOLS[2] else "freedraw"


def _numbers(values: Sequence[Any]) -> list[float]:
    return [float(v) for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]


def path_points(path: Sequence[Any]) -> list[Point]:
    """The canvas points of a Fabric path: every (x, y) pair of every command, in order.

    Fabric's pencil brush writes quadratic curves whose control points are the pointer's own samples and
    whose end points are midpoints between them, so keeping both traces the drag closely.
    """
    points: list[Point] = []
    for command in path:
        if not isinstance(command, (list, tuple)) or not command:
            continue
        nums = _numbers(command[1:])
        points += [(nums[i], nums[i + 1]) for i in range(0, len(nums) - 1, 2)]
    return points


def _circle_centre(obj: Mapping[str, Any]) -> Point | None:
    try:
        radius = float(obj.get("radius", 0)) * float(obj.get("scaleX", 1))
        stroke = float(obj.get("strokeWidth", 0) or 0)
        left, top = float(obj["left"]), float(obj["top"])
    except (KeyError, TypeError, ValueError):
        return None
    size = 2 * radius + stroke
    x = left + (0.5 - _ORIGIN.get(str(obj.get("originX", "left")), 0.0)) * size
    y = top + (0.5 - _ORIGIN.get(str(obj.get("originY", "top")), 0.0)) * size
    return x, y


def edits_from_drawing(drawing: Mapping[str, Any] | None, *, tool: str, scale: float, skip: int = 0) -> list[Edit]:
    """The edits in a canvas drawing, from its ``skip``-th object on, in mask pixels.

    ``tool`` says what a path means (brush or eraser); circles are always clicks that delete a piece.
    Objects the editor does not make (rectangles, text) are ignored rather than guessed at.
    """
    if scale <= 0:
        raise ValueError(f"scale must be positive, got {scale}")
    objects = list((drawing or {}).get("objects") or [])[skip:]
    edits: list[Edit] = []
    for obj in objects:
        if not isinstance(obj, Mapping):
            continue
        kind = str(obj.get("type", "")).lower()
        if kind == "path":
            points = path_points(obj.get("path") or [])
            width = float(obj.get("strokeWidth") or 0)
            if points and width > 0:
                edits.append(Stroke(tuple((x / scale, y / scale) for x, y in points), width / (2 * scale),
                                    erase=tool == TOOLS[1]))
        elif kind == "circle":
            centre = _circle_centre(obj)
            if centre is not None:
                edits.append(Click((centre[0] / scale, centre[1] / scale)))
    return edits
