"""Inference for the Predict page, the benchmark and any script: slices + clinical fields -> masks and P(G3).

The steps are exactly the trainer's and the evaluator's (``preprocess`` for the pixels, ``models`` for
the mask threshold and the patient-level aggregation), so a probability shown here is the number the
model card's AUC was measured on. Nothing here imports Streamlit.

Example::

    predictor = Predictor.from_directory(weights.active_dir(), device="auto")
    result = predictor.predict([slice_rgb], Clinical(age=45, sex="female"))
    result.grade.shown_p_g3, result.slices[0].area_px
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lggdemo.data.imageio import SLICE_SIZE, UploadBatch, encode_png, resize_image, resize_mask
from lggdemo.data.kaggle import Clinical
from lggdemo.device import choose_device
from lggdemo.inference.grade import GradeVerdict, PatientGrade, grade_verdict, patient_grade, sigmoid
from lggdemo.metrics.segmentation import dice
from lggdemo.models.engine import (  # noqa: F401  (MODEL_LOCK: re-exported)
    MODEL_LOCK,
    Engine,
    EngineChoice,
    TorchEngine,
    engine_from_modules,
    load_engine,
)
from lggdemo.models.engine.onnx_engine import return_freed_memory
from lggdemo.models.forward import grade_slice_logits, segment_slices
from lggdemo.models.networks import GradeConfig, GradeNet, SegConfig, grade_config_from_dict, seg_config_from_dict
from lggdemo.models.preprocess import (
    ClinicalInputError,
    head_pixels,
    validate_clinical,
)
from lggdemo.models.weights import (
    GRADE_FILE,
    SEG_FILE,
    WeightsError,
    load_grade,
    load_segmentation,
    read_card,
    read_config,
    sha256_file,
)

#: Images per forward pass (the U-Net's: 8 slices and their mirror images; the grade model's: 16 crops), which
#: keeps peak memory near 1 GB on a CPU.
DEFAULT_BATCH = 16


class InputError(ValueError):
    """Images the models cannot take (wrong type or shape); the message is for the caller."""


def head_mask(image: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 slice -> (H, W) bool head pixels: the same background rule as the normalisation in
    ``models.preprocess``."""
    return head_pixels(np.asarray(image))


@dataclass(frozen=True)
class SlicePrediction:
    name: str
    mask: np.ndarray  # (256, 256) uint8 0/1
    probability: np.ndarray  # (256, 256) float32, sigmoid of the U-Net logits
    area_px: int  # predicted tumour pixels at 256×256
    brain_px: int  # head pixels (any channel brighter than the background level)
    area_in_brain_px: int  # predicted tumour pixels inside the head: a mask spilling outside cannot exceed 100%
    original_size: tuple[int, int]  # (H, W) of the uploaded image
    grade_logit: float | None = None
    grade_prob: float | None = None  # this slice's P(G3)
    dice: float | None = None  # against the uploaded ground truth, when there was one
    truth_area_px: int | None = None

    @property
    def area_pct_brain(self) -> float | None:
        return 100.0 * self.area_in_brain_px / self.brain_px if self.brain_px else None

    def mask_png(self) -> bytes:
        """The mask as a 0/255 PNG at the uploaded image's own size."""
        return encode_png(resize_mask(self.mask, self.original_size))


@dataclass(frozen=True)
class PredictionResult:
    """One patient: every slice's mask and one patient-level grade over all of them."""

    slices: tuple[SlicePrediction, ...]
    grade: PatientGrade
    clinical: Clinical | None
    device: str
    model_version: str


