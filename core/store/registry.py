"""The registry: trained models (name, dataset, directory, config, metrics) and stored
evaluation results (:mod:`core.evaluation.runner`).
"""

from __future__ import annotations

import json
from typing import Any

from core.store.catalogue import Catalogue
from core.store.errors import StoreError
from core.store.names import validate_dataset_name
from core.store.records import ModelInfo


class Registry(Catalogue):
    """Models and evaluations, each tied to a dataset of the catalogue."""

    # ---- models

    def register_model(
        self,
        name: str,
        dataset: str,
        path: str,
        config: dict,
        metrics: dict,
        *,
        replace: bool = False,
    ) -> ModelInfo:
        """Record a saved model directory under ``name``.

        A name already registered is refused, unless ``replace`` is set and the entry is
        a model of the same ``dataset`` (a retrained version of it): registering never
        takes another dataset's model's entry, nor one a deleted dataset left behind.
        """
        validate_dataset_name(name)
        info = self.get_dataset(dataset)
        owner = self.model_owner(name)
        if owner is not None and not (replace and owner == info.name):
            whose = f"of dataset {owner!r}" if owner else "of a deleted dataset"
            raise StoreError(
                f"a model named {name!r} is already registered ({whose}); choose another name"
                + (" or delete that model first" if owner else "")
            )
        with self.transaction() as cur:
            cur.execute("DELETE FROM models WHERE name = ?", [name])
            cur.execute(
                "INSERT INTO models VALUES (?, ?, ?, now()::TIMESTAMP, ?, ?)",
                [name, info.dataset_id, path, json.dumps(config), json.dumps(metrics)],
            )
        return self.get_model(name)

    def list_models(self, dataset: str | None = None) -> list[ModelInfo]:
        """Registered models (of one dataset, or all), newest first."""
        sql = (
            "SELECT m.name, d.name, m.path, m.created, m.config, m.metrics FROM models m "
            "JOIN datasets d USING (dataset_id)"
        )
        params: list[Any] = []
        if dataset:
            sql += " WHERE d.name = ?"
            params.append(dataset)
        rows = self.cursor().execute(sql + " ORDER BY m.created DESC, m.name", params).fetchall()
        return [ModelInfo(r[0], r[1], r[2], r[3], json.loads(r[4]), json.loads(r[5])) for r in rows]

    def model_owner(self, name: str) -> str | None:
        """The dataset of the model registered as ``name``: its name, ``""`` when that
        dataset was deleted, None when no model has that name."""
        rows = (
            self.cursor()
            .execute(
                "SELECT coalesce(d.name, '') FROM models m LEFT JOIN datasets d "
                "USING (dataset_id) WHERE m.name = ?",
                [name],
            )
            .fetchall()
        )
        return rows[0][0] if rows else None

    def model_names(self) -> set[str]:
        """Every registered model name, those a deleted dataset left behind included."""
        return {r[0] for r in self.cursor().execute("SELECT name FROM models").fetchall()}

    def find_model(self, name: str) -> ModelInfo | None:
        """The registered model called ``name``, or None."""
        return next((m for m in self.list_models() if m.name == name), None)

    def orphaned_model_path(self, name: str) -> str | None:
        """The directory of a model registered as ``name`` whose dataset was deleted
        (such models are left out of :meth:`list_models`), or None."""
        rows = (
            self.cursor()
            .execute(
                """SELECT path FROM models m WHERE name = ? AND NOT EXISTS (
                       SELECT 1 FROM datasets d WHERE d.dataset_id = m.dataset_id)""",
                [name],
            )
            .fetchall()
        )
        return rows[0][0] if rows else None

    def get_model(self, name: str) -> ModelInfo:
        """The registered model called ``name``; a clear error when there is none."""
        info = self.find_model(name)
        if info is None:
            known = ", ".join(m.name for m in self.list_models()) or "none yet"
            raise StoreError(f"no model called {name!r}; the models are: {known}")
        return info

    # ---- evaluations (core.evaluation.runner)

    def save_evaluation(
        self,
        evaluation_id: str,
        model_name: str,
        dataset_id: int,
        settings: dict,
        metrics: dict,
        segments: list | dict | None,
    ) -> None:
        """Record one model's (or baseline's) evaluation; ``settings["run_id"]`` groups a run."""
        with self.transaction() as cur:
            cur.execute("DELETE FROM evaluations WHERE evaluation_id = ?", [evaluation_id])
            cur.execute(
                "INSERT INTO evaluations VALUES (?, ?, ?, ?, ?, ?, now()::TIMESTAMP)",
                [
                    evaluation_id,
                    model_name,
                    dataset_id,
                    json.dumps(settings, default=str),
                    json.dumps(metrics, default=str),
                    json.dumps(segments, default=str),
                ],
            )

    def list_evaluations(
        self, dataset_id: int | None = None, run_id: str | None = None
    ) -> list[dict[str, Any]]:
        """Stored evaluations (of one dataset and/or one run), newest first, JSON decoded."""
        sql = (
            "SELECT evaluation_id, model_name, dataset_id, settings, metrics, segments, created "
            "FROM evaluations WHERE (? IS NULL OR dataset_id = ?) "
            "AND (? IS NULL OR json_extract_string(settings, '$.run_id') = ?) "
            "ORDER BY created DESC, evaluation_id"
        )
        rows = self.cursor().execute(sql, [dataset_id, dataset_id, run_id, run_id]).fetchall()
        return [
            {
                "evaluation_id": r[0],
                "model_name": r[1],
                "dataset_id": r[2],
                "settings": json.loads(r[3]),
                "metrics": json.loads(r[4]),
                "segments": json.loads(r[5]) if r[5] is not None else None,
                "created": r[6],
            }
            for r in rows
        ]
