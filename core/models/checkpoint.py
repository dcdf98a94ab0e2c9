"""Model directories: save and load a trained model, shaped like a Hugging Face folder.

A model directory holds:

* ``config.json``: the model shape (:class:`core.models.bert.ModelConfig`) and a format tag;
* ``model.safetensors``: the weights (the text vectors included when used);
* ``items.json``: the item vocabulary (index -> item id);
* ``training.json``: the training settings, the validation history, the dataset
  name and fingerprint, and the headline metrics (a
  :class:`core.models.record.TrainingRecord`);
* ``README.md``: a short model card.

Writing is atomic (a temporary folder, then a rename; see :func:`replace_folder` for
what a crash between its renames leaves and how it is undone), and loading verifies
every file and never unpickles anything: a corrupt or incompatible directory gives a
:class:`CheckpointError` with a message, a model of another dataset version loads
with a warning.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from core.models.bert import ModelConfig, PreferenceModel
from core.models.record import TrainingRecord

FORMAT = "reclens-bert-preference/1"
FILES = ("config.json", "model.safetensors", "items.json", "training.json")


class CheckpointError(Exception):
    """A model directory that cannot be loaded, with the reason."""


@dataclass
class SavedModel:
    """A loaded model and what was saved with it."""

    model: PreferenceModel
    config: ModelConfig
    item_ids: np.ndarray  # index -> item id; index 0 is "" (padding)
    training: TrainingRecord
    path: Path
    warnings: list[str] = field(default_factory=list)

    @property
    def dataset(self) -> str:
        return self.training.dataset

    @property
    def name(self) -> str:
        return self.training.name or self.path.name

    def index_of(self) -> dict[str, int]:
        """Item id -> index."""
        return {item: i for i, item in enumerate(self.item_ids) if i}


def save_model(
    folder: str | Path,
    model: PreferenceModel,
    item_ids: np.ndarray,
    training: TrainingRecord,
) -> Path:
    """Write a model directory atomically; returns its path.

    Args:
        folder: the target directory (replaced if it exists).
        model: the trained model.
        item_ids: index -> item id, as in :class:`core.data.sequences.Sequences`.
        training: settings, history, dataset name/fingerprint and metrics; written
            with ``saved`` set to now (the record passed in is left as it is).
    """
    folder = Path(folder)
    check_replaceable(folder)
    if len(item_ids) != model.config.n_items + 1:
        raise CheckpointError(
            f"{len(item_ids) - 1} item ids for a model of {model.config.n_items} items"
        )
    tmp = folder.with_name(f".{folder.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    (tmp / "config.json").write_text(
        json.dumps({"format": FORMAT, **model.config.to_dict()}, indent=2)
    )
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, tmp / "model.safetensors", metadata={"format": FORMAT})
    (tmp / "items.json").write_text(json.dumps([str(i) for i in item_ids]))
    training = replace(training, saved=datetime.now(UTC).isoformat(timespec="seconds"))
    (tmp / "training.json").write_text(json.dumps(training.to_dict(), indent=2, default=str))
    (tmp / "README.md").write_text(model_card(model.config, training))
    return replace_folder(tmp, folder)


def check_replaceable(folder: str | Path) -> None:
    """Raise :class:`CheckpointError` unless a model may be saved at ``folder``: a new or
    empty folder, or one that already holds a RecLens model (which the save replaces).
    Anything else (someone's files, a symlink, a file) is left alone."""
    folder = Path(folder)
    if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
        raise CheckpointError(
            f"refusing to save a model at {folder}: it is not a folder; choose a new folder"
        )
    if not folder.is_dir() or not any(folder.iterdir()):
        return
    try:
        if json.loads((folder / "config.json").read_text()).get("format") == FORMAT:
            return
    except (OSError, ValueError, AttributeError):
        pass
    raise CheckpointError(
        f"refusing to replace {folder}: it holds files that are not a RecLens model; "
        "choose a new or empty folder"
    )


def replace_folder(tmp: str | Path, folder: str | Path) -> Path:
    """Put the completely written folder ``tmp`` in place of ``folder``; returns ``folder``.

    A directory cannot be renamed over a non-empty one, so this takes two renames:
    ``folder`` aside to ``.NAME.old``, then ``tmp`` to ``folder``. A process killed
    between them leaves no ``folder`` but a complete ``.NAME.old`` (moved aside whole,
    in one rename). :func:`last_complete` finds it for readers and
    :func:`restore_interrupted` (run here first) puts it back, so the next replace does
    not delete the only complete version. Killed earlier, ``folder`` is untouched and
    only a stray ``tmp`` is left; killed later, only a stray ``.NAME.old``.
    """
    tmp, folder = Path(tmp), Path(folder)
    old = _aside(folder)
    restore_interrupted(folder)
    shutil.rmtree(old, ignore_errors=True)
    if folder.exists():
        folder.rename(old)
    tmp.rename(folder)  # killed just before this: see last_complete
    shutil.rmtree(old, ignore_errors=True)
    return folder


def last_complete(folder: str | Path) -> Path | None:
    """The last completely written version of ``folder``, without changing anything.

    ``folder`` itself when it exists; its ``.NAME.old`` when a :func:`replace_folder`
    was cut between its two renames; else None.
    """
    folder = Path(folder)
    if folder.exists():
        return folder
    return _aside(folder) if _aside(folder).is_dir() else None


def restore_interrupted(folder: str | Path) -> bool:
    """Put back the version of ``folder`` a cut :func:`replace_folder` left aside.

    Returns whether there was one. Writers call this before writing again (and a
    resume before it reads); a ``.NAME.old`` next to an existing ``folder`` is a cut
    clean-up and is left for the next replace to delete.
    """
    folder = Path(folder)
    found = last_complete(folder)
    if found is None or found == folder:
        return False
    found.rename(folder)
    return True


def _aside(folder: Path) -> Path:
    return folder.with_name(f".{folder.name}.old")


def load_model(
    folder: str | Path,
    *,
    expected_fingerprint: str | None = None,
    device: str | torch.device = "cpu",
) -> SavedModel:
    """Load a model directory, verifying every file.

    When the last save of ``folder`` was killed between its renames (no ``folder``,
    a complete ``.NAME.old``), that previous version loads, with a warning.

    Args:
        folder: the model directory.
        expected_fingerprint: the current fingerprint of the model's dataset; a
            different one adds a warning (the data changed since training).
        device: where to put the weights.

    Raises:
        CheckpointError: a missing, corrupt or incompatible file, with which one.
    """
    folder = Path(folder)
    notes = []
    found = last_complete(folder)
    if found is not None and found != folder:
        notes.append(
            f"the last save of {folder} was interrupted; this is the version saved before it"
        )
        folder = found
    if not folder.is_dir():
        raise CheckpointError(f"no model directory at {folder}")
    missing = [name for name in FILES if not (folder / name).is_file()]
    if missing:
        raise CheckpointError(f"{folder} is not a RecLens model: missing {', '.join(missing)}")
    config_data = _read_json(folder / "config.json")
    if config_data.pop("format", None) != FORMAT:
        raise CheckpointError(
            f"{folder}/config.json is not a RecLens preference model ({FORMAT} expected)"
        )
    try:
        config = ModelConfig.from_dict(config_data)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{folder}/config.json is invalid: {exc}") from None
    item_ids = _read_json(folder / "items.json")
    if not isinstance(item_ids, list) or len(item_ids) != config.n_items + 1:
        raise CheckpointError(
            f"{folder}/items.json lists {len(item_ids) if isinstance(item_ids, list) else '?'}"
            f" entries, the config says {config.n_items} items (+ padding)"
        )
    training = _read_json(folder / "training.json")
    if not isinstance(training, dict):
        raise CheckpointError(f"{folder}/training.json is not a JSON object")
    record = TrainingRecord.from_dict(training)
    _check_shapes(folder, config)  # before anything of the claimed size is allocated
    try:
        state = load_file(folder / "model.safetensors", device=str(device))
    except (SafetensorError, OSError, RuntimeError) as exc:
        raise CheckpointError(
            f"{folder}/model.safetensors is corrupt or truncated ({exc}); train the model again"
        ) from None
    text_vectors = state.get("text_vectors")
    try:
        model = PreferenceModel(config, text_vectors)
        model.load_state_dict(state)
    except (RuntimeError, ValueError) as exc:
        raise CheckpointError(
            f"{folder}/model.safetensors does not match config.json: {_first_line(exc)}"
        ) from None
    model.to(device).eval()
    warnings = notes + [w for w in [stale_warning(record, expected_fingerprint)] if w]
    return SavedModel(model, config, np.asarray(item_ids, dtype=object), record, folder, warnings)


def _check_shapes(folder: Path, config: ModelConfig) -> None:
    """Raise :class:`CheckpointError` unless the weights file holds exactly the tensors, of
    exactly the shapes, that ``config.json`` describes.

    Reads only the file's header, and builds the model on the ``meta`` device (shapes,
    no memory), so a ``config.json`` claiming a billion items or a huge hidden size
    costs nothing: it fails here instead of allocating.
    """
    path = folder / "model.safetensors"
    try:
        with safe_open(path, framework="pt") as weights:
            shapes = {k: tuple(weights.get_slice(k).get_shape()) for k in weights.keys()}
    except (SafetensorError, OSError, RuntimeError) as exc:
        raise CheckpointError(
            f"{path} is corrupt or truncated ({_first_line(exc)}); train the model again"
        ) from None
    layers = {k.split(".")[3] for k in shapes if k.startswith("encoder.encoder.layer.")}
    if len(layers) != config.layers:  # checked first: the meta model is built layer by layer
        raise CheckpointError(
            f"{path} does not match config.json: the weights hold {len(layers)} layers, "
            f"the config says {config.layers}"
        )
    text = shapes.get("text_vectors")
    try:
        with torch.device("meta"):
            vectors = torch.empty(text) if text else None
            expected = {
                k: tuple(v.shape) for k, v in PreferenceModel(config, vectors).state_dict().items()
            }
    except (RuntimeError, ValueError) as exc:
        raise CheckpointError(f"{folder}/config.json is invalid: {_first_line(exc)}") from None
    wrong = sorted(k for k in expected.keys() | shapes.keys() if expected.get(k) != shapes.get(k))
    if wrong:
        first = wrong[0]
        raise CheckpointError(
            f"{path} does not match config.json: {first} is {shapes.get(first, 'missing')} in "
            f"the weights, {expected.get(first, 'absent')} by the config"
            + (f" (and {len(wrong) - 1} more)" if len(wrong) > 1 else "")
        )


def stale_warning(training: TrainingRecord, fingerprint: str | None) -> str | None:
    """A warning when the model's dataset has changed since training, else None."""
    saved = training.dataset_fingerprint
    if fingerprint and saved and saved != fingerprint:
        return (
            f"this model was trained on an earlier version of dataset "
            f"'{training.dataset}'; its items and users may have changed since"
        )
    return None


def read_training(folder: str | Path) -> TrainingRecord | None:
    """A model directory's ``training.json`` alone (cheap: no weights), or None when it
    is missing or unreadable (:func:`load_model` says why)."""
    try:
        training = _read_json(Path(folder) / "training.json")
    except CheckpointError:
        return None
    return TrainingRecord.from_dict(training) if isinstance(training, dict) else None


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path} is corrupt or truncated ({_first_line(exc)})") from None


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _validating(training: TrainingRecord) -> str:
    """Who validated, in words. ``training.json`` records how many since the split
    sampled them; before that, every user with 3+ events did."""
    n = training.validation_users
    return f"{n:,} users" if isinstance(n, int) else "every user with 3+ events"


