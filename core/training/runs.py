"""Training jobs: from a stored dataset to a registered model, in-process or in a worker.

In-process (:func:`train_dataset`) is what the CLI uses. The app starts a
background worker process instead (:func:`start_run`): the app process, the only
writer of the database, hands the worker its inputs as files in a run folder
(sequences as ``.npz``, text vectors as ``.npy``, settings as JSON); the worker
never opens the database. It reports progress by appending JSON lines to
``progress.jsonl``, stops when a ``stop`` file appears, checkpoints every epoch
(so a stopped or killed run resumes), and finally writes the model directory and
``result.json``; the app then registers the model (:func:`collect_run`). Model names
and the model home are :mod:`core.models.registry`'s.

A run with ``nproc`` > 1 starts its worker under ``torchrun`` (data-parallel, see
:mod:`core.training.loop`); rank 0 writes the progress, checkpoints and the model. For
several machines, start ``torchrun --nnodes ... -m core.training.runs RUN_DIR`` on each
one over a shared run folder.

Workers run with ``OMP_WAIT_POLICY=PASSIVE``: OpenMP threads that spin while
waiting make a busy machine (the app, a second run, a test suite) many times
slower, for little gain on an idle one.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from core.common.columns import MetricKeys
from core.data.sequences import Sequences, dataset_sequences
from core.data.splits import validation_users
from core.models.checkpoint import CheckpointError, check_replaceable, read_training, save_model
from core.models.record import TrainingRecord
from core.models.registry import claim_model_name, data_home, free_model_name, model_home
from core.models.text import item_text_vectors
from core.store import ModelInfo, Store, StoreError, validate_dataset_name
from core.training.config import TrainConfig
from core.training.loop import (
    ProgressCallback,
    StopTraining,
    TrainResult,
    train,
)

# Workers run ``python -m core.training.runs`` from the repository root, where ``core`` is.
REPO_ROOT = Path(__file__).resolve().parents[2]


def default_model_name(dataset: str, config: TrainConfig) -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return f"{dataset}-{config.preset}-{stamp}"[:63]


def train_dataset(
    store: Store,
    dataset: str,
    config: TrainConfig,
    *,
    name: str | None = None,
    out_dir: str | Path | None = None,
    resume: bool = False,
    replace: bool = False,
    callback: ProgressCallback | None = None,
    text_progress=None,
) -> tuple[ModelInfo, TrainResult]:
    """Train on a stored dataset in this process, save the model and register it.

    A taken ``name`` is refused before training
    (:func:`core.models.registry.claim_model_name`), unless ``replace`` is set and it is
    a model of the same dataset; ``resume`` continues a run under the name it had.
    """
    info = store.get_dataset(dataset)
    name = claim_model_name(
        store,
        info.name,
        name or default_model_name(dataset, config),
        out_dir=out_dir,
        replace=replace or resume,
    )
    out = Path(out_dir) if out_dir else model_home(store) / name
    check_replaceable(out)  # before the training, not after it
    seqs = dataset_sequences(store, dataset, config.event_types)
    vectors, encoder = item_text_vectors(
        store, info.dataset_id, list(seqs.item_ids), config.text_encoder, text_progress
    )
    run_dir = data_home(store) / "runs" / f"cli-{name}"
    result = train(seqs, config, run_dir, text_vectors=vectors, resume=resume, callback=callback)
    training = training_record(name, info.name, info.fingerprint, seqs, result, encoder)
    save_model(out, result.model, seqs.item_ids, training)
    model = store.register_model(
        name, info.name, str(out), config.to_dict(), training.metrics, replace=replace or resume
    )
    return model, result


def training_record(
    name: str,
    dataset: str,
    fingerprint: str,
    seqs: Sequences,
    result: TrainResult,
    encoder: str | None,
) -> TrainingRecord:
    """What ``training.json`` of a model directory holds (``saved`` is set by the save)."""
    return TrainingRecord(
        name=name,
        dataset=dataset,
        dataset_fingerprint=fingerprint,
        users=seqs.n_users,
        validation_users=len(validation_users(seqs.lengths)),
        config=result.config.to_dict(),
        loss_mode=result.config.loss_mode(seqs.n_items),
        event_types=list(seqs.type_names) if result.model_config.n_event_types else [],
        text_encoder=encoder,
        history=result.history,
        epochs=len(result.history),
        best_epoch=result.best_epoch,
        seconds=round(result.seconds, 2),
        stopped_early=result.stopped_early,
        interrupted=result.interrupted,
        metrics={MetricKeys.NDCG: result.best_val_ndcg10, MetricKeys.HR: result.best_val_hr10},
        transitions={k: v for k, v in result.transitions.items() if k != "message"},
    )


# --------------------------------------------------------------------------- background runs


@dataclass
class RunStatus:
    """What the app knows about a background run, read from its folder."""

    run_id: str
    folder: Path
    job: dict[str, Any]
    progress: list[dict[str, Any]]
    state: str  # "queued", "running", "finished", "stopped", "failed", "lost"
    result: TrainingRecord | None  # the record of a run that ended (its result.json)
    error: str | None
    queued: float | None = None  # when it joined the queue (state "queued")

    @property
    def last(self) -> dict[str, Any] | None:
        return self.progress[-1] if self.progress else None

    @property
    def epochs(self) -> list[dict[str, Any]]:
        return [p for p in self.progress if p["phase"] == "validate"]


def runs_dir(store: Store) -> Path:
    return data_home(store) / "runs"


def start_run(
    store: Store,
    dataset: str,
    config: TrainConfig,
    name: str | None = None,
    resume_run: str | None = None,
    nproc: int = 1,
    replace: bool = False,
) -> str:
    """Start a background training process; returns its run id.

    ``nproc`` > 1 trains data-parallel in that many processes (``torchrun``).

    With ``resume_run`` the worker continues that run from its last checkpoint.
    """
    if resume_run:
        folder = runs_dir(store) / resume_run
        (folder / "stop").unlink(missing_ok=True)
        (folder / "error.txt").unlink(missing_ok=True)
        _enqueue(folder, resume=True)
        return resume_run
    folder = prepare_run(store, dataset, config, name, nproc=nproc, replace=replace)
    _enqueue(folder, resume=False)
    return folder.name


# A run waits in the queue (state "queued") while max_parallel_runs() others train: on
# a machine with few cores two runs at once take longer than one after the other.
QUEUED = "queued"


def max_parallel_runs() -> int:
    """How many background runs may train at once: ``RECLENS_MAX_RUNS``, default 1."""
    raw = os.environ.get("RECLENS_MAX_RUNS", "").strip()
    return max(1, int(raw)) if raw.isdigit() else 1


def _enqueue(folder: Path, resume: bool) -> None:
    """Put a prepared run in the queue and start it at once when a slot is free."""
    (folder / QUEUED).write_text(json.dumps({"resume": resume, "since": time.time()}))
    _advance(folder.parent)


def advance_queue(store: Store) -> list[str]:
    """Start queued runs, oldest first, while fewer than :func:`max_parallel_runs`
    train; returns the ids started. A worker calls this as it exits, and the Train page
    on every poll (a killed worker cannot)."""
    return _advance(runs_dir(store))


def _advance(runs: Path, exiting: str | None = None) -> list[str]:
    """:func:`advance_queue` on the runs folder ``runs``; ``exiting`` is the run of a
    worker that is ending (still alive, but no longer training)."""
    if not runs.is_dir():
        return []
    started: list[str] = []
    with open(runs / ".queue.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one process at a time counts and starts runs
        statuses = _list_runs(runs)
        training = sum(r.state == "running" and r.run_id != exiting for r in statuses)
        waiting = sorted((r for r in statuses if r.state == "queued"), key=lambda r: r.queued)
        for run in waiting[: max(0, max_parallel_runs() - training)]:
            try:
                marker = json.loads((run.folder / QUEUED).read_text())
            except (OSError, ValueError):  # taken out of the queue meanwhile
                continue
            _spawn(run.folder, resume=bool(marker.get("resume")), nproc=run.job.get("nproc", 1))
            (run.folder / QUEUED).unlink()
            started.append(run.run_id)
    return started


def prepare_run(
    store: Store,
    dataset: str,
    config: TrainConfig,
    name: str | None = None,
    run_id: str | None = None,
    nproc: int = 1,
    out_dir: str | Path | None = None,
    replace: bool = False,
) -> Path:
    """Write a run folder holding everything a worker needs; returns the folder.

    ``name`` and ``replace`` as in :func:`train_dataset`."""
    info = store.get_dataset(dataset)
    name = claim_model_name(
        store,
        info.name,
        name or default_model_name(dataset, config),
        out_dir=out_dir,
        replace=replace,
    )
    out = Path(out_dir) if out_dir else model_home(store) / name
    check_replaceable(out)
    now = time.time()  # ids sort by creation, to the millisecond: the page lists newest first
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now)) + f"{now % 1:.3f}"[1:]
    run_id = run_id or f"{stamp}-{uuid.uuid4().hex[:6]}"
    folder = runs_dir(store) / run_id
    folder.mkdir(parents=True, exist_ok=True)
    for stale in ("stop", "error.txt", "result.json", "stopped", "progress.jsonl"):
        (folder / stale).unlink(missing_ok=True)
    seqs = dataset_sequences(store, dataset, config.event_types)
    types = {} if seqs.types is None else {"types": seqs.types, "type_names": seqs.type_names}
    np.savez(
        folder / "sequences.npz",
        user_ids=seqs.user_ids.astype(str),
        item_ids=seqs.item_ids.astype(str),
        offsets=seqs.offsets,
        items=seqs.items,
        **types,
    )
    vectors, encoder = item_text_vectors(
        store, info.dataset_id, list(seqs.item_ids), config.text_encoder
    )
    if vectors is not None:
        np.save(folder / "text_vectors.npy", vectors.numpy())
    job = {
        "dataset": dataset,
        "fingerprint": info.fingerprint,
        "name": name,
        "config": config.to_dict(),
        "out": str(out),
        "replace": replace,
        "text_encoder": encoder,
        "nproc": nproc,
        "created": time.time(),
    }
    (folder / "job.json").write_text(json.dumps(job))
    return folder


def train_distributed(
    store: Store,
    dataset: str,
    config: TrainConfig,
    *,
    nproc: int,
    name: str | None = None,
    out_dir: str | Path | None = None,
    resume: bool = False,
    replace: bool = False,
) -> tuple[ModelInfo, TrainingRecord]:
    """Train in ``nproc`` data-parallel processes (``torchrun``), wait, register the model.

    Returns:
        The registered model and its training record (``training.json``).
    """
    name = validate_dataset_name(name or default_model_name(dataset, config))
    folder = runs_dir(store) / f"cli-{name}"
    if not (resume and (folder / "job.json").exists()):
        prepare_run(store, dataset, config, name, folder.name, nproc, out_dir, replace)
    with open(folder / "worker.log", "ab") as log:
        done = subprocess.run(
            worker_command(folder, resume, nproc),
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
            cwd=REPO_ROOT,
            env=worker_env(),
            check=False,
        )
    status = run_status(store, folder.name)
    model = collect_run(store, status)
    if model is None:
        why = status.error or f"the workers exited with status {done.returncode}"
        raise StoreError(f"distributed training did not finish: {why} (run folder {folder})")
    return model, status.result


def worker_command(folder: Path, resume: bool = False, nproc: int = 1) -> list[str]:
    """The command line of a run's worker (under ``torchrun`` when ``nproc`` > 1)."""
    launcher = [sys.executable]
    if nproc > 1:
        launcher += ["-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}"]
    return launcher + ["-m", "core.training.runs", str(folder)] + (["--resume"] if resume else [])


