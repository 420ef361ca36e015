"""Retraining in the UI: the Train page's pieces, and the words and buttons it shares with the sidebar control.

The state of a run lives on disk (:mod:`lggdemo.jobs`), never in ``st.session_state``: a closed tab does
not stop the trainer, and any tab -- or the same one reopened -- shows the run. While a run is in
progress the status is drawn inside ``st.fragment(run_every=...)``, so only that small part reruns
every second or two and the rest of the page stays responsive. When the run ends the fragment asks for
one full rerun, so pages that cache models by ``weights.active_weights().version`` pick up new weights.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import pandas as pd
import streamlit as st

from lggdemo import jobs
from lggdemo.inference.grade import grade_verdict
from lggdemo.models import weights
from lggdemo.models.card import ModelCard, card_metric
from lggdemo.ui.access import can_manage, locked_hint
from lggdemo.ui.train.finetune_compare import render_fine_tune_compare
from lggdemo.viz.reliability import reliability_figure

#: Seconds between refreshes of the Train page's curves and log.
PAGE_REFRESH_S = 2.0
#: After Cancel, how long to wait before offering to kill the trainer outright.
FORCE_AFTER_S = 20.0
_FLASH = "lgg_train_flash_"


# --- words -------------------------------------------------------------------------------------------


def duration(seconds: float | None) -> str:
    """``75`` -> ``1 min 15 s``: how people read an ETA."""
    if seconds is None:
        return "—"
    s = int(round(max(0.0, seconds)))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {(s % 3600) // 60:02d} min"


def describe_progress(run: jobs.RunInfo, now: float | None = None) -> str:
    """One line for the sidebar: model, epoch x/y, current loss, ETA (or what is happening before that)."""
    p = run.progress
    if run.cancel_requested:
        return "Cancelling — the trainer stops after the current step…"
    if p.events == 0:
        return "Starting the trainer…"
    if p.model is None:
        return "Preparing the data…"
    name = p.model.capitalize() + (f" ({p.phase})" if p.phase and p.phase != "final" else "")
    parts = [name, f"epoch {max(p.epoch, 1)}/{p.epochs}"]
    if p.steps:
        parts.append(f"step {p.step}/{p.steps}")
    if p.loss is not None:
        parts.append(f"loss {p.loss:.3f}")
    eta = p.eta_now(now)
    if eta is not None:
        more = [m for m in p.models[p.models.index(p.model) + 1 :]] if p.model in p.models else []
        parts.append(f"ETA {duration(eta)}" + (f" for {p.model}, then {', '.join(more)}" if more else ""))
    return " · ".join(parts)


def outcome_text(run: jobs.RunInfo) -> str:
    took = f" after {duration(run.seconds)}" if run.seconds else ""
    if run.state == "succeeded" and run.activated:
        return f"Run {run.name} finished{took}: its weights are now active."
    if run.state == "cancelled":
        return f"Run {run.name} was cancelled{took}. The active weights are unchanged."
    return f"Run {run.name}: {run.message}"


def flash(kind: str, text: str, where: str = "page") -> None:
    """A message that survives the ``st.rerun`` an action triggers (it is about this tab only)."""
    st.session_state[_FLASH + where] = (kind, text)


def show_flash(where: str = "page") -> None:
    kind, text = st.session_state.pop(_FLASH + where, (None, None))
    if kind:
        getattr(st, kind)(text)


# --- shared by the sidebar and the Train page -------------------------------------------------------


def cancel_buttons(run: jobs.RunInfo, key: str) -> jobs.RunInfo:
    """Cancel (SIGTERM), and later Force stop (SIGKILL); returns the run as it is after the click.

    Only for whoever may manage runs (see :mod:`lggdemo.access`): visitors of a read-only server see none.
    """
    if not can_manage():
        return run
    if run.cancel_requested is None:
        if st.button("Cancel training", key=f"lgg_cancel_{key}", help="Stops after the current step."):
            try:
                return jobs.cancel()
            except jobs.JobError as exc:
                st.warning(str(exc))
    elif time.time() - run.cancel_requested > FORCE_AFTER_S:
        if st.button("Force stop", key=f"lgg_force_{key}", help="Kill the trainer now (its run is discarded)."):
            try:
                return jobs.cancel(force=True)
            except jobs.JobError as exc:
                st.warning(str(exc))
    return run


# --- Train page pieces -------------------------------------------------------------------------------


def curves_figure(progress: jobs.RunProgress) -> Any:
    """Loss as it falls (every reported step) and validation metrics per epoch, one colour per model."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, subplot_titles=("Training loss", "Validation metrics"))
    palette = {"segmentation": "#1f77b4", "grade": "#d62728"}
    for model in progress.models or sorted({h.get("model", "") for h in progress.history}):
        steps = _trained_fits([s for s in progress.steps_history if s["model"] == model], "x")
        if steps:
            fig.add_trace(go.Scatter(x=[x for x, _ in steps], y=[s["loss"] for _, s in steps], mode="lines",
                                     name=f"{model} (steps)", line={"color": palette.get(model), "width": 1},
                                     opacity=0.5), row=1, col=1)  # fmt: skip
        epochs = _trained_fits([h for h in progress.history if h.get("model") == model], "epoch")
        if epochs:
            fig.add_trace(go.Scatter(x=[x for x, _ in epochs], y=[h.get("train_loss") for _, h in epochs],
                                     mode="lines+markers", name=f"{model} (epoch mean)",
                                     line={"color": palette.get(model)}), row=1, col=1)  # fmt: skip
        metrics = sorted({k for _, h in epochs for k, v in (h.get("val") or {}).items() if isinstance(v, (int, float))})
        for i, metric in enumerate(metrics):
            pts = [
                (x, h["val"][metric])
                for x, h in epochs
                if isinstance((h.get("val") or {}).get(metric), (int, float))
            ]
            fig.add_trace(go.Scatter(x=[p[0] for p in pts], y=[p[1] for p in pts], mode="lines+markers",
                                     name=f"{model} {metric}", line={"color": palette.get(model),
                                                                     "dash": ("solid", "dot", "dash")[i % 3]}),
                          row=1, col=2)  # fmt: skip
    fig.update_xaxes(title_text="epoch", row=1, col=1)
    fig.update_xaxes(title_text="epoch", row=1, col=2)
    fig.update_layout(height=340, margin={"l": 40, "r": 10, "t": 40, "b": 40}, legend={"orientation": "h", "y": -0.25})
    return fig


