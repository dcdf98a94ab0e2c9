"""Model folders against the store: where models live, their names, and finding one.

A trained model is a folder (:mod:`core.models.checkpoint`) and an entry in the
store's registry that points to it. This module keeps the two in step: the model home
beside the database (:func:`model_home`), names that no model or folder uses yet
(:func:`free_model_name`, :func:`claim_model_name`), registering a folder copied into
the home (:func:`import_model`), loading a model by name or path (:func:`resolve_model`)
and saying, in one sentence, why a model cannot be used or should be retrained
(:func:`lost_model_message`, :func:`model_warning`). Nothing here trains: training
(``core.training.runs``) saves a model and registers it with these names.
"""

from __future__ import annotations

import os
from pathlib import Path

from core.models.checkpoint import SavedModel, load_model, read_training, stale_warning
from core.store import DatasetInfo, ModelInfo, Store, StoreError, validate_dataset_name


def data_home(store: Store) -> Path:
    """Folder next to the database holding ``models/``, ``runs/``, ``uploads/`` and
    ``exports/``."""
    if store.path == ":memory:":
        return Path(os.environ.get("RECLENS_HOME", "data"))
    return Path(store.path).resolve().parent


def model_home(store: Store) -> Path:
    """Where models are saved (``models/`` beside the database): the only folder the web
    page loads model directories from (:func:`import_model`)."""
    return data_home(store) / "models"


def free_model_name(store: Store, base: str) -> str:
    """``base``, or ``base-2``, ``base-3``... whichever no model uses yet: neither as a
    registered name (a deleted dataset's included) nor as a folder in the model home."""
    home = model_home(store)
    taken = store.model_names()
    candidates = [base[:63]] + [f"{base[:59]}-{i}" for i in range(2, 10_000)]
    return next(c for c in candidates if c not in taken and not (home / c).exists())


def claim_model_name(
    store: Store,
    dataset: str,
    name: str,
    *,
    out_dir: str | Path | None = None,
    replace: bool = False,
) -> str:
    """Check, before any training, that a new model of ``dataset`` may be saved as
    ``name``; returns the name.

    A name taken by a registered model, or (saving to the default folder) by a folder
    in the model home, is refused unless ``replace`` is set, and even then a model of
    another dataset is never replaced.

    Raises:
        StoreError: the name is taken, with a free one to use instead.
    """
    name = validate_dataset_name(name)
    owner = store.model_owner(name)
    folder = model_home(store) / name
    in_use = owner is not None or (out_dir is None and folder.is_dir() and any(folder.iterdir()))
    if not in_use:
        return name
    if replace and owner in (None, dataset):
        return name
    if owner:
        whose = f"a model of dataset {owner!r}"
    else:
        whose = "a model of a deleted dataset" if owner == "" else "a model folder"
    raise StoreError(
        f"the name {name!r} is taken by {whose}; choose another name, for example "
        f"{free_model_name(store, name)!r}"
        + (" (only a model of the same dataset can be replaced)" if replace else "")
    )


def importable_models(store: Store) -> list[str]:
    """Folders in the model home that hold a RecLens model no registered model points to
    (sorted names): what the web page offers to load (:func:`import_model`)."""
    home = model_home(store)
    if not home.is_dir():
        return []
    registered = {str(Path(m.path).resolve()) for m in store.list_models()}
    found = []
    for folder in home.iterdir():
        if folder.name.startswith(".") or folder.is_symlink() or not folder.is_dir():
            continue
        if str(folder.resolve()) not in registered and (folder / "config.json").is_file():
            found.append(folder.name)
    return sorted(found)


def import_model(store: Store, folder_name: str) -> tuple[ModelInfo, list[str]]:
    """Register the model saved in ``folder_name`` of the model home; returns the
    registered model and its load warnings.

    Only folders directly inside the model home load, checked after resolving symlinks
    (a link pointing out of it is refused), and the messages never say whether some
    other path exists. The model keeps its saved name unless another model uses it,
    then gets a free one (:func:`free_model_name`): an import replaces nothing.

    Raises:
        StoreError: a folder outside the model home, or the model's dataset is missing.
        CheckpointError: the folder is not a loadable model (which file, and why).
    """
    home = model_home(store).resolve()
    candidate = home / folder_name
    # "", ".", "..", "a/b" and absolute paths all resolve to something not directly inside
    if candidate.is_symlink() or candidate.resolve().parent != home or not candidate.is_dir():
        raise StoreError(
            f"{folder_name!r} is not a model folder in the model home; the app loads models "
            "only from its own models folder (copy the folder there first)"
        )
    saved = load_model(candidate)
    info = model_dataset(store, saved)
    name = saved.name
    try:
        name = validate_dataset_name(name)
    except StoreError:
        name = "imported-model"
    if store.model_owner(name) is not None:
        name = free_model_name(store, name)
    model = store.register_model(
        name,
        info.name,
        str(candidate),
        saved.training.config,
        saved.training.metrics,
    )
    warning = stale_warning(saved.training, info.fingerprint)
    return model, saved.warnings + ([warning] if warning else [])


def resolve_model(store: Store, name_or_dir: str) -> SavedModel:
    """Load a registered model by name, or a model directory by path.

    A model trained on an earlier version of its dataset (re-ingested since) loads with
    a warning in ``warnings``.

    Raises:
        StoreError: no such model, or a registered one whose dataset was deleted.
        CheckpointError: a directory that is not a loadable model.
    """
    registered = store.find_model(name_or_dir)
    if registered is None and store.orphaned_model_path(name_or_dir) is not None:
        raise StoreError(lost_model_message(store, name_or_dir))
    path = Path(registered.path) if registered else Path(name_or_dir)
    if not registered and not path.is_dir():
        known = ", ".join(m.name for m in store.list_models()) or "none yet"
        raise StoreError(
            f"no model called {name_or_dir!r} and no such directory; the models are: {known}"
        )
    saved = load_model(path)
    dataset = store.find_dataset(saved.dataset)
    warning = stale_warning(saved.training, dataset.fingerprint if dataset else None)
    if warning:
        saved.warnings.append(warning)
    return saved


def model_dataset(store: Store, saved: SavedModel) -> DatasetInfo:
    """The dataset a loaded model was trained on, or a StoreError saying it is gone."""
    info = store.find_dataset(saved.dataset)
    if info is None:
        raise StoreError(
            f"model {saved.name!r} was trained on dataset {saved.dataset!r}, which is not in "
            "this database (deleted, or never loaded here); load that dataset again or train "
            "a new model"
        )
    return info


def lost_model_message(store: Store, name: str) -> str:
    """Why a model name that was registered cannot be used any more, in one sentence."""
    path = store.orphaned_model_path(name)
    if path is None:
        return f"model {name!r} is not registered in this database"
    training = read_training(path)
    dataset = training.dataset if training is not None else None
    if not dataset:
        return f"model {name!r} can no longer be used: its dataset was deleted"
    again = (
        f" (the dataset {dataset!r} here now was loaded afresh after that)"
        if store.find_dataset(dataset)
        else ""
    )
    return (
        f"model {name!r} can no longer be used: its dataset {dataset!r} was deleted{again}; "
        "train a new model"
    )


def model_warning(store: Store, model: ModelInfo) -> str | None:
    """What is wrong with a registered model without loading it, in one sentence:
    trained on an earlier version of its dataset, or its directory is gone; else None."""
    training = read_training(model.path)
    if training is None:
        return f"the directory of model '{model.name}' ({model.path}) is missing or unreadable"
    dataset = store.find_dataset(model.dataset)
    return stale_warning(training, dataset.fingerprint if dataset else None)
