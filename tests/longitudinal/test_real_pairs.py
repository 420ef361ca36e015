"""Real patients (slow; skipped without ../shared): a synthetic follow-up of known movement and growth is registered
within 1 mm and 1 degree at the tumour, the change on truth masks follows the known change within 3 %, and two
different patients are refused or flagged."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lggdemo.data.kaggle import scan_dataset
from lggdemo.longitudinal.pipeline import compare_masks
from lggdemo.longitudinal.register import RegistrationConfig, RegistrationError, register, registration_spacing
from lggdemo.longitudinal.synthetic import make_follow_up, mask_points, random_motion, transform_error
from lggdemo.patient.readers.kaggle import index_volume

pytestmark = [pytest.mark.slow, pytest.mark.real_data]
CONFIG = RegistrationConfig(threads=1)


@pytest.fixture(scope="module")
def patients(real_root: Path):
    index = scan_dataset(real_root)
    return [index_volume(index, pid) for pid in index.patient_ids[:3]]


def test_known_movement_and_growth_are_recovered(patients) -> None:
    base = max(patients, key=lambda v: int(v.truth.sum()))
    rot, shift = random_motion(np.random.default_rng(11))
    syn = make_follow_up(base, rotation_deg=rot, translation_mm=shift, growth=1.25, noise_sd=4.0, bias=0.1, seed=11)
    reg = register(base, syn.volume, CONFIG)
    spacing, _ = registration_spacing(base)
    err = transform_error(reg.matrix, syn.matrix, mask_points(base.truth, spacing))
    assert err.max_mm <= 1.0 and err.rotation_deg <= 1.0, err
    c = compare_masks(base, syn.volume, reg, base.truth, syn.volume.truth)
    known = 100.0 * (syn.volume.truth.sum() / base.truth.sum() - 1.0)  # the truth masks' own change
    assert c.table.volume_change_pct == pytest.approx(known, abs=3.0)
    assert c.table.rano2.category == "stable disease" or c.table.volume_change_pct >= 40


def test_a_scan_of_another_patient_is_refused_or_flagged(patients) -> None:
    a, b = patients[0], patients[1]
    try:
        reg = register(a, b, CONFIG)
    except RegistrationError as exc:
        assert "different patients" in str(exc)
        return
    assert reg.verdict == "doubtful", reg.verdict_text
