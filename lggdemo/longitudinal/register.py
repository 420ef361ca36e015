"""The follow-up onto the baseline: rigid (6 degrees of freedom) registration of FLAIR with SimpleITK.

Why rigid: between two visits the same head has moved in the scanner (3 rotations, 3 translations); the tumour's
growth is the change we want to *measure*, so the registration must not absorb it (a deformable registration would).
Why FLAIR: it is the sequence the tumour is drawn on and the one every input has (the Kaggle layout copies FLAIR into
missing channels). Why Mattes mutual information: the two visits may come from different scanners and protocols, so
their intensities relate by some unknown mapping, not by equality. The optimisation is multi-resolution (coarse,
blurred images first, so that the first steps see the whole head rather than noise) and starts from the two
heads' centres of mass (``CenteredTransformInitializer`` with ``MOMENTS``).

Geometry. A :class:`~lggdemo.patient.volume.Volume`'s display layout has columns running from the patient's right
to left, rows anterior to posterior and slices inferior to superior (the contract of the orientation work): that is
the LPS axes of DICOM, so each SimpleITK image gets the identity direction, origin 0 and the Volume's spacing
(SimpleITK's (x, y, z) = (column, row, slice)). A Volume without spacing (the Kaggle layout) is registered on an
assumed grid (:data:`ASSUMED_SPACING`), and the result says so. Nothing here reads a DICOM header: the readers have
already turned the header into the Volume, so an anonymised header with empty Type 2 attributes cannot break it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from lggdemo.models.preprocess import head_pixels
from lggdemo.patient.volume import Volume

#: Stand-in (slice, row, column) spacing in mm for an input that records none: 1 mm pixels and slices four pixels
#: apart, the same ratio the 3D view assumes (kaggle_3m: ~0.5-1 mm pixels, 2.5-5 mm slices). Only the
#: registration's geometry uses it; volumes stay in voxels unless a spacing is given.
ASSUMED_SPACING = (4.0, 1.0, 1.0)
FLAIR = 1  # channel of Volume.slices


@dataclass(frozen=True)
class RegistrationConfig:
    """The optimisation's settings (defaults: the ones measured in docs/experiments/longitudinal-*.md)."""

    shrink_factors: tuple[int, ...] = (4, 2, 1)  # multi-resolution levels, coarsest first
    smoothing_sigmas_mm: tuple[float, ...] = (2.0, 1.0, 0.0)
    histogram_bins: int = 32
    sampling_fraction: float = 0.25  # of the baseline head's voxels, drawn at random (seeded) at each level
    iterations: int = 200
    learning_rate: float = 2.0
    min_step: float = 1e-4
    seed: int = 0
    threads: int | None = None  # SimpleITK's threads (None: its own choice)


#: Verdict thresholds on the normalised mutual information (NMI, 1 = independent, 2 = identical) after registration,
#: set by the rule written before measuring them (docs/experiments/longitudinal-rule.md, section 1) on 12 same- and
#: 12 different-patient pairs (docs/experiments/longitudinal-threshold.md): the two overlapped, so a pair is refused
#: below the lowest same-patient value and flagged below the highest different-patient value.
NMI_REFUSE_BELOW = 1.035
NMI_FLAG_BELOW = 1.065
NMI_BINS = 64


class RegistrationError(ValueError):
    """A pair that cannot be registered, or that registered so badly it is likely two different patients."""


@dataclass(frozen=True)
class Similarity:
    """How alike the two FLAIRs are over the baseline's head, on the baseline grid."""

    mattes_mi: float  # Mattes mutual information (nats; SimpleITK's metric with its sign flipped: higher = better)
    nmi: float  # normalised mutual information (H(A) + H(B)) / H(A, B): 1 = unrelated, 2 = identical
    correlation: float  # Pearson correlation of the intensities

    def to_dict(self) -> dict[str, float]:
        return {"mattes_mi": round(self.mattes_mi, 4), "nmi": round(self.nmi, 4), "correlation": round(self.correlation, 4)}