def check_images(images: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Each upload as an (H, W, 3) uint8 array, any size; InputError naming the first slice that is not one."""
    if len(images) == 0:
        raise InputError("No slices were given.")
    out = []
    for i, im in enumerate(images):
        arr = np.asarray(im)
        if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3 or min(arr.shape[:2]) < 1:
            raise InputError(f"Slice {i}: expected an (H, W, 3) uint8 image, got {arr.dtype} {arr.shape} "
                             "(decode files with lggdemo.data.imageio.decode_image).")
        out.append(arr)
    return out


class Predictor:
    """Both models' configs and the engine that runs them; ``predict`` is the whole pipeline.

    The engine (:mod:`lggdemo.models.engine`) runs every forward pass. ``seg_model`` and ``grade_model`` are the PyTorch
    modules Grad-CAM needs: on the ``torch`` engine they are the engine's own, on ``onnx`` they are loaded from
    the weights folder the first time a heatmap asks for them (a visitor who never opens one never pays for them).
    """

    def __init__(self, seg_model: torch.nn.Module | None, seg_config: SegConfig, grade_model: GradeNet | None,
                 grade_config: GradeConfig, device: torch.device, *, card: dict[str, Any] | None = None,
                 version: str = "", batch_size: int = DEFAULT_BATCH, engine: Engine | str | EngineChoice | None = None,
                 weights_dir: Path | None = None) -> None:
        """``engine``: a ready engine, or a name (None: ``$LGG_ENGINE``/auto) to build one from the modules given.
        ``weights_dir``: where modules left ``None`` are loaded from when Grad-CAM first needs them."""
        self._seg_model = seg_model.to(device).eval() if seg_model is not None else None
        self.seg_config = seg_config
        self._grade_model = grade_model.to(device).eval() if grade_model is not None else None
        self.grade_config = grade_config
        self.device = device
        self.card = card or {}
        self.version = version or str(self.card.get("version", "unversioned"))
        self.batch_size = batch_size
        self.weights_dir = weights_dir
        self._load_lock = threading.Lock()
        if engine is None or isinstance(engine, (str, EngineChoice)):
            engine = engine_from_modules(device, engine, seg=self._seg_model, seg_size=seg_config.image_size,
                                         grade=self._grade_model, grade_size=grade_config.image_size)
        self.engine: Engine = engine
        if isinstance(engine, TorchEngine):  # Grad-CAM shares the engine's modules (one copy, one lock)
            if self._seg_model is None:
                self._seg_model = engine.seg
            if self._grade_model is None:
                self._grade_model = engine.grade_net  # type: ignore[assignment]
        # What the engine was made of: a module loaded later for Grad-CAM must come from the same bytes.
        self._weights_sha = {name: sha256_file(weights_dir / name) for name, held in
                             ((SEG_FILE, self._seg_model), (GRADE_FILE, self._grade_model))
                             if weights_dir is not None and held is None}

    @classmethod
    def from_directory(cls, directory: Path, device: str | torch.device = "auto", *,
                       batch_size: int = DEFAULT_BATCH, engine: str | EngineChoice | None = None) -> Predictor:
        """Load a weights folder; raises WeightsError (missing, corrupt), DeviceError (no such device) or
        EngineError (an unknown engine name). ``engine``: auto/torch/onnx, None for ``$LGG_ENGINE`` (else auto)."""
        dev = device if isinstance(device, torch.device) else choose_device(device)
        directory = Path(directory)
        seg_cfg = seg_config_from_dict(read_config(directory / SEG_FILE))
        grade_cfg = grade_config_from_dict(read_config(directory / GRADE_FILE))
        runner = load_engine(directory, dev, engine)
        try:
            card = read_card(directory)
        except WeightsError:
            card = {}
        return cls(None, seg_cfg, None, grade_cfg, dev, card=card, batch_size=batch_size, engine=runner,
                   weights_dir=directory)

    def _module(self, attr: str, file: str) -> Any:
        """A PyTorch module for Grad-CAM, loaded once on first use -- from the very file the engine was made of."""
        held = getattr(self, attr)
        if held is not None:
            return held
        with self._load_lock:
            if getattr(self, attr) is None:
                if self.weights_dir is None:
                    raise WeightsError("this Predictor was built without its PyTorch modules or a weights folder")
                if sha256_file(self.weights_dir / file) != self._weights_sha.get(file):
                    raise WeightsError(f"{file} in {self.weights_dir} changed after the models were loaded; "
                                       "reload the page to use the new weights.")
                loader = load_segmentation if file == SEG_FILE else load_grade
                setattr(self, attr, loader(self.weights_dir, self.device)[0])
                return_freed_memory()  # the float16 copies the float32 module was made from
        return getattr(self, attr)

    @property
    def seg_model(self) -> torch.nn.Module:
        """The U-Net as a PyTorch module (Grad-CAM); loaded on first use when the engine is ONNX Runtime."""
        return self._module("_seg_model", SEG_FILE)

    @property
    def grade_model(self) -> GradeNet:
        """The grade network as a PyTorch module (Grad-CAM); loaded on first use when the engine is ONNX Runtime."""
        return self._module("_grade_model", GRADE_FILE)

    @property
    def device_text(self) -> str:
        """Where and on what the models run, e.g. "CPU, ONNX Runtime, 2 threads"."""
        return self.engine.description

    @property
    def engine_note(self) -> str | None:
        """Why the engine is not the one asked for (ONNX Runtime missing, a failed export), else None."""
        return self.engine.note

    @property
    def grade_verdict(self) -> GradeVerdict:
        """Whether this card's grade model may show its P(G3) (see :mod:`lggdemo.inference.grade`)."""
        return grade_verdict(self.card)

    def patient_grade(self, slice_logits: np.ndarray | None, tumour_areas: np.ndarray) -> PatientGrade:
        """The patient's grade from its graded slices, as this card allows it to be shown."""
        return patient_grade(self.card, slice_logits, tumour_areas)

    # --- the two steps -------------------------------------------------------------------------

    def segment(self, images_256: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N, 256, 256, 3) uint8 -> masks (N, 256, 256) uint8 and tumour probabilities (N, 256, 256) float32."""
        masks, probs = segment_slices(self.engine, self.seg_config, images_256, batch_size=self.batch_size,
                                      probabilities=True)
        return masks, probs  # type: ignore[return-value]

    def grade(self, images_256: np.ndarray, masks_256: np.ndarray, clinical: Clinical) -> np.ndarray:
        """Per-slice G3 logits from tumour crops of the predicted masks plus the clinical vector."""
        return grade_slice_logits(self.engine, self.grade_config, images_256, masks_256, clinical,
                                  batch_size=self.batch_size)

    # --- the whole pipeline ---------------------------------------------------------------------

    def predict(self, images: Sequence[np.ndarray], clinical: Clinical | None, *, names: Sequence[str] | None = None,
                truths: Sequence[np.ndarray | None] | None = None,
                original_sizes: Sequence[tuple[int, int]] | None = None) -> PredictionResult:
        """Masks for every slice and one patient-level P(G3).

        ``images`` are (H, W, 3) uint8 slices of one patient at any size (resized to 256 and back for the
        mask download). ``clinical=None`` skips the grade (segmentation still runs); invalid clinical
        values raise ClinicalInputError before any model runs. ``truths`` are optional 0/1 masks (any size);
        ``original_sizes`` (H, W) override the images' own sizes for the mask download (uploads already resized).
        """
        arrays = check_images(images)
        if clinical is not None:
            validate_clinical(clinical)  # validate first: a refused age must not cost a forward pass
        names = list(names) if names is not None else [f"slice_{i + 1}" for i in range(len(arrays))]
        truths = list(truths) if truths is not None else [None] * len(arrays)
        sizes = list(original_sizes) if original_sizes is not None else [a.shape[:2] for a in arrays]
        if not len(names) == len(truths) == len(sizes) == len(arrays):
            raise InputError("names, truths and original_sizes must have one entry per slice.")
        batch = np.stack([resize_image(a, SLICE_SIZE) for a in arrays])
        with self.engine.serialised():  # torch: one turn of the model lock for both models; onnx: no lock at all
            masks, probs = self.segment(batch)
            areas = masks.reshape(len(masks), -1).sum(axis=1)
            logits = self.grade(batch, masks, clinical) if clinical is not None else None
        heads = [head_mask(im) for im in batch]
        slices = []
        for i, (name, size, truth) in enumerate(zip(names, sizes, truths, strict=True)):
            t256 = resize_mask(np.asarray(truth).astype(np.uint8), SLICE_SIZE) if truth is not None else None
            slices.append(SlicePrediction(
                name=name, mask=masks[i], probability=probs[i], area_px=int(areas[i]), brain_px=int(heads[i].sum()),
                area_in_brain_px=int((masks[i].astype(bool) & heads[i]).sum()),
                original_size=(int(size[0]), int(size[1])),
                grade_logit=float(logits[i]) if logits is not None else None,
                grade_prob=float(sigmoid(logits[i])) if logits is not None else None,
                dice=dice(masks[i], t256) if t256 is not None else None,
                truth_area_px=int(t256.sum()) if t256 is not None else None,
            ))
        return PredictionResult(tuple(slices), self.patient_grade(logits, areas), clinical, self.device_text, self.version)

    def predict_uploads(self, batch: UploadBatch, clinical: Clinical | None) -> PredictionResult:
        """``predict`` on what :func:`lggdemo.data.imageio.read_uploads` accepted, keeping names, sizes and truths."""
        if not batch.slices:
            raise InputError("None of the uploaded files could be used.")
        return self.predict([s.image for s in batch.slices], clinical, names=[s.name for s in batch.slices],
                            truths=[s.truth for s in batch.slices],
                            original_sizes=[s.original_size for s in batch.slices])


def safe_clinical(clinical: Clinical) -> tuple[Clinical | None, str | None]:
    """(clinical, None) when the model can take it, else (None, the reason) -- for callers that must not raise."""
    try:
        return validate_clinical(Clinical(clinical.age, clinical.sex)), None
    except ClinicalInputError as exc:
        return None, str(exc)

