def worker_env() -> dict[str, str]:
    """The environment of a worker: this one, with passive OpenMP waiting."""
    return {**os.environ, "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}


def _spawn(folder: Path, resume: bool, nproc: int = 1) -> None:
    log = open(folder / "worker.log", "ab")  # noqa: SIM115 - handed to the child
    proc = subprocess.Popen(
        worker_command(folder, resume, nproc),
        stdout=log,
        stderr=log,
        stdin=subprocess.DEVNULL,
        cwd=REPO_ROOT,
        env=worker_env(),
        start_new_session=True,
    )
    (folder / "pid").write_text(str(proc.pid))


def stop_run(store: Store, run_id: str) -> None:
    """Ask a run to stop after its current step group, or take it out of the queue (it
    stays resumable either way)."""
    folder = runs_dir(store) / run_id
    (folder / "stop").write_text("stop")
    (folder / QUEUED).unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    try:  # a finished child not yet reaped is a zombie: not alive
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split()[2] != "Z"
    except OSError:
        return True


def run_status(store: Store, run_id: str) -> RunStatus:
    """Read a run's folder: job, progress, state."""
    return _run_status(runs_dir(store) / run_id)


def _run_status(folder: Path) -> RunStatus:
    run_id = folder.name
    job = json.loads((folder / "job.json").read_text())
    progress = []
    if (folder / "progress.jsonl").exists():
        for line in (folder / "progress.jsonl").read_text().splitlines():
            try:
                progress.append(json.loads(line))
            except json.JSONDecodeError:
                break  # a line being written
    result = None
    if (folder / "result.json").exists():
        result = TrainingRecord.from_dict(json.loads((folder / "result.json").read_text()))
    error = (folder / "error.txt").read_text() if (folder / "error.txt").exists() else None
    pid = int((folder / "pid").read_text()) if (folder / "pid").exists() else 0
    queued = _queued_since(folder)
    if result:
        state = "stopped" if result.interrupted else "finished"
    elif error:
        state = "failed"
    elif pid and _alive(pid):
        state = "running"
    elif queued is not None:
        state = "queued"
    elif (folder / "stop").exists():
        state = "stopped"
    else:
        state = "lost"
    return RunStatus(run_id, folder, job, progress, state, result, error, queued)


def _queued_since(folder: Path) -> float | None:
    """When the run joined the queue, or None when it is not queued."""
    try:
        return float(json.loads((folder / QUEUED).read_text())["since"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def list_runs(store: Store) -> list[RunStatus]:
    """Every run folder, newest first."""
    return _list_runs(runs_dir(store))


def _list_runs(folder: Path) -> list[RunStatus]:
    if not folder.exists():
        return []
    ids = sorted((p.name for p in folder.iterdir() if (p / "job.json").exists()), reverse=True)
    return [_run_status(folder / run_id) for run_id in ids]


def queue_position(runs: list[RunStatus], run: RunStatus) -> int:
    """1 for the next queued run to start, 2 for the one after it..."""
    waiting = sorted((r for r in runs if r.state == "queued"), key=lambda r: r.queued or 0)
    return 1 + [r.run_id for r in waiting].index(run.run_id)


def collect_run(store: Store, status: RunStatus) -> ModelInfo | None:
    """Register a finished run's model (once); None while it is not finished, when its
    dataset was deleted while it trained, or when its folder no longer holds its model (a
    later run replaced it there, or the folder is gone)."""
    if not status.result or status.result.interrupted:
        return None
    name = status.job["name"]
    existing = store.find_model(name)
    if (
        existing
        and existing.path == status.job["out"]
        and existing.metrics == status.result.metrics
    ):
        return existing  # collected before (a replaced model shares the path, not these)
    if store.find_dataset(status.job["dataset"]) is None:
        return None  # its dataset was deleted while it trained: nothing to register it on
    on_disk = read_training(status.job["out"])
    if on_disk is None or on_disk.metrics != status.result.metrics:
        return None  # another run's model is in the folder now: nothing of this one to register
    replace = bool(status.job.get("replace"))
    if store.model_owner(name) is not None and not replace:
        name = free_model_name(store, name)  # registered by someone else while it trained
    return store.register_model(
        name,
        status.job["dataset"],
        status.job["out"],
        status.job["config"],
        status.result.metrics,
        replace=replace,
    )


def _worker(folder: Path, resume: bool) -> int:
    """The body of a background run (``python -m core.training.runs RUN_DIR``)."""
    job = json.loads((folder / "job.json").read_text())
    data = np.load(folder / "sequences.npz", allow_pickle=False)
    seqs = Sequences(
        data["user_ids"].astype(object),
        data["item_ids"].astype(object),
        data["offsets"],
        data["items"],
        data["types"] if "types" in data else None,
        tuple(str(t) for t in data["type_names"]) if "type_names" in data else (),
    )
    vectors = None
    if (folder / "text_vectors.npy").exists():
        vectors = torch.from_numpy(np.load(folder / "text_vectors.npy", allow_pickle=False))
    config = TrainConfig(**job["config"])
    stop_file = folder / "stop"
    leader = int(os.environ.get("RANK", "0")) == 0

    with open(folder / "progress.jsonl" if leader else os.devnull, "a") as out:

        def report(progress) -> None:
            out.write(json.dumps(progress.to_dict()) + "\n")
            out.flush()
            if stop_file.exists():
                raise StopTraining

        try:
            result = train(
                seqs, config, folder, text_vectors=vectors, resume=resume, callback=report
            )
        except Exception as exc:  # reported to the app through the run folder
            (folder / "error.txt").write_text(f"{type(exc).__name__}: {exc}")
            raise
    if not leader:
        return 0
    if result.interrupted:
        (folder / "stopped").write_text("stopped")
        return 0
    training = training_record(
        job["name"], job["dataset"], job["fingerprint"], seqs, result, job.get("text_encoder")
    )
    try:
        save_model(job["out"], result.model, seqs.item_ids, training)
    except (OSError, CheckpointError) as exc:
        (folder / "error.txt").write_text(f"could not save the model: {exc}")
        return 1
    (folder / "result.json").write_text(json.dumps(training.to_dict()))
    return 0


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    run_folder = Path(sys.argv[1])
    try:
        code = _worker(run_folder, "--resume" in sys.argv[2:])
    finally:
        if int(os.environ.get("RANK", "0")) == 0:
            _advance(run_folder.parent, exiting=run_folder.name)  # the next queued run
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    sys.exit(code)
