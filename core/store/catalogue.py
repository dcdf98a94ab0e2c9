"""The catalogue: which datasets there are, committing a load into a new entry, and
reading a dataset's events and items (histories, item details, Arrow sequences).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import duckdb
import pandas as pd

from core.store.connection import StoreConnection
from core.store.errors import StoreError
from core.store.names import quote_ident
from core.store.records import DatasetInfo

_DATASET_COLUMNS = (
    "dataset_id, name, sources, created, n_events, n_users, n_items, n_item_rows, "
    "has_time, mapping, report, fingerprint"
)


def _dataset_from_row(row: Sequence[Any]) -> DatasetInfo:
    values = list(row)
    values[9] = json.loads(values[9])
    values[10] = json.loads(values[10])
    return DatasetInfo(*values)


class Catalogue(StoreConnection):
    """Datasets and the rows they hold."""

    # ---- the datasets

    def list_datasets(self) -> list[DatasetInfo]:
        """Every dataset, newest first."""
        rows = (
            self.cursor()
            .execute(f"SELECT {_DATASET_COLUMNS} FROM datasets ORDER BY created DESC, name")
            .fetchall()
        )
        return [_dataset_from_row(r) for r in rows]

    def find_dataset(self, name: str) -> DatasetInfo | None:
        """The catalogue entry called ``name``, or None."""
        rows = (
            self.cursor()
            .execute(f"SELECT {_DATASET_COLUMNS} FROM datasets WHERE name = ?", [name])
            .fetchall()
        )
        return _dataset_from_row(rows[0]) if rows else None

    def get_dataset(self, name: str) -> DatasetInfo:
        """The catalogue entry called ``name``; a clear error when there is none."""
        info = self.find_dataset(name)
        if info is None:
            known = ", ".join(d.name for d in self.list_datasets()) or "none yet"
            raise StoreError(f"no dataset called {name!r}; the datasets are: {known}")
        return info

    def drop_dataset(self, name: str) -> None:
        """Delete a dataset with its events, items and planted interests."""
        info = self.get_dataset(name)
        with self.transaction() as cur:
            self._delete_dataset_rows(cur, info.dataset_id)

    @staticmethod
    def _delete_dataset_rows(cur: duckdb.DuckDBPyConnection, dataset_id: int) -> None:
        for table in ("events", "items", "planted_interests", "datasets"):
            cur.execute(f"DELETE FROM {table} WHERE dataset_id = ?", [dataset_id])

    def table_fingerprints(self) -> dict[str, tuple[int, int]]:
        """(row count, order-independent content hash) of every table: tests compare it."""
        cur = self.cursor()
        tables = [
            r[0]
            for r in cur.execute(
                "SELECT table_name FROM information_schema.tables "
                "WHERE table_schema = 'main' AND table_type = 'BASE TABLE' ORDER BY 1"
            ).fetchall()
        ]
        out = {}
        for table in tables:
            ident = quote_ident(table)
            count, digest = cur.execute(
                f"SELECT count(*), coalesce(bit_xor(hash(t)), 0) FROM {ident} AS t"
            ).fetchall()[0]
            out[table] = (int(count), int(digest))
        return out

    # ---- a load's last step (inside core.data.ingest's transaction)

    def commit_dataset(
        self,
        cur: duckdb.DuckDBPyConnection,
        name: str,
        sources: list[str],
        mapping: dict[str, Any],
        report: dict[str, Any],
        with_items: bool,
        replace: bool,
    ) -> DatasetInfo:
        """Move the staged events (and items) into a new catalogue entry called ``name``.

        Replacing a dataset keeps its models registered, now on the new version: loading
        one then warns that it was trained on an earlier version of the data.
        """
        existing = cur.execute("SELECT dataset_id FROM datasets WHERE name = ?", [name]).fetchall()
        if existing:
            if not replace:
                raise StoreError(
                    f"a dataset called {name!r} already exists; choose another name or replace it"
                )
            self._delete_dataset_rows(cur, existing[0][0])
        dataset_id = cur.execute("SELECT nextval('dataset_ids')").fetchall()[0][0]
        if existing:
            cur.execute(
                "UPDATE models SET dataset_id = ? WHERE dataset_id = ?",
                [dataset_id, existing[0][0]],
            )
        _insert_staged_rows(cur, dataset_id, with_items)
        n_events, n_users, n_items, has_time, n_item_rows, fingerprint = _dataset_figures(
            cur, dataset_id
        )
        cur.execute(
            f"INSERT INTO datasets ({_DATASET_COLUMNS}) VALUES (?, ?, ?, now()::TIMESTAMP, "
            "?, ?, ?, ?, ?, ?, ?, ?)",
            [
                dataset_id,
                name,
                sources,
                n_events,
                n_users,
                n_items,
                n_item_rows,
                has_time,
                json.dumps(mapping),
                json.dumps(report),
                fingerprint,
            ],
        )
        cur.execute("DROP TABLE IF EXISTS stage_events")
        cur.execute("DROP TABLE IF EXISTS stage_items")
        row = cur.execute(
            f"SELECT {_DATASET_COLUMNS} FROM datasets WHERE dataset_id = ?", [dataset_id]
        ).fetchall()[0]
        return _dataset_from_row(row)

    def save_planted(self, cur: duckdb.DuckDBPyConnection, dataset_id: int, frame: pd.DataFrame):
        """Store the demo generator's planted interests for ``dataset_id``."""
        cur.register("planted_frame", frame)
        cur.execute(
            """INSERT INTO planted_interests
               SELECT ?, user_id, interests, initial_interest, final_interest, shift_at
               FROM planted_frame""",
            [dataset_id],
        )
        cur.unregister("planted_frame")

    # ---- a dataset's events and items

    def user_events(self, dataset_id: int, user_id: str, limit: int = 200) -> pd.DataFrame:
        """One user's events in order, with item titles and categories when known."""
        return self.query_df(
            f"""SELECT e.pos, e.ts AS time, e.item_id, i.title, i.categories, e.event_type, e.value
                FROM events e LEFT JOIN items i
                  ON i.dataset_id = e.dataset_id AND i.item_id = e.item_id
                WHERE e.dataset_id = ? AND e.user_id = ?
                ORDER BY e.pos LIMIT {int(limit)}""",
            [dataset_id, user_id],
        )

    def items_frame(self, dataset_id: int) -> pd.DataFrame:
        """The item table of a dataset."""
        return self.query_df(
            "SELECT item_id, title, categories, text FROM items WHERE dataset_id = ? ORDER BY 1",
            [dataset_id],
        )

    def catalog_only_items(self, dataset_id: int) -> list[str]:
        """Items of the item file that no event mentions (cold-start items), by id."""
        return [
            r[0]
            for r in self.cursor()
            .execute(
                """SELECT i.item_id FROM items i WHERE i.dataset_id = ? AND NOT EXISTS (
                       SELECT 1 FROM events e WHERE e.dataset_id = i.dataset_id
                       AND e.item_id = i.item_id) ORDER BY i.item_id""",
                [dataset_id],
            )
            .fetchall()
        ]

    def item_details(self, dataset_id: int, item_ids: Sequence[str]) -> pd.DataFrame:
        """Title and categories of the given items (in any order; unknown ids absent)."""
        cur = self._con.cursor()
        try:
            cur.register("wanted_items", pd.DataFrame({"item_id": list(item_ids)}))
            return cur.execute(
                """SELECT i.item_id, i.title, i.categories, i.text FROM items i
                   JOIN wanted_items w USING (item_id) WHERE i.dataset_id = ?""",
                [dataset_id],
            ).df()
        finally:
            cur.close()

    def user_history(self, dataset_id: int, user_id: str) -> list[str]:
        """A user's item ids in order (empty for an unknown user)."""
        return [
            r[0]
            for r in self.cursor()
            .execute(
                "SELECT item_id FROM events WHERE dataset_id = ? AND user_id = ? ORDER BY pos",
                [dataset_id, user_id],
            )
            .fetchall()
        ]

    def event_times_arrow(self, dataset_id: int):
        """Every event's time in the order of :meth:`sequences_arrow` (users by id, events
        by ``pos``): an Arrow table (user_id, times: list<double> of Unix seconds, null
        when the dataset has no time)."""
        cur = self._con.cursor()
        try:
            return cur.sql(
                """SELECT user_id, list(epoch(ts) ORDER BY pos) AS times
                   FROM events WHERE dataset_id = $dataset GROUP BY user_id ORDER BY user_id""",
                params={"dataset": dataset_id},
            ).to_arrow_table()
        finally:
            cur.close()

    def event_types_arrow(self, dataset_id: int):
        """Every event's type in the order of :meth:`sequences_arrow`, as indices.

        Returns:
            (table, names): an Arrow table (user_id, types: list<int32>) with types
            numbered 1..T by frequency (0 = no type), and the list of the T type names.
        """
        cur = self._con.cursor()
        try:
            names = [
                r[0]
                for r in cur.execute(
                    """SELECT event_type FROM events
                       WHERE dataset_id = ? AND event_type IS NOT NULL
                       GROUP BY event_type ORDER BY count(*) DESC, event_type""",
                    [dataset_id],
                ).fetchall()
            ]
            table = cur.sql(
                """SELECT e.user_id,
                          list(coalesce(t.idx, 0)::INTEGER ORDER BY e.pos) AS types
                   FROM events e LEFT JOIN (
                       SELECT unnest($names) AS event_type,
                              generate_subscripts($names, 1) AS idx) t USING (event_type)
                   WHERE e.dataset_id = $dataset GROUP BY e.user_id ORDER BY e.user_id""",
                params={"dataset": dataset_id, "names": names},
            ).to_arrow_table()
        finally:
            cur.close()
        return table, names

    def planted_frame(self, dataset_id: int) -> pd.DataFrame:
        """Planted interests of a generated dataset (empty for uploaded data)."""
        return self.query_df(
            """SELECT user_id, interests, initial_interest, final_interest, shift_at
               FROM planted_interests WHERE dataset_id = ? ORDER BY user_id""",
            [dataset_id],
        )

    def sequences_arrow(self, dataset_id: int):
        """Per-user item sequences as an Arrow table (user_id, items: list<int32>) + vocabulary.

        Items are indexed 1..n by popularity (most popular first, ties by id); index 0
        is padding. Users are ordered by id, each history by ``pos``.
        """
        cur = self._con.cursor()  # a private cursor: relational results must not interleave
        vocab = cur.sql(
            """SELECT item_id,
                      CAST(row_number() OVER (ORDER BY count(*) DESC, item_id) AS INTEGER) AS idx
               FROM events WHERE dataset_id = $dataset
               GROUP BY item_id ORDER BY idx""",
            params={"dataset": dataset_id},
        ).to_arrow_table()
        cur.register("vocab_arrow", vocab)
        try:
            table = cur.sql(
                """SELECT e.user_id, list(v.idx ORDER BY e.pos) AS items
                   FROM events e JOIN vocab_arrow v USING (item_id)
                   WHERE e.dataset_id = $dataset
                   GROUP BY e.user_id ORDER BY e.user_id""",
                params={"dataset": dataset_id},
            ).to_arrow_table()
        finally:
            cur.close()
        return table, vocab


