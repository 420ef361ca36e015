"""Config dataclasses and builders for the two models; training, inference and Grad-CAM share them.

Nothing here may download: smp encoders are built with ``encoder_weights=None`` and torchvision
models with ``weights=None``. The only other starting point is the project's own trained encoder.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import segmentation_models_pytorch as smp
import torch
from torch import nn
from torchvision.models import resnet50

from lggdemo.data.kaggle import LEAKY_COLUMNS
from lggdemo.models.postprocess import remove_small_components_2d
from lggdemo.models.preprocess import CLINICAL_FEATURES, AgeScale


@dataclass(frozen=True)
class SegConfig:
    encoder: str = "resnet34"
    image_size: int = 256  # the U-Net's input side; predictions are resized back to the slice size
    in_channels: int = 3
    threshold: float = 0.5
    min_component_px: int = 0  # connected components smaller than this (at 256²) are removed
    flip_tta: bool = False  # average the logits of the slice and its mirror image


@dataclass(frozen=True)
class GradeConfig:
    image_size: int = 128  # side of the tumour crop fed to the ResNet50
    dropout: float = 0.3
    clinical_features: tuple[str, ...] = CLINICAL_FEATURES
    age_scale: AgeScale = field(default_factory=AgeScale)
    use_image: bool = True
    use_clinical: bool = True


def config_to_json(config: SegConfig | GradeConfig) -> str:
    """A network config as the JSON stored in its safetensors header (keys sorted)."""
    return json.dumps(dataclasses.asdict(config), sort_keys=True)


def seg_config_from_dict(d: dict[str, Any]) -> SegConfig:
    """A :class:`SegConfig` from stored JSON data; keys this code does not know (newer cards) are ignored."""
    known = {f.name for f in dataclasses.fields(SegConfig)}
    return SegConfig(**{k: v for k, v in d.items() if k in known})


def grade_config_from_dict(d: dict[str, Any]) -> GradeConfig:
    """A :class:`GradeConfig` from stored JSON data (as :func:`seg_config_from_dict`)."""
    known = {f.name for f in dataclasses.fields(GradeConfig)}
    d = {k: v for k, v in d.items() if k in known}
    if isinstance(d.get("age_scale"), dict):
        d["age_scale"] = AgeScale(**d["age_scale"])
    if "clinical_features" in d:
        d["clinical_features"] = tuple(d["clinical_features"])
    return GradeConfig(**d)


def build_segmentation(config: SegConfig) -> nn.Module:
    """A U-Net emitting one tumour logit per pixel: (N, 3, s, s) normalised slices -> (N, 1, s, s) logits, ``s`` a
    multiple of 32 (``config.image_size``). No pretrained weights: nothing is downloaded."""
    return smp.Unet(config.encoder, encoder_weights=None, in_channels=config.in_channels, classes=1)


class GradeNet(nn.Module):
    """ResNet50 image features fused with clinical features -> one logit for G3 (vs G2).

    ``use_image`` / ``use_clinical`` switch a branch off so the same class measures the ablations
    (clinical-only, image-only) that tell whether the image branch learnt anything.
    """

    def __init__(self, config: GradeConfig) -> None:
        super().__init__()
        self.config = config
        self.backbone = resnet50(weights=None)
        self.backbone.fc = nn.Identity()
        n_clin = len(config.clinical_features)
        # encode_clinical always yields every CLINICAL_FEATURES column; the config picks its subset.
        index = torch.tensor([CLINICAL_FEATURES.index(f) for f in config.clinical_features], dtype=torch.long)
        self.register_buffer("feature_index", index, persistent=False)
        self.clinical = nn.Sequential(nn.Linear(n_clin, 16), nn.ReLU())
        width = (2048 if config.use_image else 0) + (16 if config.use_clinical else 0)
        self.head = nn.Sequential(nn.Dropout(config.dropout), nn.Linear(width, 1))

    def forward(self, image: torch.Tensor, clinical: torch.Tensor) -> torch.Tensor:
        """(N, 3, s, s) normalised tumour crops and (N, F) encoded clinical rows (every CLINICAL_FEATURES column;
        the config picks its subset) -> (N, 1) G3 logits."""
        parts = []
        if self.config.use_image:
            parts.append(self.backbone(image))
        if self.config.use_clinical:
            parts.append(self.clinical(clinical[:, self.feature_index]))
        return self.head(torch.cat(parts, dim=1))

    @property
    def cam_layer(self) -> nn.Module:
        """The last bottleneck block: Grad-CAM's target layer."""
        return self.backbone.layer4[-1]


