"""A run's per-epoch checkpoint: what it needs to continue after a stop or a kill.

Written after every epoch into the run folder's ``checkpoint/`` (safetensors + JSON,
never pickle, swapped in atomically): the current and the best weights, the optimiser's
state and the run's record. Not the saved model a run ends with
(:mod:`core.models.checkpoint`).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from core.models.bert import PreferenceModel
from core.models.checkpoint import replace_folder, restore_interrupted


def save_run_checkpoint(
    folder: Path,
    model: PreferenceModel,
    optimizer: torch.optim.Optimizer,
    best_state: dict[str, torch.Tensor],
    state: dict,
) -> None:
    """Write the resumable state of a run atomically (tmp folder, then rename)."""
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file(
        {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
        tmp / "model.safetensors",
    )
    save_file({k: v.cpu().contiguous() for k, v in best_state.items()}, tmp / "best.safetensors")
    opt_tensors, opt_meta = _flatten_optimizer(optimizer)
    save_file(opt_tensors, tmp / "optimizer.safetensors")
    (tmp / "state.json").write_text(json.dumps({**state, "optimizer": opt_meta}))
    replace_folder(tmp, folder)


def _flatten_optimizer(optimizer: torch.optim.Optimizer) -> tuple[dict, dict]:
    sd = optimizer.state_dict()
    tensors = {}
    for pid, pstate in sd["state"].items():
        for key, value in pstate.items():
            tensors[f"{pid}.{key}"] = torch.as_tensor(value).detach().cpu().contiguous()
    return tensors, {"param_groups": sd["param_groups"]}


def _restore_optimizer(optimizer: torch.optim.Optimizer, tensors: dict, meta: dict) -> None:
    state: dict[int, dict] = {}
    for name, value in tensors.items():
        pid, key = name.split(".", 1)
        state.setdefault(int(pid), {})[key] = value
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


# --------------------------------------------------------------------------- the loop


def load_run_checkpoint(
    folder: Path,
    model: PreferenceModel,
    optimizer: torch.optim.Optimizer,
    device: torch.device,
) -> tuple[dict, dict[str, torch.Tensor]] | None:
    """Restore ``model`` and ``optimizer`` from the last complete checkpoint in ``folder``.

    Returns:
        (the run's state as saved, the best weights), or None when there is no checkpoint.
    """
    restore_interrupted(folder)  # a kill between the two renames of a save
    if not (folder / "state.json").exists():
        return None
    state = json.loads((folder / "state.json").read_text())
    model.load_state_dict(load_file(folder / "model.safetensors", device=str(device)))
    best_state = load_file(folder / "best.safetensors", device=str(device))
    _restore_optimizer(
        optimizer,
        load_file(folder / "optimizer.safetensors", device=str(device)),
        state["optimizer"],
    )
    return state, best_state