def _trained_fits(records: list[dict[str, Any]], key: str) -> list[tuple[float, dict[str, Any]]]:
    """(x, record) of the fits that make the model (cross-validation fits left out), one stage after another:
    a run's second U-Net stage (``refine``) counts its epochs from 1 again, so it is drawn after the first."""
    out: list[tuple[float, dict[str, Any]]] = []
    offset, span, phase = 0.0, 0.0, None
    for r in records:
        p = r.get("phase")
        if isinstance(p, str) and p.startswith("cv "):
            continue
        if p != phase:
            offset, span, phase = offset + span, 0.0, p
        span = max(span, float(r[key]))
        out.append((offset + float(r[key]), r))
    return out


def _metric_value(value: Any) -> float | None:
    if isinstance(value, dict):
        value = value.get("value")
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def flat_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """``{"segmentation": {"dice": {"value": 0.8, ...}}}`` -> ``{"segmentation dice": 0.8}``."""
    out: dict[str, float] = {}
    for model, values in metrics.items():
        if isinstance(values, dict):
            for name, value in values.items():
                v = _metric_value(value)
                if v is not None:
                    out[f"{model} {name}"] = v
    return out


def history_table(runs: list[jobs.RunInfo]) -> pd.DataFrame:
    """One row per run: settings as run (the card's, when there is one), outcome, metrics."""
    rows = []
    for run in runs:
        card = run.card() if run.state != "running" else None
        cfg = card.train_config if card else {}
        s = {**{k: cfg.get(k) for k in ("task", "preset", "device")}, **{k: v for k, v in run.settings.items() if v}}
        rows.append({
            "run": run.name,
            "started": dt.datetime.fromtimestamp(run.created).strftime("%Y-%m-%d %H:%M:%S"),
            "state": run.state + (" · active" if run.active else ""),
            "task": jobs.TASKS.get(str(s.get("task")), s.get("task") or "—"),
            "preset": s.get("preset") or "—",
            "epochs": str(s.get("epochs") or cfg.get("seg_epochs") or "—"),
            "image size": str(s.get("image_size") or cfg.get("image_size") or "—"),
            "device": (card.device if card else None) or s.get("device") or "—",
            "duration": duration(run.seconds) if run.seconds else "",
            "activatable": run.complete,
            **flat_metrics(run.metrics),
        })  # fmt: skip
    return pd.DataFrame(rows)


