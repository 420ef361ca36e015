"""Registration on the small test head (fast): a known movement is recovered at the tumour, a scan compared with
itself is unchanged and stable, an unrelated volume is refused, and the change on truth masks follows the truth."""

from __future__ import annotations

import numpy as np
import pytest
from longitudinal_heads import head_volume

from lggdemo.longitudinal.pipeline import GONE, NEW, compare_masks
from lggdemo.longitudinal.register import (
    ASSUMED_SPACING,
    RegistrationConfig,
    RegistrationError,
    register,
    registration_spacing,
)
from lggdemo.longitudinal.synthetic import make_follow_up, mask_points, transform_error
from lggdemo.patient.volume import Volume

ONE_THREAD = RegistrationConfig(threads=1)


@pytest.fixture(scope="module")
def moved(head: Volume):
    return make_follow_up(head, rotation_deg=(5.0, -4.0, 7.0), translation_mm=(4.0, -6.0, 3.0), growth=1.25,
                          noise_sd=3.0, bias=0.05, seed=1)


@pytest.fixture(scope="module")
def registered(head: Volume, moved):
    return register(head, moved.volume, ONE_THREAD)


def test_recovers_a_known_movement_at_the_tumour(head: Volume, moved, registered) -> None:
    spacing, note = registration_spacing(head)
    assert spacing == ASSUMED_SPACING and note and "assumed grid" in note
    err = transform_error(registered.matrix, moved.matrix, mask_points(head.truth, spacing))
    assert err.rotation_deg < 1.0 and err.max_mm < 1.0, err
    assert registered.after.nmi > registered.before.nmi
    assert registered.after.correlation > registered.before.correlation
    assert registered.verdict in ("good", "doubtful") and registered.notes
    assert len(registered.iterations) == 3  # one count per resolution level
    d = registered.to_dict()
    assert d["rotation_total_deg"] == pytest.approx(registered.rotation_total_deg, abs=1e-3)


def test_change_on_truth_masks_follows_the_truth(head: Volume, moved, registered) -> None:
    c = compare_masks(head, moved.volume, registered, head.truth, moved.volume.truth)
    realised = 100.0 * (moved.volume.truth.sum() / head.truth.sum() - 1.0)  # the truth masks' own change
    assert c.table.volume_change_pct == pytest.approx(realised, abs=3.0)
    assert c.table.volume_unit == "voxels" and c.table.rano2.category in ("stable disease", "progression")
    assert (c.change_map == NEW).sum() > (c.change_map == GONE).sum()  # it grew
    assert c.followup_on_baseline.shape == head.slices.shape and c.followup_mask.shape == head.truth.shape


@pytest.mark.slow  # whole command-line, page or registration runs: seconds each (make test runs them)
def test_a_scan_against_itself_shows_no_change(head: Volume) -> None:
    reg = register(head, head, ONE_THREAD)
    err = transform_error(reg.matrix, np.eye(4), mask_points(head.truth, registration_spacing(head)[0]))
    assert err.max_mm < 0.25 and err.rotation_deg < 0.2, err
    assert reg.verdict == "good"
    c = compare_masks(head, head, reg, head.truth, head.truth, baseline_probability=head.truth * 0.9,
                      followup_probability=head.truth * 0.9)
    t = c.table
    assert abs(t.volume_change_pct) < 1.0
    assert t.rano_lgg.category == "stable disease" and t.rano2.category == "stable disease"
    assert t.volume_verdict.beyond is False
    assert (c.change_map != 0).sum() < 0.01 * head.truth.sum()


@pytest.mark.slow  # whole command-line, page or registration runs: seconds each (make test runs them)
def test_an_unrelated_volume_is_refused(head: Volume) -> None:
    rng = np.random.default_rng(7)
    other = head_volume(seed=3, name="other")
    noise = rng.integers(0, 255, size=other.slices.shape, dtype=np.uint8)
    box = np.zeros(other.slices.shape[:3], bool)
    box[3:15, 40:220, 30:200] = True
    junk = Volume(slices=np.where(box[..., None], noise, 0).astype(np.uint8), spacing=None, grid=other.grid,
                  provenance=other.provenance, name="noise")
    with pytest.raises(RegistrationError, match="different patients|not a brain"):
        register(head, junk, ONE_THREAD)
    flagged = register(head, junk, ONE_THREAD, refuse=False)
    assert flagged.verdict == "refused"


def test_an_empty_study_cannot_be_registered(head: Volume) -> None:
    from dataclasses import replace

    empty = replace(head, slices=np.zeros_like(head.slices), truth=None, name="empty")
    with pytest.raises(RegistrationError, match="empty"):
        register(head, empty, ONE_THREAD)
