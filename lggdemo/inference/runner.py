"""One study through the whole-patient path, and a batch of them: what ``lggdemo-predict`` runs.

:func:`process_study` is the one sequence for an input: read (``patient.readers``) -> ``predict_volume`` -> the
report row with its measurements (``reports.patient_row``) -> each output asked for (a mask format of
``patient.exporters``, the probability map, the PDF of ``lggdemo.report``), each written atomically. The CLI's
list of inputs and :func:`run_batch` (a tree or manifest, resumable and sharded; see :mod:`.batch`) both call it.

A :class:`VoxelSize` the user gives (``--pixel-size`` / ``--slice-spacing``, the Predict page's two voxel-size
fields) is applied right after reading, by the page's own call (``readers.kaggle.with_voxel_size``), to inputs that
record none (the Kaggle layout); an input that records its own (NIfTI, DICOM) keeps the file's, and its notes and
stderr say the given size was not applied: the file's header describes its voxels, a typed value does not.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from lggdemo.data.kaggle import Clinical
from lggdemo.inference.batch import Study, clean_partial, my_share, read_marker, study_dir, write_marker, write_summary
from lggdemo.inference.predictor import Predictor
from lggdemo.inference.reports import patient_report_document, patient_row
from lggdemo.inference.wholepatient import predict_volume
from lggdemo.patient.exporters import ExportError, mask_bytes, safe_name, write_inside
from lggdemo.patient.readers import open_path
from lggdemo.patient.readers.kaggle import VOXEL_MM_RANGE, with_voxel_size
from lggdemo.patient.volume import Volume, VolumeError
from lggdemo.report import PdfReportError, study_pdf

#: ``--format`` values: the exporters' formats and the PDF report.
PDF_FORMAT = "pdf"


@dataclass(frozen=True)
class VoxelSize:
    """A voxel size typed by the user for inputs that record none: the Predict page's "Pixel size in-plane (mm)"
    (square pixels of the slices as stored) and "Slice spacing (mm)". VolumeError outside ``VOXEL_MM_RANGE``."""

    in_plane_mm: float
    slice_mm: float

    def __post_init__(self) -> None:
        lo, hi = VOXEL_MM_RANGE
        for what, value in (("pixel size", self.in_plane_mm), ("slice spacing", self.slice_mm)):
            if not lo <= float(value) <= hi:
                raise VolumeError(f"a {what} of {value} mm is not a brain MRI voxel ({lo}–{hi} mm)")


def apply_voxel_size(volume: Volume, size: VoxelSize | None) -> tuple[Volume, str | None]:
    """The volume with ``size`` applied as the page applies its fields (``with_voxel_size``), when it records no
    voxel size of its own (the Kaggle layout); else the volume unchanged, with a note saying why it was not."""
    if size is None:
        return volume, None
    if volume.provenance.kind != "kaggle":  # with_voxel_size's own rule: a file's geometry is never replaced
        own = "unknown" if volume.spacing is None else " × ".join(f"{v:g}" for v in volume.spacing)
        note = (f"The voxel size given ({size.in_plane_mm:g} mm in-plane, {size.slice_mm:g} mm between slices) was "
                f"not applied: this {volume.provenance.kind} input records its own (slice × row × column {own} mm), "
                "which is kept.")
        notes = (*volume.provenance.notes, note)
        return replace(volume, provenance=replace(volume.provenance, notes=notes)), note
    return with_voxel_size(volume, size.in_plane_mm, size.slice_mm), None


@dataclass
class StudyOutcome:
    """What one input gave: its report row (with the error when it failed), the reader's notes, the files written."""

    row: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    written: list[Path] = field(default_factory=list)

    @property
    def error(self) -> str | None:
        return self.row.get("error")


def study_outputs(fmt: str, volume: Any, prediction: Any, row: dict[str, Any], card: dict[str, Any],
                  notes: Sequence[str]) -> tuple[str, bytes]:
    """(file name, bytes) of one ``--format``: a mask or probability map, or the PDF drawn from the report row."""
    if fmt == PDF_FORMAT:
        document = patient_report_document([row], {volume.name: list(notes)}, card)
        return f"{safe_name(volume.name)}_report.pdf", study_pdf(document, volume.slices, prediction.mask)
    return mask_bytes(fmt, volume, prediction)


