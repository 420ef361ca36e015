"""Fixtures of the longitudinal tests: the small test head (``longitudinal_heads``)."""

from __future__ import annotations

import pytest
from longitudinal_heads import head_volume

from lggdemo.patient.volume import Volume


@pytest.fixture(scope="session")
def head() -> Volume:
    return head_volume()
