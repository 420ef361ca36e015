"""Correcting the model's mask by hand, and keeping the corrections as training examples.

One job per module, no Streamlit:

- :mod:`lggdemo.corrections.edit`: brush and eraser strokes, deleting a piece, undo and reset (pure arrays);
- :mod:`lggdemo.corrections.drawing`: the drawing component's JSON as those edits;
- :mod:`lggdemo.corrections.store`: saved corrections, a kaggle_3m folder under ``LGG_RUNS_DIR/corrections``.

The trainer reads them with ``--corrections`` (:mod:`lggdemo.train.finetune_data`); the editor is
:mod:`lggdemo.ui.predict.correct`, the Train page's list :mod:`lggdemo.ui.train.corrections_list`.
"""

from lggdemo.corrections.drawing import TOOLS, drawing_mode, edits_from_drawing, path_points
from lggdemo.corrections.edit import (
    MAX_UNDO,
    Click,
    Edit,
    EditError,
    EditHistory,
    Stroke,
    apply_edit,
    as_mask,
    component_at,
    delete_component,
    paint,
    stroke_footprint,
)
from lggdemo.corrections.store import (
    Correction,
    CorrectionError,
    Provenance,
    corrections_dir,
    delete_correction,
    find_correction,
    folder_name,
    list_corrections,
    load_correction,
    save_correction,
    usable_corrections,
)

__all__ = [
    "MAX_UNDO", "TOOLS", "Click", "Correction", "CorrectionError", "Edit", "EditError", "EditHistory", "Provenance",
    "Stroke", "apply_edit", "as_mask", "component_at", "corrections_dir", "delete_component", "delete_correction",
    "drawing_mode", "edits_from_drawing", "find_correction", "folder_name", "list_corrections", "load_correction",
    "paint", "path_points", "save_correction", "stroke_footprint", "usable_corrections",
]