@dataclass(frozen=True)
class Registration:
    """The rigid transform from baseline to follow-up and how well it fits.

    ``matrix`` maps baseline points (mm, LPS of the display layout) to follow-up points, as SimpleITK's transforms
    do (output space -> input space): resampling the follow-up through it puts the follow-up on the baseline grid.
    """

    rotation_deg: tuple[float, float, float]  # about the left-right, anterior-posterior, inferior-superior axes
    translation_mm: tuple[float, float, float]  # of the baseline head's centre of mass: towards left, posterior, superior
    centre_mm: tuple[float, float, float]  # the rotation centre (the baseline head's centre of mass)
    matrix: np.ndarray  # (4, 4) homogeneous, baseline mm -> follow-up mm
    before: Similarity  # the two scans as they lie (identity transform)
    after: Similarity
    verdict: str  # "good" | "doubtful" | (a refused pair raises RegistrationError)
    verdict_text: str
    spacing_baseline: tuple[float, float, float]
    spacing_followup: tuple[float, float, float]
    iterations: tuple[int, ...] = ()
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def rotation_total_deg(self) -> float:
        return rotation_angle_deg(self.matrix[:3, :3])

    def to_dict(self) -> dict[str, object]:
        return {
            "rotation_deg": [round(a, 3) for a in self.rotation_deg],
            "rotation_total_deg": round(self.rotation_total_deg, 3),
            "translation_mm": [round(t, 3) for t in self.translation_mm],
            "axes": "rotation about / translation towards: left, posterior, superior (the display layout's LPS axes)",
            "centre_mm": [round(c, 2) for c in self.centre_mm],
            "similarity_before": self.before.to_dict(), "similarity_after": self.after.to_dict(),
            "verdict": self.verdict, "verdict_text": self.verdict_text,
            "spacing_baseline_mm": list(self.spacing_baseline), "spacing_followup_mm": list(self.spacing_followup),
            "notes": list(self.notes),
        }


def rotation_angle_deg(rotation: np.ndarray) -> float:
    """The angle of a 3x3 rotation matrix (about its own axis), in degrees."""
    cos = (float(np.trace(rotation)) - 1.0) / 2.0
    return float(np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))))


def registration_spacing(volume: Volume) -> tuple[tuple[float, float, float], str | None]:
    """The (slice, row, column) spacing the registration uses, and a note when it is the stand-in."""
    if volume.spacing is not None:
        if min(volume.spacing) <= 0 or not np.all(np.isfinite(volume.spacing)):
            raise RegistrationError(f"{volume.name}: voxel spacing {volume.spacing} is not usable.")
        return tuple(float(s) for s in volume.spacing), None  # type: ignore[return-value]
    return ASSUMED_SPACING, (f"{volume.name} records no voxel spacing: registered on an assumed grid of "
                             f"{ASSUMED_SPACING[1]:g} mm pixels and {ASSUMED_SPACING[0]:g} mm slices, so its "
                             "millimetres are nominal.")


def to_sitk(array: np.ndarray, spacing: tuple[float, float, float]):  # -> sitk.Image
    """(S, H, W) display-layout array -> SimpleITK image: LPS identity direction, origin 0, (col, row, slice) spacing."""
    import SimpleITK as sitk

    img = sitk.GetImageFromArray(np.ascontiguousarray(array))
    img.SetSpacing((float(spacing[2]), float(spacing[1]), float(spacing[0])))
    img.SetOrigin((0.0, 0.0, 0.0))
    img.SetDirection((1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0))
    return img


def head_region(volume: Volume) -> np.ndarray:
    """(S, H, W) bool: the head (the models' background rule), where the similarity is measured."""
    return head_pixels(volume.slices)


