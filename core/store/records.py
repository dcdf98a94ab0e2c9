"""The records the store hands to the layers above: a catalogue entry and a registered model.

Their own module because the catalogue, the registry and most layers above use them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class DatasetInfo:
    """One row of the datasets catalogue."""

    dataset_id: int
    name: str
    sources: list[str]
    created: datetime
    n_events: int
    n_users: int
    n_items: int
    n_item_rows: int
    has_time: bool
    mapping: dict[str, Any] = field(default_factory=dict)
    report: dict[str, Any] = field(default_factory=dict)
    fingerprint: str = ""

    def summary(self) -> dict[str, Any]:
        """The JSON-friendly summary printed by ``datasets --json``."""
        return {
            "name": self.name,
            "events": self.n_events,
            "users": self.n_users,
            "items": self.n_items,
            "item_rows": self.n_item_rows,
            "sources": list(self.sources),
            "created": self.created.isoformat(timespec="seconds"),
            "fingerprint": self.fingerprint,
        }


@dataclass(frozen=True)
class ModelInfo:
    """One row of the model registry."""

    name: str
    dataset: str
    path: str
    created: datetime
    config: dict[str, Any]
    metrics: dict[str, Any]

    def summary(self) -> dict[str, Any]:
        """The JSON-friendly summary printed by ``models --json``."""
        return {
            "name": self.name,
            "dataset": self.dataset,
            "path": self.path,
            "created": self.created.isoformat(timespec="seconds"),
            "metrics": self.metrics,
            "preset": self.config.get("preset"),
        }
