"""Train page: start, watch, stop and resume training runs; manage saved models."""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd
import streamlit as st

from core.common.columns import MetricKeys
from core.common.tables import drop_empty_columns
from core.data.splits import VAL_SHARE, VAL_USERS_MIN
from core.models.bert import ATTENTIONS
from core.models.checkpoint import CheckpointError
from core.models.registry import claim_model_name, import_model, importable_models, model_warning
from core.models.text import TextEncoderError
from core.reports import charts
from core.store import StoreError, slugify
from core.training.config import PRESETS, TrainConfig
from core.training.runs import (
    RunStatus,
    advance_queue,
    collect_run,
    list_runs,
    max_parallel_runs,
    queue_position,
    start_run,
    stop_run,
)
from ui.common import PENDING_MODEL, fmt_int, get_store, md_escape, require_dataset

log = logging.getLogger("reclens.train")

LOADED_MODEL = "loaded_model"  # (name, warnings) of the folder just loaded, shown once

PRESET_HELP = {
    "fast": "small model, six quick epochs: under a minute on the demo data (2 CPU cores)",
    "balanced": "longer histories, every next-item prefix, eight epochs: minutes",
    "quality": "largest model, longest histories, early stopping decides: best on a GPU",
}


def _eta(seconds: float | None) -> str:
    if seconds is None:
        return "estimating…"
    seconds = int(seconds)
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"


def start_section(dataset: str) -> None:
    """Pick a preset and a name, adjust the settings, and start (or queue) a run."""
    st.subheader("Start a run")
    preset, name = _preset_and_name(dataset)
    settings = _hyperparameters(preset)
    slug = slugify(name)
    replace, confirm = _replace_choice(dataset, slug)
    busy = _queue_note()
    label = "Queue training" if busy else "Start training"
    if not st.button(label, type="primary", disabled=not confirm, key="start_train"):
        return
    if _start(dataset, preset, settings, slug, replace):
        st.toast("Training queued" if busy else "Training started in the background")
        st.rerun()


def _preset_and_name(dataset: str) -> tuple[str, str]:
    cols = st.columns([1, 2])
    preset = cols[0].selectbox(
        "Preset",
        list(PRESETS),
        key="train_preset",
        help="; ".join(f"{k}: {v}" for k, v in PRESET_HELP.items()),
    )
    name = cols[1].text_input(
        "Model name",
        value=f"{dataset}-{preset}"[:63],
        key="model_name",
        help="lower-case letters, digits, - and _",
    )
    return preset, name


def _hyperparameters(preset: str) -> dict[str, Any]:
    """The preset's settings, each editable; returns keyword arguments of
    :meth:`TrainConfig.from_preset`."""
    defaults = TrainConfig.from_preset(preset)
    with st.expander("Hyperparameters"):
        return {**_shape_settings(defaults, preset), **_method_settings(defaults, preset)}


def _shape_settings(defaults: TrainConfig, preset: str) -> dict[str, Any]:
    """The model's size and the optimiser's steps: two rows of numbers."""
    h = st.columns(4)
    epochs = h[0].number_input("Epochs", 1, 1000, defaults.epochs, key=f"epochs_{preset}")
    max_len = h[1].number_input(
        "Max history length", 4, 512, defaults.max_len, key=f"maxlen_{preset}"
    )
    hidden = h[2].number_input(
        "Hidden size", 8, 1024, defaults.hidden, step=8, key=f"hidden_{preset}"
    )
    layers = h[3].number_input("Layers", 1, 12, defaults.layers, key=f"layers_{preset}")
    h = st.columns(4)
    heads = h[0].number_input("Attention heads", 1, 16, defaults.heads, key=f"heads_{preset}")
    batch = h[1].number_input("Batch size", 8, 4096, defaults.batch, key=f"batch_{preset}")
    lr = h[2].number_input(
        "Learning rate",
        1e-5,
        1e-1,
        defaults.lr,
        step=5e-4,
        format="%.4f",
        key=f"lr_{preset}",
    )
    mask_prob = h[3].number_input(
        "Mask probability",
        0.05,
        0.9,
        defaults.mask_prob,
        key=f"mask_{preset}",
        help="share of positions masked in cloze windows (bidirectional attention only)",
    )
    return {
        "epochs": int(epochs),
        "max_len": int(max_len),
        "hidden": int(hidden),
        "layers": int(layers),
        "heads": int(heads),
        "batch": int(batch),
        "lr": float(lr),
        "mask_prob": float(mask_prob),
    }


