"""The teaching layer's logic: how a mask comes about, where it is wrong and where the model is unsure.

One job per module, all pure functions of arrays (plus one forward pass where a model is needed):

- :mod:`lggdemo.teach.errors`: TP/FP/FN error map and the Dice/IoU worked out with real counts;
- :mod:`lggdemo.teach.steps`: input -> normalised input -> probability -> threshold -> post-processing -> mask;
- :mod:`lggdemo.teach.uncertainty`: spread of test-time-augmented predictions;
- :mod:`lggdemo.teach.curves`: Dice and area against the threshold, and the slice where the threshold matters most.

The page that draws them is :mod:`lggdemo.ui.teach`.
"""

from lggdemo.teach.curves import ThresholdCurve, most_sensitive_slice, threshold_change_px, threshold_curve
from lggdemo.teach.errors import (
    ERROR_COLOURS,
    ERROR_MARKDOWN_COLOURS,
    ERROR_NAMES,
    FN,
    FP,
    TN,
    TP,
    DiceBreakdown,
    ErrorCounts,
    ErrorMap,
    TeachInputError,
    dice_breakdown,
    draw_errors,
    error_map,
)
from lggdemo.teach.steps import (
    MaskSteps,
    ModelView,
    input_channel_images,
    masks_at,
    model_view,
    view_from_probability,
)
from lggdemo.teach.uncertainty import Uncertainty, tta_uncertainty

__all__ = [
    "ERROR_COLOURS", "ERROR_MARKDOWN_COLOURS", "ERROR_NAMES", "FN", "FP", "TN", "TP", "DiceBreakdown",
    "ErrorCounts", "ErrorMap", "MaskSteps", "ModelView", "TeachInputError", "ThresholdCurve", "Uncertainty",
    "dice_breakdown", "draw_errors", "error_map", "input_channel_images", "masks_at", "model_view",
    "most_sensitive_slice", "threshold_change_px", "threshold_curve", "tta_uncertainty", "view_from_probability",
]