def model_card(config: ModelConfig, training: TrainingRecord) -> str:
    """A short Markdown model card: data, settings, metrics, date ("?" for what the
    record does not say)."""
    t = training
    without = t.without_memory
    lines = [
        f"# {t.name or 'RecLens model'}",
        "",
        "A BERT4Rec-style preference model (bidirectional Transformer over item sequences, "
        "built on Hugging Face `BertModel`) trained by RecLens with masked-item prediction.",
        "",
        "## Data",
        f"- dataset: `{t.dataset or '?'}` (fingerprint `{_known(t.dataset_fingerprint)}`)",
        f"- items: {config.n_items:,}; users: {_known(t.users)}",
        "- split: leave-one-out (last item = test, never used in training; "
        f"second-to-last = validation for {_validating(t)}, training data for "
        "the rest)",
        "",
        "## Settings",
        f"- preset: {t.config.get('preset', '?')}; max length {config.max_len}, hidden "
        f"{config.hidden}, layers {config.layers}, heads {config.heads}, dropout {config.dropout}",
        f"- text features: {t.text_encoder or 'none'}",
        f"- loss: {_known(t.loss_mode)}; epochs run: {_known(t.epochs)}, "
        f"best epoch {_known(t.best_epoch)}",
        "- transition memory: "
        + (
            f"{config.transitions:,} recorded (item, next item) pairs, prior weight "
            f"{config.transition_alpha:g} (the Transformer alone: validation NDCG@10 "
            f"{without if without is not None else float('nan'):.4f})"
            if config.transitions
            else "none"
        ),
        "",
        "## Metrics (validation, full ranking over all items, seen items excluded)",
    ]
    lines += [f"- {k}: {v:.4f}" for k, v in t.metrics.items() if isinstance(v, int | float)]
    lines += ["", f"Trained {t.saved} in {t.seconds or 0:.0f} s.", ""]
    return "\n".join(lines)


def _known(value: object) -> object:
    """A recorded value, or "?" when the record does not say."""
    return "?" if value is None else value
