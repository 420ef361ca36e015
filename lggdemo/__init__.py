"""lggdemo: lower-grade glioma MRI exploration and deep-learning demo (teaching and research only).

The torchvision guard is imported first: with a CPU-only torch, smp, timm and grad-cam cannot be
imported until it has run (see ``_torchvision_guard``).
"""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # any accidental model-hub download fails at once

from lggdemo import _torchvision_guard  # noqa: E402,F401  (must precede any torchvision import)

__version__ = "0.1.0"
NOT_FOR_DIAGNOSIS = (
    "Teaching and research demo only — not a medical device. "
    "Its outputs must not be used for diagnosis or treatment decisions."
)