def _method_settings(defaults: TrainConfig, preset: str) -> dict[str, Any]:
    """How the model learns and what it reads: targets, attention, memory, types, text."""
    h = st.columns(4)
    next_items = h[0].number_input(
        "Next-item share",
        0.0,
        1.0,
        defaults.next_item_share,
        step=0.25,
        key=f"next_{preset}",
        help="share of every history's prefixes trained to predict their next item, "
        "on top of the masked windows: more learning per epoch, longer epochs "
        "(bidirectional attention only: prefix attention trains every prefix anyway)",
    )
    transitions = h[1].checkbox(
        "Transition memory",
        value=defaults.transitions,
        key=f"transitions_{preset}",
        help="after training, also count what followed each item in the training "
        "histories, with the Transformer's prediction as the prior; kept only when it "
        "ranks the validation targets better",
    )
    attention = h[3].selectbox(
        "Attention",
        list(ATTENTIONS),
        index=list(ATTENTIONS).index(defaults.attention),
        key=f"attention_{preset}",
        help="prefix: each item sees only the items before it, so one pass trains every "
        "next item of a history (fast, and the mask after a history reads it exactly as "
        "training did); bidirectional: BERT4Rec's cloze-masked windows, every position "
        "sees every other",
    )
    types = h[2].checkbox(
        "Event-type embeddings",
        key=f"types_{preset}",
        help="embed each event's type (view, cart, purchase, ...) next to the item, "
        "when the dataset has several types",
    )
    item_targets = st.columns(4)[3].checkbox(
        "Items predict too",
        value=defaults.item_targets,
        key=f"item_targets_{preset}",
        help="prefix attention only: each item's own state is also trained to name the "
        "item after it, from the same pass (as a left-to-right model's is); the mask "
        "token, which ranks, learns more per epoch",
    )
    text = st.radio(
        "Item text features",
        ["auto", "none"],
        horizontal=True,
        key=f"text_{preset}",
        help="auto: encode titles, categories and descriptions with the built-in "
        "all-MiniLM-L6-v2 when the dataset has them",
    )
    return {
        "next_item_share": float(next_items),
        "attention": attention,
        "item_targets": bool(item_targets),
        "text_encoder": text,
        "event_types": bool(types),
        "transitions": bool(transitions),
    }


def _replace_choice(dataset: str, slug: str) -> tuple[bool, bool]:
    """Whether the run replaces a model of that name, and whether it may start: a name
    taken on this dataset asks first, one taken elsewhere is refused."""
    replace, confirm = False, True
    try:
        claim_model_name(get_store(), dataset, slug)
    except StoreError as exc:
        if get_store().model_owner(slug) == dataset:
            replace = st.checkbox(
                f"A model called '{md_escape(slug)}' already exists on this dataset: replace it "
                "when the new one is saved",
                key="replace_model",
            )
            confirm = replace
        else:
            st.caption(":material/block: " + md_escape(str(exc)[:1].upper() + str(exc)[1:]) + ".")
            confirm = False
    return replace, confirm


def _queue_note() -> bool:
    """Whether a new run would wait in the queue (said in a caption when it would)."""
    states = [r.state for r in list_runs(get_store())]
    busy = states.count("running") >= max_parallel_runs() or "queued" in states
    if busy:
        st.caption(
            f":material/schedule: {states.count('running')} run(s) training, "
            f"{states.count('queued')} waiting: this one joins the queue and starts by itself "
            "when the runs before it end (one run at a time trains fastest on few CPU cores; "
            "RECLENS_MAX_RUNS allows more)."
        )
    return busy