def processes_text(card: ModelCard) -> str | None:
    """How many processes trained a card's models, when torchrun ran several (a plain run says nothing)."""
    if card.world_size <= 1:
        return None
    d = card.distributed
    return (f"Trained by {card.world_size} processes (torchrun, {d.get('backend') or '?'} backend; "
            f"{d.get('per_rank_batch_size', '?')} slices per process per step).")


def render_grade_reliability(card: ModelCard) -> None:
    """The grade's reliability diagram (model and age alone, out of fold) and one sentence: why a number is or is
    not shown on Predict (``inference.grade.grade_verdict``, the rule Predict itself follows)."""
    oof = card.grade.out_of_fold
    verdict = grade_verdict(card)
    if not oof:
        st.caption(f"**Grade:** {verdict.reason or verdict.sentence}")
        return
    series = {"model": (oof.get("model") or {}).get("reliability_bins") or [],
              "age alone": (oof.get("age_only") or {}).get("reliability_bins") or []}
    st.plotly_chart(reliability_figure(series), width="stretch", key="lgg_grade_reliability")
    st.caption(f"**Grade:** {verdict.reason}")


def render_active_weights() -> None:
    """Which weights the app uses now, and the button that always brings the bundled ones back."""
    active = weights.active_weights()
    bundled = active.directory.resolve() == weights.BUNDLED_DIR.resolve()
    try:
        card = weights.load_card(active.directory)
    except weights.WeightsError:
        card = None
    where = "the bundled weights (`weights/`)" if bundled else f"run **{active.directory.name}**"
    st.markdown(f"**Active weights:** {where}" + (f" — version `{card.version}`" if card else ""))
    if card is None:
        st.warning("No usable model card in the active weights folder: Predict cannot run until weights are trained "
                   "or restored.")  # fmt: skip
    else:
        if text := processes_text(card):
            st.caption(text)
        values = flat_metrics(card.metrics())
        if values:
            st.caption(" · ".join(f"{k}: {v:.3f}" for k, v in values.items()))
        if cv := card_metric(card, "segmentation", "per_volume_dice_mean", cross_validated=True):
            # the bundled recipe trains on every patient: this is then its only mask estimate
            st.caption(f"**Masks:** per-volume Dice {cv.text()} patients, cross-validated (this recipe's fold models, "
                       "each patient scored by one that never trained on it).")
        if card.has_model("grade"):
            render_grade_reliability(card)
    if st.button("Restore bundled weights", disabled=bundled or not can_manage(), key="lgg_restore_bundled",
                 help="Point the app back at the weights shipped in weights/.") and can_manage():  # fmt: skip
        try:
            jobs.restore_bundled()
        except jobs.JobError as exc:
            st.error(str(exc))
        else:
            if not weights.is_complete(weights.BUNDLED_DIR):
                flash("warning", "Restored the bundled weights, but weights/ is missing or incomplete.")
            else:
                flash("success", "The bundled weights are active again.")
            st.rerun()