def _insert_staged_rows(cur: duckdb.DuckDBPyConnection, dataset_id: int, with_items: bool) -> None:
    """Copy the staged events (numbered by ``pos`` within each user) and items to a new id."""
    cur.execute(
        """INSERT INTO events
           SELECT ?, user_id, item_id, ts,
                  CAST(row_number() OVER (PARTITION BY user_id
                                          ORDER BY ts NULLS FIRST, rowid) - 1 AS INTEGER),
                  event_type, value
           FROM stage_events""",
        [dataset_id],
    )
    if with_items:
        cur.execute(
            "INSERT INTO items SELECT ?, item_id, title, categories, text FROM stage_items",
            [dataset_id],
        )


def _dataset_figures(cur: duckdb.DuckDBPyConnection, dataset_id: int) -> tuple[Any, ...]:
    """(events, users, items, has time, item rows, fingerprint) of a dataset's new rows.

    One pass over the new events for the counts and the fingerprint; events and item rows
    both count: new titles or categories make a new dataset version.
    """
    return cur.execute(
        """SELECT e.n, e.users, e.items, e.has_time, i.n,
                  printf('%016x', hash(e.h, i.h)) || '-' || e.n
           FROM (SELECT count(*) AS n, count(*) FILTER (WHERE pos = 0) AS users,
                        count(DISTINCT item_id) AS items, count(ts) > 0 AS has_time,
                        coalesce(bit_xor(hash(user_id, item_id, ts, pos, event_type, value)),
                                 0) AS h
                 FROM events WHERE dataset_id = $id) e,
                (SELECT count(*) AS n,
                        coalesce(bit_xor(hash(item_id, title, categories, text)), 0) AS h
                 FROM items WHERE dataset_id = $id) i""",
        {"id": dataset_id},
    ).fetchall()[0]