def _start(dataset: str, preset: str, settings: dict[str, Any], slug: str, replace: bool) -> bool:
    """Start (or queue) the run; False, with the reason shown, when it was refused."""
    try:
        config = TrainConfig.from_preset(preset, **settings)
        if config.hidden % config.heads:
            raise ValueError("the hidden size must be a multiple of the number of heads")
        with st.spinner("Preparing the data (and item text vectors)…"):
            start_run(get_store(), dataset, config, name=slug, replace=replace)
    except (ValueError, StoreError, TextEncoderError) as exc:
        st.error(md_escape(str(exc)))
        return False
    return True


def _run_panel(run: RunStatus, runs: list[RunStatus]) -> None:
    job, last = run.job, run.last
    title = f"**{md_escape(job['name'])}** on {md_escape(job['dataset'])} · {run.state}"
    with st.container(border=True):
        st.markdown(title)
        if run.state == "queued":
            place = queue_position(runs, run)
            st.caption(
                f":material/schedule: Waiting: number {place} in the queue; it starts by "
                "itself when the run before it ends."
            )
            if st.button("Remove from the queue", key=f"unqueue_{run.run_id}"):
                stop_run(get_store(), run.run_id)
                st.rerun()
        elif run.state == "running":
            if last:
                done = ((last["epoch"] - 1) * last["steps_per_epoch"] + last["step"]) / max(
                    1, last["epochs"] * last["steps_per_epoch"]
                )
                speed = last.get("sequences_per_s")
                st.progress(
                    min(1.0, done),
                    text=f"epoch {last['epoch']}/{last['epochs']} · step {last['step']}/"
                    f"{last['steps_per_epoch']} · ETA {_eta(last.get('eta_s'))}"
                    + (f" · {speed:,.0f} sequences/s" if speed else ""),
                )
            else:
                st.progress(0.0, text="starting…")
            if st.button("Stop", key=f"stop_{run.run_id}"):
                stop_run(get_store(), run.run_id)
                st.rerun()
        elif run.state in ("stopped", "lost"):
            st.caption("Stopped before the end; it resumes from its last complete epoch.")
            if st.button("Resume", key=f"resume_{run.run_id}"):
                start_run(
                    get_store(), job["dataset"], TrainConfig(**job["config"]), resume_run=run.run_id
                )
                st.rerun()
        elif run.state == "failed":
            st.error(md_escape(run.error or "the run failed"))
        elif run.state == "finished" and (model := collect_run(get_store(), run)) is None:
            st.warning(_not_registered(job))
        elif run.state == "finished":
            record = run.result
            metrics = record.metrics
            st.success(
                f"Saved model {md_escape(job['name'])}: validation NDCG@10 "
                f"{metrics[MetricKeys.NDCG]:.4f}, HR@10 {metrics[MetricKeys.HR]:.4f} "
                f"(best epoch {record.best_epoch}, {record.seconds or 0:.0f} s)."
                + (
                    f" With its transition memory; the Transformer alone scored "
                    f"{record.without_memory:.4f}."
                    if record.memory_kept and record.without_memory is not None
                    else ""
                )
            )
            if st.button("Use this model", key=f"use_{run.run_id}"):
                st.session_state[PENDING_MODEL] = model.name
                st.rerun()
        if run.epochs:
            st.plotly_chart(
                charts.training_curves(
                    run.epochs,
                    "Loss and validation NDCG@10",
                    run.result.memory_ndcg if run.state == "finished" else None,
                ),
                key=f"curve_{run.run_id}_{len(run.epochs)}",
            )


