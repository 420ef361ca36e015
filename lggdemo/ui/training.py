"""Sidebar retraining control (issue: retraining from the sidebar). Placeholder until that lands."""

from __future__ import annotations


def render_training_sidebar() -> None:
    return None
