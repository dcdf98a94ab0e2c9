"""Cached vectors (item text embeddings, interest vectors) by kind, owner and key, so
later pages and commands read them instead of recomputing them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import pyarrow as pa

from core.store.connection import StoreConnection


class Vectors(StoreConnection):
    """Reading and writing the ``vectors`` table."""

    def get_vectors(self, kind: str, owner: str, keys: Sequence[str]) -> dict[str, list[float]]:
        """Cached vectors of ``kind`` by ``owner`` for the given keys (missing keys absent)."""
        if not keys:
            return {}
        cur = self._con.cursor()  # private: registers a relation
        try:
            cur.register("wanted_keys", pd.DataFrame({"key": list(keys)}))
            rows = cur.execute(
                """SELECT v.key, v.vector FROM vectors v JOIN wanted_keys w USING (key)
                   WHERE v.kind = ? AND v.owner = ?""",
                [kind, owner],
            ).fetchall()
        finally:
            cur.close()
        return dict(rows)

    def put_vectors(self, kind: str, owner: str, vectors: dict[str, Sequence[float]]) -> None:
        """Cache vectors (replacing those with the same kind, owner and key)."""
        if not vectors:
            return
        frame = pd.DataFrame(
            {"key": list(vectors), "vector": [list(map(float, v)) for v in vectors.values()]}
        )
        with self.transaction() as cur:
            cur.register("new_vectors", frame)
            cur.execute(
                """DELETE FROM vectors WHERE kind = ? AND owner = ?
                   AND key IN (SELECT key FROM new_vectors)""",
                [kind, owner],
            )
            cur.execute(
                "INSERT INTO vectors SELECT ?, ?, key, vector FROM new_vectors", [kind, owner]
            )
            cur.unregister("new_vectors")

    def vector_matrix(self, kind: str, owner: str) -> tuple[np.ndarray, np.ndarray] | None:
        """Every cached vector of ``kind`` by ``owner``: (sorted keys, float32 matrix) or None."""
        cur = self._con.cursor()
        try:
            table = cur.sql(
                """SELECT key, vector FROM vectors WHERE kind = $kind AND owner = $owner
                   ORDER BY key""",
                params={"kind": kind, "owner": owner},
            ).to_arrow_table()
        finally:
            cur.close()
        if table.num_rows == 0:
            return None
        keys = np.asarray(table.column("key").to_numpy(zero_copy_only=False), dtype=object)
        lists = table.column("vector").combine_chunks()
        flat = lists.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
        return keys, flat.reshape(table.num_rows, -1)

    def replace_vector_matrix(
        self, kind: str, owner: str, keys: Sequence[str], matrix: np.ndarray, stale_prefix: str
    ) -> None:
        """Cache one vector per key (rows of ``matrix``) under ``owner``, in one transaction.

        Also drops every vector of ``kind`` whose owner starts with ``stale_prefix``
        (older versions of the same model), so the cache holds one version per model.
        """
        matrix = np.ascontiguousarray(matrix, dtype=np.float32)
        vectors = pa.FixedSizeListArray.from_arrays(
            pa.array(matrix.reshape(-1)), matrix.shape[1]
        ).cast(pa.list_(pa.float32()))
        frame = pa.table({"key": pa.array(list(keys), pa.string()), "vector": vectors})
        with self.transaction() as cur:
            cur.execute(
                "DELETE FROM vectors WHERE kind = ? AND (owner = ? OR starts_with(owner, ?))",
                [kind, owner, stale_prefix],
            )
            cur.register("new_vector_matrix", frame)
            try:
                cur.execute(
                    "INSERT INTO vectors SELECT ?, ?, key, vector FROM new_vector_matrix",
                    [kind, owner],
                )
            finally:
                cur.unregister("new_vector_matrix")
