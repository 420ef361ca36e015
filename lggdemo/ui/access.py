"""The operator's unlock in the sidebar, and the one question every control that changes shared state asks.

See :mod:`lggdemo.access` for the policy. The unlock lives in ``st.session_state``: it is this browser
session's, gone when the tab closes, never shared with other visitors.
"""

from __future__ import annotations

import streamlit as st

from lggdemo import access

UNLOCKED_KEY = "lgg_operator_unlocked"
_PASSWORD_KEY = "lgg_operator_password"
LOCKED_TEXT = ("Read-only for visitors: retraining, cancelling and weight management are reserved for the "
               "operator of this server.")


def can_manage() -> bool:
    """Whether this session may start/cancel runs and activate, delete or restore weights."""
    policy = access.policy()
    if not policy.read_only:
        return True  # loopback default: everyone is the operator, as before
    return policy.password_set and st.session_state.get(UNLOCKED_KEY) is True


def locked_hint() -> str:
    policy = access.policy()
    how = ("Unlock with the operator password in the sidebar." if policy.password_set
           else "They are turned off on this server (LGG_READ_ONLY).")
    return f"{LOCKED_TEXT} {how}"


def _try_unlock() -> None:
    candidate = st.session_state.get(_PASSWORD_KEY) or ""
    st.session_state[_PASSWORD_KEY] = ""  # never kept in the session
    if access.password_matches(candidate):
        st.session_state[UNLOCKED_KEY] = True
    else:
        st.session_state[UNLOCKED_KEY] = False
        st.session_state["lgg_operator_refused"] = True


def render_operator_section() -> None:
    """Nothing on a loopback server; on a shared one, the mode and (with a password set) the unlock."""
    policy = access.policy()
    if not policy.read_only:
        return
    if can_manage():
        st.caption(":material/lock_open: Operator mode: you may retrain and manage weights in this tab.")
        if st.button("Lock", key="lgg_operator_lock", help="Back to read-only for this tab."):
            st.session_state[UNLOCKED_KEY] = False
            st.rerun()
        return
    st.caption(f":material/lock: {locked_hint()}")
    if policy.password_set:
        with st.form("lgg_operator_form", border=False):
            st.text_input("Operator password", type="password", key=_PASSWORD_KEY)
            st.form_submit_button("Unlock", on_click=_try_unlock)
        if st.session_state.pop("lgg_operator_refused", False):
            st.error("Wrong operator password.")
