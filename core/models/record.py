"""The training record of a model directory: what its ``training.json`` holds, typed.

:func:`core.training.runs.training_record` builds one when a run ends,
:func:`core.models.checkpoint.save_model` stamps it and writes it, and every reader (the
registry, the evaluation, serving, the report) reads its attributes. Files written by
older versions, or copied in by hand, lack some keys or carry others: a missing key
reads as its default, and an unknown one is kept and written back, so loading and
saving again loses nothing.

>>> r = TrainingRecord.from_dict({"name": "m", "epochs": 3, "note": "by hand"})
>>> r.name, r.dataset, r.users, r.epochs, r.extra
('m', '', None, 3, {'note': 'by hand'})
>>> r.to_dict()["note"], "saved" in r.to_dict()
('by hand', False)
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from core.common.columns import MetricKeys


@dataclass(frozen=True)
class TrainingRecord:
    """What a model was trained on, how, and how well it validated (``training.json``).

    Frozen: :func:`dataclasses.replace` gives a changed copy (the save stamps ``saved``
    that way). Every field has a default, the value an older or partial file that lacks
    the key reads as.

    Attributes:
        name (str): the model's name ("" when the file does not say; readers fall back
            to the folder's name).
        dataset (str): the name of the dataset it was trained on.
        dataset_fingerprint (str | None): that dataset's fingerprint at training time; a
            different one today means the data changed since.
        users (int | None): users in the training sequences.
        validation_users (int | None): users whose second-to-last item validated (None in
            records from before the split sampled them: every user with 3+ events).
        config (dict): the training settings (:meth:`core.training.config.TrainConfig.to_dict`).
        loss_mode (str | None): the loss training used, ``full`` or ``sampled``.
        event_types (list[str]): the event types embedded (empty: none).
        text_encoder (str | None): the text encoder of the item text features (None: none).
        history (list[dict]): one row per epoch run: ``epoch``, ``loss``, the validation
            figures (:class:`core.common.columns.MetricKeys`) and timings.
        epochs (int | None): epochs run.
        best_epoch (int | None): the epoch whose weights were kept.
        seconds (float | None): training time in seconds.
        stopped_early (bool): early stopping ended the run.
        interrupted (bool): the run was stopped; the best complete epoch was kept.
        metrics (dict): the saved model's validation figures, keyed by
            :attr:`MetricKeys.NDCG` and :attr:`MetricKeys.HR`.
        transitions (dict): the transition-memory summary (``kept``, ``pairs``,
            ``alpha``, the validation NDCG@10 with it and without it); empty when none
            was tried.
        saved (str): when it was saved (ISO 8601, UTC); "" until saved.
        extra (dict): keys of the file this version does not know, kept as they were and
            written back by :meth:`to_dict`.
    """

    name: str = ""
    dataset: str = ""
    dataset_fingerprint: str | None = None
    users: int | None = None
    validation_users: int | None = None
    config: dict[str, Any] = field(default_factory=dict)
    loss_mode: str | None = None
    event_types: list[str] = field(default_factory=list)
    text_encoder: str | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    epochs: int | None = None
    best_epoch: int | None = None
    seconds: float | None = None
    stopped_early: bool = False
    interrupted: bool = False
    metrics: dict[str, Any] = field(default_factory=dict)
    transitions: dict[str, Any] = field(default_factory=dict)
    saved: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of ``training.json``: one key per field in the order above,
        then the kept unknown keys. ``saved`` only once set, as before the record was
        typed (a run's ``result.json`` is the record before its save)."""
        out: dict[str, Any] = {
            f.name: _copy(getattr(self, f.name)) for f in fields(self) if f.name != "extra"
        }
        if not self.saved:
            del out["saved"]
        return {**out, **{k: v for k, v in self.extra.items() if k not in out}}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainingRecord:
        """A record from a ``training.json`` object of any version: missing keys (and
        null ones) read as the defaults, a container field holding something else reads
        as empty, and unknown keys go to :attr:`extra`."""
        values: dict[str, Any] = {}
        known = [f.name for f in fields(cls) if f.name != "extra"]
        for key in known:
            value = data.get(key)
            if value is None:
                continue
            kind = _CONTAINERS.get(key)
            if kind is not None and not isinstance(value, kind):
                continue
            values[key] = _copy(value)
        extra = {k: v for k, v in data.items() if k not in known}
        return cls(**values, extra=extra)

    # ------------------------------------------------------------------ what readers ask

    def best_entry(self) -> dict[str, Any]:
        """The history row of the best epoch ({} when the history lacks it)."""
        return next(
            (h for h in self.history if isinstance(h, dict) and h.get("epoch") == self.best_epoch),
            {},
        )

    @property
    def memory_kept(self) -> bool:
        """Whether the saved model kept a transition memory."""
        return bool(self.transitions.get("kept"))

    @property
    def memory_ndcg(self) -> float | None:
        """Validation NDCG@10 with the transition memory, when the model kept one."""
        return _number(self.transitions.get(MetricKeys.NDCG)) if self.memory_kept else None

    @property
    def without_memory(self) -> float | None:
        """Validation NDCG@10 of the Transformer alone, when a memory was tried."""
        return _number(self.transitions.get(MetricKeys.WITHOUT_MEMORY))


# The fields that hold a container; a file with anything else there reads as empty.
_CONTAINERS: dict[str, type] = {
    "config": dict,
    "event_types": list,
    "history": list,
    "metrics": dict,
    "transitions": dict,
}


def _copy(value: Any) -> Any:
    """A shallow copy of a container (the record and its dict share no list or dict)."""
    return type(value)(value) if isinstance(value, dict | list) else value


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