def render_run_panel(run: jobs.RunInfo, *, live: bool) -> None:
    """Progress, curves and the log tail of one run (refreshed by the caller's fragment while it runs)."""
    if live:
        status = st.container()
        run = cancel_buttons(run, "page")
        status.progress(run.progress.fraction, text=f"{run.progress.fraction:.0%} — {describe_progress(run)}")
    else:
        _outcome_banner(run)
    p = run.progress
    started = p.started or {}
    facts = [f"task {jobs.TASKS.get(str(run.settings.get('task')), '?')}", f"preset {run.settings.get('preset')}"]
    if started.get("device_name") or started.get("device"):
        facts.append(f"device {started.get('device_name') or started.get('device')}")
    if isinstance(started.get("patients"), dict):
        facts.append("patients " + ", ".join(f"{k} {v}" for k, v in started["patients"].items()))
    st.caption(" · ".join(facts))
    if p.history or p.steps_history:
        st.plotly_chart(curves_figure(p), width="stretch", key=f"lgg_curves_{run.name}_{'live' if live else 'done'}")
    elif live:
        st.caption("Curves appear with the first training steps.")
    for note in p.notes[-3:]:
        st.caption(f"ℹ️ {note}")
    tail = jobs.log_tail(run, lines=15)
    st.markdown("**Log (last lines)**")
    st.code(tail or "(empty)", language=None)


def _outcome_banner(run: jobs.RunInfo) -> None:
    text = outcome_text(run)
    if run.state == "succeeded":
        (st.success if run.activated else st.warning)(text)
    elif run.state == "cancelled":
        st.info(text)
    else:
        st.error(text)


def _live_page_panel() -> None:
    run = jobs.current()
    if run is None:
        st.rerun(scope="app")
        return
    render_run_panel(run, live=True)


def render_current_run() -> None:
    """The run in progress, live; otherwise the latest run as it ended."""
    run = jobs.current()
    if run is not None:
        st.subheader(f"Run {run.name} (in progress)")
        st.fragment(run_every=PAGE_REFRESH_S)(_live_page_panel)()
        return
    last = jobs.latest_run()
    if last is None:
        st.info("No run yet." + (" Open **Retrain models** in the sidebar to start one." if can_manage() else ""))
        return
    st.subheader(f"Latest run: {last.name}")
    render_run_panel(last, live=False)


def render_history() -> None:
    """Past runs with their metrics; details, activation and deletion of the one picked."""
    runs = jobs.list_runs()
    if not runs:
        return
    st.dataframe(history_table(runs), hide_index=True, width="stretch")
    names = [r.name for r in runs]
    picked = st.selectbox("Run details", names, key="lgg_run_pick")
    run = next(r for r in runs if r.name == picked)
    c1, c2 = st.columns([1, 1])
    manage = can_manage()
    can_activate = run.complete and not run.active and not run.running and manage
    if c1.button("Activate this run", disabled=not can_activate, key="lgg_activate",
                 help="Use this run's weights on Predict." if run.complete else
                 "Only a complete run (both models and a matching model card) can be activated.") and manage:  # fmt: skip
        try:
            jobs.activate(run.name)
        except jobs.JobError as exc:
            st.error(str(exc))
        else:
            flash("success", f"Run {run.name} is now active.")
            st.rerun()
    with c2:
        confirm = st.checkbox("Confirm deletion", key=f"lgg_delete_ok_{run.name}",
                              disabled=run.active or run.running or not manage)
        if st.button("Delete this run", disabled=not (confirm and manage), key="lgg_delete") and manage:
            try:
                jobs.delete_run(run.name)
            except jobs.JobError as exc:
                st.error(str(exc))
            else:
                flash("success", f"Run {run.name} was deleted.")
                st.rerun()
    if not run.complete and run.state != "running":
        st.caption("This run's folder is not a complete weights folder, so it cannot be activated.")
    render_fine_tune_compare(run)
    card = run.card()
    with st.expander("Model card", expanded=False):
        if card:
            st.json(card.to_dict(), expanded=1)
        else:
            st.caption("No model card (the run did not finish).")
    with st.expander("Log", expanded=False):
        st.code(jobs.log_tail(run, lines=60) or "(empty)", language=None)


def render_train_page() -> None:
    """Everything below the Train page's title (pages/train.py stays a few lines)."""
    show_flash()
    if not can_manage():
        st.info(locked_hint())
    render_active_weights()
    st.divider()
    render_current_run()
    st.divider()
    st.subheader("History")
    render_history()
