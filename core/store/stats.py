"""Dataset exploration: the headline figures of a dataset (Data page, ``stats`` CLI) and
the frames behind the Data page's charts, all computed in DuckDB.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from core.store.catalogue import Catalogue


class Stats(Catalogue):
    """Figures and chart frames of one dataset."""

    def dataset_stats(self, name: str) -> dict[str, Any]:
        """Headline figures of a dataset, computed in DuckDB."""
        info = self.get_dataset(name)
        cur = self.cursor()
        did = info.dataset_id
        first, last, n_types = cur.execute(
            "SELECT min(ts), max(ts), count(DISTINCT event_type) FROM events WHERE dataset_id = ?",
            [did],
        ).fetchall()[0]
        lengths = cur.execute(
            """SELECT min(n), quantile_cont(n, 0.5), avg(n), max(n) FROM (
                   SELECT count(*) AS n FROM events WHERE dataset_id = ? GROUP BY user_id)""",
            [did],
        ).fetchall()[0]
        sample_users = self._most_active(did, "user_id")
        sample_items = self._most_active(did, "item_id")
        cells = info.n_users * info.n_items
        return {
            "dataset": info.name,
            "events": info.n_events,
            "users": info.n_users,
            "items": info.n_items,
            "item_rows": info.n_item_rows,
            "density": info.n_events / cells if cells else 0.0,
            "first_event": first.isoformat(sep=" ") if first else None,
            "last_event": last.isoformat(sep=" ") if last else None,
            "event_types": int(n_types),
            "events_per_user": {
                "min": _num(lengths[0]),
                "median": _num(lengths[1]),
                "mean": _num(lengths[2]),
                "max": _num(lengths[3]),
            },
            "popularity_gini": self.popularity_gini(did),
            "sample_users": sample_users,
            "sample_items": sample_items,
            "created": info.created.isoformat(timespec="seconds"),
            "sources": list(info.sources),
            "fingerprint": info.fingerprint,
            "report": info.report,
        }

    def _most_active(self, dataset_id: int, column: str, limit: int = 10) -> list[str]:
        """The ``limit`` users or items (``column``) with the most events, ties by id."""
        if column not in ("user_id", "item_id"):
            raise ValueError(f"not an id column: {column}")
        rows = (
            self.cursor()
            .execute(
                f"""SELECT {column} FROM events WHERE dataset_id = ?
                    GROUP BY {column} ORDER BY count(*) DESC, {column} LIMIT {int(limit)}""",
                [dataset_id],
            )
            .fetchall()
        )
        return [r[0] for r in rows]

    def popularity_gini(self, dataset_id: int) -> float:
        """Gini coefficient of item popularity (0 = all items equally popular)."""
        rows = (
            self.cursor()
            .execute(
                """SELECT sum((2 * r - n - 1) * c) / (n * sum(c)) FROM (
                       SELECT c, row_number() OVER (ORDER BY c) AS r, count(*) OVER () AS n
                       FROM (SELECT count(*) AS c FROM events WHERE dataset_id = ?
                             GROUP BY item_id))
                   GROUP BY n""",
                [dataset_id],
            )
            .fetchall()
        )
        return float(rows[0][0]) if rows and rows[0][0] is not None else 0.0

    def events_over_time(self, dataset_id: int) -> pd.DataFrame:
        """Events per day (or week when the range is long): columns period, events."""
        cur = self.cursor()
        span = cur.execute(
            "SELECT date_diff('day', min(ts), max(ts)) FROM events WHERE dataset_id = ?",
            [dataset_id],
        ).fetchall()[0][0]
        if span is None:
            return pd.DataFrame({"period": [], "events": []})
        unit = "day" if span <= 400 else ("week" if span <= 3000 else "month")
        return cur.execute(
            f"""SELECT date_trunc('{unit}', ts) AS period, count(*) AS events
                FROM events WHERE dataset_id = ? AND ts IS NOT NULL
                GROUP BY 1 ORDER BY 1""",
            [dataset_id],
        ).df()

    def events_per_user(self, dataset_id: int) -> pd.DataFrame:
        """History length of every user: column events."""
        return self.query_df(
            "SELECT count(*) AS events FROM events WHERE dataset_id = ? GROUP BY user_id",
            [dataset_id],
        )

    def item_popularity(self, dataset_id: int) -> pd.DataFrame:
        """Events per item, most popular first: columns rank, item_id, events."""
        return self.query_df(
            """SELECT row_number() OVER (ORDER BY count(*) DESC, item_id) AS rank,
                      item_id, count(*) AS events
               FROM events WHERE dataset_id = ? GROUP BY item_id ORDER BY rank""",
            [dataset_id],
        )

    def event_type_mix(self, dataset_id: int) -> pd.DataFrame:
        """Events per event type: columns event_type, events."""
        return self.query_df(
            """SELECT coalesce(event_type, '(none)') AS event_type, count(*) AS events
               FROM events WHERE dataset_id = ? GROUP BY 1 ORDER BY 2 DESC""",
            [dataset_id],
        )

    def top_categories(self, dataset_id: int, limit: int = 20) -> pd.DataFrame:
        """Events per item category (an event counts once per category of its item)."""
        return self.query_df(
            f"""SELECT category, count(*) AS events FROM (
                    SELECT unnest(i.categories) AS category
                    FROM events e JOIN items i
                      ON i.dataset_id = e.dataset_id AND i.item_id = e.item_id
                    WHERE e.dataset_id = ?)
                GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT {int(limit)}""",
            [dataset_id],
        )


def _num(value: Any) -> float | int | None:
    if value is None:
        return None
    f = float(value)
    return int(f) if f.is_integer() else round(f, 2)
