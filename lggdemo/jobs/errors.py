"""What the job manager refuses, as exceptions whose messages are meant for the person who asked."""

from __future__ import annotations


class JobError(RuntimeError):
    """A request the job manager refuses, with a message meant for the person who made it."""


class JobBusy(JobError):
    """A second run was asked for while one is in progress."""


class SettingsError(JobError):
    """Settings that cannot train (checked before anything is launched)."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__(" ".join(problems))
        self.problems = problems