def process_study(predictor: Predictor, path: Path, clinical: Clinical | None, formats: Sequence[str],
                  dest: Path, voxel_size: VoxelSize | None = None) -> StudyOutcome:
    """Predict one input and write its outputs into ``dest``; a refused input or output becomes the row's error
    (named, never a traceback), after whatever could be written. ``voxel_size``: see :func:`apply_voxel_size`."""
    try:
        volume, ignored = apply_voxel_size(open_path(path).volume(), voxel_size)
        if ignored:
            print(f"note: {path}: {ignored}", file=sys.stderr)
        prediction = predict_volume(predictor, volume, clinical)
    except (VolumeError, ExportError) as exc:
        return StudyOutcome(patient_row(None, None, name=str(path), error=str(exc)))
    except Exception as exc:  # noqa: BLE001 -- one input's surprise must not lose the others: named, exit 2
        message = f"unexpected {type(exc).__name__} ({exc}); please report it with this input"
        return StudyOutcome(patient_row(None, None, name=str(path), error=message))
    row = patient_row(volume, prediction, clinical_source="command line")  # --age / --sex, when given
    row["input"] = str(path)
    outcome = StudyOutcome(row, list(volume.provenance.notes))
    failed = []
    for fmt in formats:
        try:
            name, data = study_outputs(fmt, volume, prediction, row, predictor.card, outcome.notes)
            outcome.written.append(write_inside(dest, name, data))
        except (VolumeError, ExportError, PdfReportError) as exc:
            failed.append(str(exc))
    names = [p.name for p in outcome.written]
    row["mask_file"] = next((n for n in names if not n.endswith((".pdf", "_prob.nii.gz"))), None)
    if failed:
        row["error"] = "; ".join(failed)
    return outcome


@dataclass(frozen=True)
class BatchResult:
    done: int  # studies this rank processed now
    skipped: int  # already complete
    errors: list[str]
    summary: Path | None  # written by this rank (None: another rank's job, or studies still missing)
    missing: int  # studies of the whole batch not complete yet


def run_batch(predictor: Predictor, studies: Sequence[Study], out: Path, *, clinical: Clinical | None,
              formats: Sequence[str], rank: int = 0, world: int = 1, retry_errors: bool = False,
              barrier: Callable[[], None] | None = None, progress: Callable[[Study], None] | None = None,
              voxel_size: VoxelSize | None = None) -> BatchResult:
    """This rank's share of ``studies``: complete ones skipped, the others (re)done into ``out/studies/<key>``.

    ``barrier`` (torchrun: a process-group barrier) is waited on before the summary; then rank 0 writes it. Without
    one, any rank that finds every study complete writes it (see :mod:`.batch`).
    """
    done = skipped = 0
    errors: list[str] = []
    for study in my_share(studies, rank, world):
        folder = study_dir(out, study)
        clean_partial(folder)  # what a killed run left: temp files; every output when the marker does not vouch for it
        marker = read_marker(folder)
        if marker is not None and (marker["status"] == "ok" or not retry_errors):
            skipped += 1
            continue
        if marker is not None:  # a failed study, asked to be retried: start clean
            for old in (p for p in folder.iterdir() if p.is_file()):
                old.unlink()
        folder.mkdir(parents=True, exist_ok=True)
        outcome = process_study(predictor, study.path, study.clinical or clinical, formats, folder, voxel_size)
        write_marker(folder, study, outcome.row, outcome.written, outcome.notes)
        done += 1
        if outcome.error:
            errors.append(f"{study.key}: {outcome.error}")
        if progress is not None:
            progress(study)
    summary, missing = None, 0
    if barrier is not None:
        barrier()
        if rank == 0:
            summary, left = write_summary(out, studies)
            missing = len(left)
        barrier()  # no rank exits before the summary is written: torchrun stops every rank when one exits non-zero
    else:
        summary, left = write_summary(out, studies)
        missing = len(left)
    return BatchResult(done, skipped, errors, summary, missing)


def torch_barrier() -> tuple[Callable[[], None], Callable[[], None]] | None:
    """(barrier, close) of a gloo process group when launched by torchrun with several ranks, else None.

    The barrier's timeout is long: ranks finish their shares minutes apart on thousands of studies.
    """
    import os
    from datetime import timedelta

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or "MASTER_ADDR" not in os.environ:
        return None
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("gloo", timeout=timedelta(hours=12))
    return dist.barrier, dist.destroy_process_group


def report_batch(result: BatchResult, out: Path, rank: int, world: int) -> None:
    where = f"rank {rank}/{world}: " if world > 1 else ""
    print(f"{where}{result.done} studies done, {result.skipped} already complete; outputs in {out}", file=sys.stderr)
    if result.summary is not None:
        print(f"summary {result.summary}", file=sys.stderr)
    elif result.missing:
        print(f"{where}{result.missing} studies of the batch are not complete yet: the summary is written by the "
              "shard that completes the batch, or by rerunning with --merge", file=sys.stderr)