def register(baseline: Volume, followup: Volume, config: RegistrationConfig = RegistrationConfig(), *,
             refuse: bool = True) -> Registration:
    """Register ``followup`` onto ``baseline`` (rigid, Mattes MI, multi-resolution, centre-of-mass start).

    Raises :class:`RegistrationError` for a pair that cannot be registered (an empty head, optimiser failure) and,
    when ``refuse``, for one whose similarity after registration is below :data:`NMI_REFUSE_BELOW` (likely two
    different patients).
    """
    import SimpleITK as sitk

    sp_b, note_b = registration_spacing(baseline)
    sp_f, note_f = registration_spacing(followup)
    notes = tuple(n for n in (note_b, note_f) if n)
    head_b = head_region(baseline)
    if head_b.sum() < 1000 or head_region(followup).sum() < 1000:
        raise RegistrationError(f"{baseline.name} / {followup.name}: one of the two FLAIR volumes is (nearly) empty; "
                                "nothing to register.")
    fixed = to_sitk(baseline.slices[..., FLAIR].astype(np.float32), sp_b)
    moving = to_sitk(followup.slices[..., FLAIR].astype(np.float32), sp_f)
    fixed_mask = to_sitk(head_b.astype(np.uint8), sp_b)

    method = sitk.ImageRegistrationMethod()
    cfg = config
    if cfg.threads:
        method.SetNumberOfThreads(int(cfg.threads))
    method.SetMetricAsMattesMutualInformation(numberOfHistogramBins=cfg.histogram_bins)
    method.SetMetricFixedMask(fixed_mask)
    method.SetMetricSamplingStrategy(method.RANDOM)
    method.SetMetricSamplingPercentage(cfg.sampling_fraction, int(cfg.seed))
    method.SetInterpolator(sitk.sitkLinear)
    method.SetOptimizerAsRegularStepGradientDescent(learningRate=cfg.learning_rate, minStep=cfg.min_step,
                                                    numberOfIterations=cfg.iterations, relaxationFactor=0.5,
                                                    gradientMagnitudeTolerance=1e-8)
    method.SetOptimizerScalesFromPhysicalShift()
    method.SetShrinkFactorsPerLevel(list(cfg.shrink_factors))
    method.SetSmoothingSigmasPerLevel(list(cfg.smoothing_sigmas_mm))
    method.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
    initial = sitk.CenteredTransformInitializer(fixed, moving, sitk.Euler3DTransform(),
                                                sitk.CenteredTransformInitializerFilter.MOMENTS)
    method.SetInitialTransform(initial, inPlace=False)
    iterations: list[int] = []
    levels: list[int] = []  # iterations per level: the optimiser's count when the next level starts, and at the end
    method.AddCommand(sitk.sitkMultiResolutionIterationEvent, lambda: levels.append(int(method.GetOptimizerIteration())))
    method.AddCommand(sitk.sitkEndEvent, lambda: iterations.extend([*levels[1:], int(method.GetOptimizerIteration())]))
    try:
        result = method.Execute(fixed, moving)
    except RuntimeError as exc:  # SimpleITK raises RuntimeError for e.g. "All samples map outside moving image"
        raise RegistrationError(f"{baseline.name} / {followup.name}: the registration failed "
                                f"({str(exc).strip().splitlines()[-1][:200]}).") from exc
    euler = sitk.Euler3DTransform(sitk.CompositeTransform(result).GetNthTransform(0)) \
        if result.GetName() == "CompositeTransform" else sitk.Euler3DTransform(result)
    matrix = euler_matrix(euler)
    identity = np.eye(4)
    before = similarity(baseline, followup, identity, sp_b, sp_f, head_b)
    after = similarity(baseline, followup, matrix, sp_b, sp_f, head_b)
    verdict, text = judge(after)
    if refuse and verdict == "refused":
        raise RegistrationError(f"{baseline.name} / {followup.name}: {text}")
    return Registration(
        rotation_deg=tuple(float(np.degrees(a)) for a in euler.GetParameters()[:3]),  # type: ignore[arg-type]
        translation_mm=tuple(float(t) for t in euler.GetTranslation()),  # type: ignore[arg-type]
        centre_mm=tuple(float(c) for c in euler.GetCenter()),  # type: ignore[arg-type]
        matrix=matrix, before=before, after=after, verdict=verdict, verdict_text=text,
        spacing_baseline=sp_b, spacing_followup=sp_f, iterations=tuple(iterations), notes=notes)


def euler_matrix(euler) -> np.ndarray:  # euler: sitk.Euler3DTransform
    """(4, 4) homogeneous matrix of a SimpleITK Euler transform: p -> R (p - c) + c + t."""
    rot = np.asarray(euler.GetMatrix(), float).reshape(3, 3)
    c = np.asarray(euler.GetCenter(), float)
    t = np.asarray(euler.GetTranslation(), float)
    out = np.eye(4)
    out[:3, :3] = rot
    out[:3, 3] = c + t - rot @ c
    return out


def matrix_transform(matrix: np.ndarray):  # -> sitk.AffineTransform
    """A SimpleITK transform for a (4, 4) baseline -> follow-up matrix (for resampling)."""
    import SimpleITK as sitk

    affine = sitk.AffineTransform(3)
    affine.SetMatrix(tuple(float(v) for v in np.asarray(matrix)[:3, :3].ravel()))
    affine.SetTranslation(tuple(float(v) for v in np.asarray(matrix)[:3, 3]))
    return affine


def resample_to_baseline(array: np.ndarray, followup_spacing: tuple[float, float, float], baseline_shape: tuple[int, ...],
                         baseline_spacing: tuple[float, float, float], matrix: np.ndarray, *, nearest: bool) -> np.ndarray:
    """A follow-up (S', H, W) array on the baseline grid (S, H, W): linear for images, nearest neighbour for masks.

    Outside the follow-up's field of view the result is 0. The dtype is kept (images are rounded back).
    """
    import SimpleITK as sitk

    src = to_sitk(array.astype(np.float32) if not nearest else array.astype(np.uint8), followup_spacing)
    ref = to_sitk(np.zeros(baseline_shape[:3], np.uint8), baseline_spacing)
    out = sitk.Resample(src, ref, matrix_transform(matrix), sitk.sitkNearestNeighbor if nearest else sitk.sitkLinear,
                        0.0, src.GetPixelID())
    arr = sitk.GetArrayFromImage(out)
    if nearest:
        return arr.astype(array.dtype)
    if np.issubdtype(array.dtype, np.integer):
        info = np.iinfo(array.dtype)
        return np.clip(np.rint(arr), info.min, info.max).astype(array.dtype)
    return arr.astype(array.dtype)


