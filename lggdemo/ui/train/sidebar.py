"""The sidebar's retraining control, on every page: live progress and Cancel, the outcome, the settings form.

The state of a run lives on disk (:mod:`lggdemo.jobs`), never in ``st.session_state``: a closed tab does
not stop the trainer, and any tab shows the run. While a run is in progress its status is drawn inside
``st.fragment(run_every=...)``, so only that part reruns; when it ends the fragment asks for one full rerun,
so pages that cache models by ``weights.active_weights().version`` pick up new weights. While idle, another
small fragment notices a run started from another tab. The form's fields come from the trainer's schema.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from typing import Any

import streamlit as st

from lggdemo import jobs
from lggdemo.corrections import corrections_dir, usable_corrections
from lggdemo.data.kaggle import DatasetError
from lggdemo.device import available_devices
from lggdemo.models import weights
from lggdemo.train.config import OPTIONS
from lggdemo.ui.access import can_manage, locked_hint, render_operator_section
from lggdemo.ui.dataset import active_dataset, describe_choice
from lggdemo.ui.train.page import cancel_buttons, describe_progress, flash, outcome_text, show_flash

#: Seconds between refreshes of the live status; while idle, between checks for a run started elsewhere.
SIDEBAR_REFRESH_S = 1.5
IDLE_REFRESH_S = 5.0
DEVICE_LABELS = {"auto": "Auto (best available)", "cpu": "CPU", "cuda": "CUDA GPU", "mps": "Apple GPU (MPS)"}
PRESET_HELP = {
    "quick": "quick: a few minutes on a CPU, enough to watch the loss fall.",
    "full": ("full: the earlier two-command recipe's first stage (much longer; cross-validates the grade "
             "model). Its second stage, refine, runs from the command line: see weights/README.md."),
    "bundled": ("bundled: the shipped recipe in one long run (both U-Net stages, then the grade model) on every "
                "patient, so the run itself reports no held-out numbers: its estimate is the recipe's "
                "cross-validation (see weights/README.md)."),
}


def _live_sidebar_status() -> None:
    run = jobs.current()
    if run is None:
        st.rerun(scope="app")  # it just ended: redraw everything once (outcome, new active weights)
        return
    status = st.container()
    run = cancel_buttons(run, "sidebar")
    with status:
        st.markdown(f"**Training run {run.name}**")
        st.progress(run.progress.fraction, text=f"{run.progress.fraction:.0%}")
        st.caption(describe_progress(run))


def _watch_for_a_new_run() -> None:
    """While idle, notice a run started from another tab: redraw so this one stops offering a stale Start."""
    if jobs.current() is not None:
        st.rerun(scope="app")


def _show_outcome(run: jobs.RunInfo) -> None:
    text = outcome_text(run)
    if run.state == "succeeded" and run.activated:
        st.success(text)
    elif run.state == "cancelled":
        st.info(text)
    elif run.state == "succeeded":
        st.warning(text)
    else:
        st.error(text)
        tail = jobs.log_tail(run, lines=6)
        if tail:
            st.code(tail, language=None)
    if can_manage() and st.button("Dismiss", key=f"lgg_dismiss_{run.name}"):
        try:
            jobs.dismiss(run.name)
        except jobs.JobError as exc:
            st.warning(str(exc))
        else:
            st.rerun()


def _dataset() -> tuple[Any, Any, str | None]:

    try:
        choice, index = active_dataset()
    except DatasetError as exc:
        return None, None, str(exc)
    return choice, index, describe_choice(choice, index)


def render_training_sidebar() -> None:
    """Retraining on every page: live progress and Cancel while a run is on, the settings form otherwise.

    A Start click is answered here, above the form and before anything else is drawn: it either starts a
    run or says why not (another run in progress, settings, dataset, locked). The click is recorded by the
    button's callback, so it is answered even when the form comes back disabled because somebody else's
    run began meanwhile -- a disabled button would otherwise swallow it without a word.
    """
    st.subheader("Retraining")
    render_operator_section()
    show_flash("sidebar")
    if st.session_state.pop(_START_CLICKED, False):
        _answer_start_click()
    run = jobs.current()
    if run is not None:
        st.fragment(run_every=SIDEBAR_REFRESH_S)(_live_sidebar_status)()
    else:
        st.fragment(run_every=IDLE_REFRESH_S)(_watch_for_a_new_run)()
        last = jobs.latest_run()
        if last is not None and not last.dismissed and last.finished is not None:
            _show_outcome(last)
    with st.expander("Retrain models", expanded=False):
        if can_manage():
            _time_estimate(running=run is not None)
            _settings_form(running=run is not None)
        else:
            st.caption(locked_hint())


def _time_estimate(*, running: bool) -> None:
    """Before Start: how long each preset trains on this machine (``lggdemo.train.estimate``: timed steps, cached per
    CPU, times the preset's images). Measured only on request -- it takes the CPU for a few seconds -- and never
    while a run trains (it would slow the run and time a shared CPU)."""
    from lggdemo.device import choose_device, cpu_info
    from lggdemo.train import estimate as est
    from lggdemo.train.config import TrainConfig
    from lggdemo.train.loop import resolve_precision

    dev = choose_device("auto")
    configs = {p: TrainConfig.from_preset(p) for p in jobs.PRESETS}
    rates = {p: est.cached_throughput(c, dev) for p, c in configs.items()}
    if any(r is None for r in rates.values()):
        if st.button("Estimate the training time on this machine", key="lgg_train_estimate", disabled=running,
                     help="Times a few training steps of both networks here (about 10 s on a fast CPU, a minute on "
                          "a slow one) and multiplies by each preset's images; the result is kept for this CPU."):
            with st.spinner("Timing a few training steps…"):
                rates = {p: est.throughput(c, dev)[0] for p, c in configs.items()}
        else:
            return
    times = " · ".join(f"{p} ~{est.duration_text(est.estimate_from(c, rates[p], True).seconds)}"
                       for p, c in configs.items())
    precision = resolve_precision(dev, TrainConfig.precision)
    first = next(iter(rates.values()))
    busy = " The CPU was busy when it was timed, so these are probably too long." if first and first.busy else ""
    st.caption(f"Training time here, each preset as it is: {times} ({cpu_info().text()}, {precision}; training steps "
               f"only).{busy}")


def _number_input(option: str, key: str, *, unit: str = "") -> int | float | None:
    """A number field for one trainer option: label, step and help come from the trainer's schema."""
    setting = OPTIONS[option].setting
    text = setting.help or ""
    help_text = text[:1].upper() + text[1:] + (f"; at most {setting.maximum}" if setting.maximum else "") + \
        ". Empty: the preset's."
    return st.number_input(setting.name + (f" ({unit})" if unit else ""), value=None, step=setting.multiple or 1,
                           placeholder="preset default", key=key, help=help_text)


def _settings_form(*, running: bool) -> None:
    choice, index, described = _dataset()

    devices = [d for d in jobs.DEVICES if d != "mps" or "mps" in available_devices()]
    with st.form("lgg_train_form", border=False):
        st.radio("Models", list(jobs.TASKS), format_func=jobs.TASKS.__getitem__, horizontal=True, key=_FIELDS["task"])
        st.radio("Preset", list(jobs.PRESETS), horizontal=True, key=_FIELDS["preset"], help=" ".join(PRESET_HELP.values()))
        _number_input("epochs", _FIELDS["epochs"])
        _number_input("image_size", _FIELDS["image_size"], unit="px")
        st.selectbox("Device", devices, format_func=DEVICE_LABELS.__getitem__, key=_FIELDS["device"])
        n = len(usable_corrections())
        st.checkbox(f"Fine-tune the active weights with my {n} correction(s)", key=_FINE_TUNE, disabled=n == 0,
                    help=FINE_TUNE_HELP if n else "Save corrections first: on Predict, **Correct this mask**, then "
                                                   "**Save as a training example**.")
        _number_input("corrections_weight", _FIELDS["corrections_weight"])
        where = f" — `{choice.root}`" if choice is not None and not choice.synthetic else ""
        st.caption(f"Dataset: {described}{where}" if described else "Dataset: none")
        st.form_submit_button("Start training", type="primary", disabled=running, on_click=_record_start_click)
    if running:
        st.caption("A run is in progress: cancel it or wait for it to finish before starting another.")


#: The form's widget keys, by TrainSettings field.
_FIELDS = {"task": "lgg_train_task", "preset": "lgg_train_preset", "epochs": "lgg_train_epochs",
           "image_size": "lgg_train_size", "device": "lgg_train_device", "corrections_weight": "lgg_train_corr_weight"}
_FINE_TUNE = "lgg_train_fine_tune"
FINE_TUNE_HELP = ("Continues the active U-Net (the trainer's --init-from) on the dataset plus the corrections saved "
                  "on Predict (--corrections), each drawn more often than a tumour slice (the weight below), with the "
                  "refine preset's lower learning rate. Models and Preset above are then ignored: the U-Net is "
                  "trained, the grade model copied. Validation patients stay the active weights' own; the Train "
                  "page compares before and after on the corrected slices and on those patients.")
_START_CLICKED = "lgg_train_start_clicked"
_MY_RUNS = "lgg_train_my_runs"


def _record_start_click() -> None:
    st.session_state[_START_CLICKED] = True


def _form_settings() -> jobs.TrainSettings:
    """The settings the form holds (committed to the session state by its submit)."""
    values = {name: st.session_state.get(key) for name, key in _FIELDS.items()}
    defaults = jobs.TrainSettings()
    settings = jobs.TrainSettings(
        task=values["task"] or defaults.task, preset=values["preset"] or defaults.preset,
        epochs=None if values["epochs"] is None else int(values["epochs"]),
        image_size=None if values["image_size"] is None else int(values["image_size"]),
        device=values["device"] or defaults.device,
        corrections_weight=None if values["corrections_weight"] is None else int(values["corrections_weight"]),
    )  # fmt: skip
    if st.session_state.get(_FINE_TUNE):
        settings = replace(settings, task="seg", preset="refine", init_from=str(weights.active_dir()),
                           corrections=str(corrections_dir()))
    return settings


def busy_text(run: jobs.RunInfo, *, mine: bool) -> str:
    """Why a Start did nothing because ``run`` is in progress: which run, since when, from where."""
    since = dt.datetime.fromtimestamp(run.created).strftime("%H:%M:%S")
    who = "from this tab" if mine else "from another browser tab or session"
    return (f"Not started: run {run.name} is already in progress (started {since} {who}). "
            "Wait for it to finish or cancel it, then start again.")


def _answer_start_click() -> None:
    """Start a run from the form's settings, or show why not. Never returns silently."""
    choice, index, described = _dataset()
    mine: list[str] = st.session_state.setdefault(_MY_RUNS, [])
    if not can_manage():
        st.warning(f"Not started: {locked_hint()}")
        return
    busy = jobs.current()
    if busy is not None:
        st.warning(busy_text(busy, mine=busy.name in mine))
        return
    if index is None:
        st.error(f"Not started: no dataset to train on: {described or 'choose a kaggle_3m folder above.'}")
        return
    try:
        with st.spinner("Checking the settings…"):
            run = jobs.start(_form_settings(), index.root, index=index)
    except jobs.SettingsError as exc:
        st.error("Not started: these settings cannot train.")
        for problem in exc.problems:
            st.error(problem)
        return
    except jobs.JobBusy as exc:
        now = jobs.current()
        st.warning(busy_text(now, mine=now.name in mine) if now is not None else f"Not started: {exc}")
        return
    except jobs.JobError as exc:
        st.error(f"Not started: {exc}")
        return
    mine.append(run.name)
    if run.settings.get("corrections"):
        flash("info", f"Run {run.name} started: fine-tuning the active weights with the saved corrections.", "sidebar")
    elif choice is not None and choice.synthetic:
        flash("info", f"Run {run.name} started on the synthetic phantoms (not patient data).", "sidebar")
    else:
        flash("info", f"Run {run.name} started.", "sidebar")
    st.rerun()
