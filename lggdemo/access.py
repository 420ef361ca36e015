"""Who may change what everyone sees: the operator model of a shared server.

On a laptop (the default, loopback only) every visitor is the operator: nothing here changes anything.
Shared on a network, one person's retraining, cancelling, activation, deletion or restore changes the
weights every other visitor gets, so the server can be put in *read-only* mode for visitors:

``LGG_OPERATOR_PASSWORD=...``  visitors see, but only someone who enters this password in the sidebar
                              (kept for that browser session) may start/cancel runs and manage weights.
``LGG_READ_ONLY=1``            the same without a password: those actions are off for everyone
                              (manage runs from the server's shell: ``python -m lggdemo.train``).

In either mode a finished run is *not* made active by itself: the operator activates it explicitly,
so a test run cannot silently become everyone's weights. The password is compared with
:func:`hmac.compare_digest` (no timing leak) and never stored or logged. Imports no streamlit.
"""

from __future__ import annotations

import hmac
import os
from dataclasses import dataclass

READ_ONLY_ENV = "LGG_READ_ONLY"
PASSWORD_ENV = "LGG_OPERATOR_PASSWORD"
_TRUE = {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class Access:
    """The server's policy, read from the environment at each call (a restart is not needed to read it)."""

    read_only: bool  # visitors may not change shared state
    password_set: bool  # an operator may unlock with the password


def policy() -> Access:
    password = os.environ.get(PASSWORD_ENV, "")
    read_only = os.environ.get(READ_ONLY_ENV, "").strip().lower() in _TRUE or bool(password)
    return Access(read_only=read_only, password_set=bool(password))


def password_matches(candidate: str) -> bool:
    """Whether ``candidate`` is the operator password (always False when none is set)."""
    password = os.environ.get(PASSWORD_ENV, "")
    if not password:
        return False
    return hmac.compare_digest(candidate.encode("utf-8"), password.encode("utf-8"))


def auto_activate() -> bool:
    """Whether a run that finished well becomes the active weights by itself (not on a read-only server)."""
    return not policy().read_only