def check_clinical_inputs(features: tuple[str, ...]) -> None:
    """Refuse inputs that leak the label (grade, histological type, death) or that the encoder cannot make."""

    leaky = [f for f in features if f in LEAKY_COLUMNS or f == "grade" or "grade" in f]
    if leaky:
        raise ValueError(f"Clinical inputs {leaky} leak the grade label and may never be model inputs.")
    unknown = [f for f in features if f not in CLINICAL_FEATURES]
    if unknown:
        raise ValueError(f"Unknown clinical inputs {unknown}; available: {list(CLINICAL_FEATURES)}.")


def build_grade(config: GradeConfig) -> GradeNet:
    """A :class:`GradeNet` with fresh weights, after refusing clinical inputs that leak the label."""
    check_clinical_inputs(tuple(config.clinical_features))
    return GradeNet(config)


def init_grade_from_segmentation(grade: GradeNet, seg: nn.Module) -> int:
    """Copy every matching encoder tensor of a trained U-Net into the grade ResNet50.

    smp's ResNet encoders are torchvision ResNets, so a ``resnet50`` U-Net encoder transfers whole;
    returns the number of tensors copied: all of the backbone's, or 0 when the encoder is another
    architecture (a partial copy of a different network would be noise, not knowledge).
    """
    src = seg.encoder.state_dict()  # type: ignore[union-attr]
    dst = grade.backbone.state_dict()
    if any(k not in src or src[k].shape != v.shape for k, v in dst.items()):
        return 0
    grade.backbone.load_state_dict({k: src[k] for k in dst})
    return len(dst)


def seg_logits(model: nn.Module, config: SegConfig, x: torch.Tensor) -> torch.Tensor:
    """(N, 3, s, s) prepared slices -> (N, 1, s, s) tumour logits, averaged with the horizontally flipped pass when
    ``config.flip_tta``.

    Every caller (validation in the trainer, the evaluator, the app, the lesson) goes through here, so
    a model is always scored the way it is used. The slices and their mirror images go through the network
    as one batch, which saves a pass's fixed cost (one slice on ONNX Runtime: 36 -> 32 ms, the same logits).
    """
    if not config.flip_tta:
        return model(x)
    both = model(torch.cat([x, torch.flip(x, dims=[3])]))
    return 0.5 * (both[: len(x)] + torch.flip(both[len(x) :], dims=[3]))


def masks_from_logits(logits: torch.Tensor, config: SegConfig, out_size: int) -> np.ndarray:
    """(N, 1, s, s) logits -> (N, out_size, out_size) uint8 0/1 masks, as evaluation and the app see them.

    Components smaller than ``config.min_component_px`` are dropped by the 2D rule of
    :mod:`lggdemo.models.postprocess` (the one home for post-processing).
    """
    if logits.shape[-1] != out_size:
        logits = torch.nn.functional.interpolate(logits.float(), size=(out_size, out_size), mode="bilinear",
                                                 align_corners=False)
    prob_threshold = float(np.log(config.threshold / (1 - config.threshold)))
    masks = (logits[:, 0] > prob_threshold).cpu().numpy().astype(np.uint8)
    return remove_small_components_2d(masks, config.min_component_px)


def patient_logit(slice_logits: np.ndarray, tumour_areas: np.ndarray) -> float:
    """One grade logit for a patient: the tumour-area-weighted mean over slices that show tumour.

    ``slice_logits``: (S,) G3 logits of a patient's slices; ``tumour_areas``: (S,) predicted tumour pixels of
    the same slices (any unit: only their ratios count).

    Large tumour cross-sections carry the most texture; slices without tumour carry none and are
    ignored unless no slice shows tumour at all (then the plain mean is the best we have).
    """
    logits = np.asarray(slice_logits, dtype=np.float64).ravel()
    areas = np.asarray(tumour_areas, dtype=np.float64).ravel()
    if len(logits) == 0:
        raise ValueError("no slices")
    if areas.sum() <= 0:
        return float(logits.mean())
    return float((logits * areas).sum() / areas.sum())