def resample_volume_slices(followup: Volume, baseline: Volume, registration: Registration) -> np.ndarray:
    """The follow-up's (S', 256, 256, 3) uint8 slices on the baseline grid (S, 256, 256, 3), linear, channel by channel."""
    return np.stack([resample_to_baseline(followup.slices[..., c], registration.spacing_followup,
                                          baseline.slices.shape[:3], registration.spacing_baseline,
                                          registration.matrix, nearest=False) for c in range(3)], axis=-1)


def resample_mask(mask: np.ndarray, baseline: Volume, registration: Registration) -> np.ndarray:
    """A follow-up (S', 256, 256) mask on the baseline grid, nearest neighbour, uint8 0/1."""
    return resample_to_baseline((np.asarray(mask) > 0).astype(np.uint8), registration.spacing_followup,
                                baseline.slices.shape[:3], registration.spacing_baseline, registration.matrix,
                                nearest=True)


def similarity(baseline: Volume, followup: Volume, matrix: np.ndarray, sp_b: tuple[float, float, float],
               sp_f: tuple[float, float, float], head_b: np.ndarray) -> Similarity:
    """The similarity of the baseline FLAIR and the follow-up's resampled through ``matrix``, over the baseline head."""
    import SimpleITK as sitk

    moved = resample_to_baseline(followup.slices[..., FLAIR], sp_f, baseline.slices.shape[:3], sp_b, matrix,
                                 nearest=False)
    a = baseline.slices[..., FLAIR][head_b].astype(np.float64)
    b = moved[head_b].astype(np.float64)
    method = sitk.ImageRegistrationMethod()
    method.SetMetricAsMattesMutualInformation(numberOfHistogramBins=RegistrationConfig.histogram_bins)
    method.SetMetricFixedMask(to_sitk(head_b.astype(np.uint8), sp_b))
    method.SetInterpolator(sitk.sitkLinear)
    fixed = to_sitk(baseline.slices[..., FLAIR].astype(np.float32), sp_b)
    moving = to_sitk(followup.slices[..., FLAIR].astype(np.float32), sp_f)
    method.SetInitialTransform(matrix_transform(matrix))
    try:
        mattes = -float(method.MetricEvaluate(fixed, moving))
    except RuntimeError:  # no overlap at all
        mattes = 0.0
    return Similarity(mattes_mi=mattes, nmi=normalised_mi(a, b), correlation=_correlation(a, b))


def normalised_mi(a: np.ndarray, b: np.ndarray, bins: int = NMI_BINS) -> float:
    """Studholme's normalised mutual information (H(A) + H(B)) / H(A, B) of two intensity samples (0-255)."""
    if a.size == 0:
        return 1.0
    joint, _, _ = np.histogram2d(a, b, bins=bins, range=[[0, 256], [0, 256]])
    p = joint / joint.sum()
    pa, pb = p.sum(axis=1), p.sum(axis=0)

    def entropy(q: np.ndarray) -> float:
        q = q[q > 0]
        return float(-(q * np.log(q)).sum())

    h_ab = entropy(p.ravel())
    return 1.0 if h_ab == 0 else (entropy(pa) + entropy(pb)) / h_ab


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    if a.size < 2 or a.std() == 0 or b.std() == 0:
        return 0.0
    return float(np.corrcoef(a, b)[0, 1])


def judge(after: Similarity) -> tuple[str, str]:
    """"good", "doubtful" or "refused" from the NMI after registration, with the sentence the page shows."""
    if after.nmi < NMI_REFUSE_BELOW:
        return "refused", (f"after registration the two FLAIRs are still unlike each other (normalised mutual "
                           f"information {after.nmi:.3f}, below {NMI_REFUSE_BELOW:.3f}, the lowest measured for scans "
                           "of one patient): these are likely two different patients, or one of them is not a "
                           "brain FLAIR. The pair is not compared.")
    if after.nmi < NMI_FLAG_BELOW:
        return "doubtful", (f"the registration is doubtful (normalised mutual information {after.nmi:.3f}, within "
                            "the range measured for pairs of two different patients): check that both scans are of "
                            "the same patient, and on the checkerboard that they were aligned, before reading the change.")
    return "good", f"registered (normalised mutual information {after.nmi:.3f}, as for scans of one patient)."