def _not_registered(job: dict) -> str:
    """Why a finished run's model is not registered (see core.training.runs.collect_run)."""
    folder = md_escape(job["out"])
    if get_store().find_dataset(job["dataset"]) is None:
        return (
            f"Finished, but its dataset {md_escape(job['dataset'])} was deleted while it "
            f"trained, so the model is not registered (its folder: {folder})."
        )
    return (
        f"Finished, but its folder {folder} no longer holds its model (a later run of the "
        "same name saved over it, or the folder was removed), so it is not registered."
    )


@st.fragment(run_every=2)
def runs_section() -> None:
    """Live view of the latest runs (polls the run folders every 2 s)."""
    advance_queue(get_store())  # a worker starts the next run as it ends; a killed one cannot
    every = list_runs(get_store())
    runs = every[:5] + [r for r in every[5:] if r.state in ("queued", "running")]
    running = {r.run_id for r in runs if r.state == "running"}
    was_running = st.session_state.get("runs_running", set())
    st.session_state["runs_running"] = running
    if was_running - running:
        # A run just ended: refresh the whole page (the start form's warning, the
        # saved models, the sidebar's model list), not only this fragment.
        for run in runs:
            if run.run_id in was_running:
                collect_run(get_store(), run)
        st.rerun(scope="app")
    st.subheader("Runs")
    if not runs:
        st.info("No training runs yet: start one above.")
        return
    for run in runs:
        _run_panel(run, every)


def models_section(dataset: str) -> None:
    st.subheader("Saved models")
    models = get_store().list_models()
    if models:
        st.dataframe(
            drop_empty_columns(
                pd.DataFrame(
                    [
                        {
                            "name": m.name,
                            "dataset": m.dataset,
                            "val NDCG@10": m.metrics.get(MetricKeys.NDCG),
                            "val HR@10": m.metrics.get(MetricKeys.HR),
                            "preset": m.config.get("preset"),
                            "created": m.created,
                            "warning": model_warning(get_store(), m) or "",
                        }
                        for m in models
                    ]
                )
            ),
            hide_index=True,
        )
    else:
        st.info("No saved models yet.")
    with st.expander("Load a saved model folder"):
        _load_section()


def _load_section() -> None:
    """Register a model folder copied into the app's model home (never an arbitrary path)."""
    store = get_store()
    folders = importable_models(store)
    st.caption(
        "Copy a RecLens model folder (config.json, model.safetensors, items.json, "
        "training.json) into the app's `models` folder, beside its database, to load it "
        "here; `python -m core` loads one from any path."
    )
    if not folders:
        st.info("No unregistered model folder in the app's models folder.")
        return
    cols = st.columns([3, 1], vertical_alignment="bottom")
    folder = cols[0].selectbox("Model folder", folders, key="load_dir")
    if not cols[1].button("Load", key="load_model"):
        return
    try:
        model, warnings = import_model(store, folder)
    except (CheckpointError, StoreError) as exc:
        st.error(md_escape(str(exc)))
        return
    st.session_state[PENDING_MODEL] = model.name
    st.session_state[LOADED_MODEL] = (model.name, warnings)
    st.rerun()


info = require_dataset()
st.title("Train")
validating = (
    "every user"
    if info.n_users <= VAL_USERS_MIN
    else f"a fixed {VAL_SHARE:.0%} of users (at least {VAL_USERS_MIN:,}); the rest train on it"
)
st.caption(
    f"A BERT4Rec-style model on **{info.name}** ({fmt_int(info.n_users)} users, "
    f"{fmt_int(info.n_items)} items): leave-one-out. The last item of every user is never "
    f"seen in training; the one before it is the validation target of {validating}. "
    "Validation NDCG@10 is full-ranking."
)
if LOADED_MODEL in st.session_state:
    loaded, warnings = st.session_state.pop(LOADED_MODEL)
    st.success(f"Loaded {md_escape(loaded)}; it is now the active model.")
    for warning in warnings:
        st.warning(md_escape(warning))
start_section(info.name)
runs_section()
models_section(info.name)
