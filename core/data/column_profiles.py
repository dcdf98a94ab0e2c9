"""Content rules of the mapping suggestions: what a column's values look like.

A :class:`Profile` describes one column of the sample (distinct values, numbers,
times, id-like tokens against free text); :class:`Relations` tells how two columns
relate (whether one determines the other, how many of one go with a value of the
other); :func:`time_ok`, :func:`type_ok` and :func:`value_ok` say whether a profile can
play the time, event-type or value role. :mod:`core.data.suggest` combines them with the
name rules of :mod:`core.data.column_names`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Profile:
    """What a column's values look like in the sample.

    Attributes:
        name: the column; kind: its type as DuckDB's reader sniffed it.
        filled: non-empty values; distinct: distinct non-empty values.
        numeric: share of values that are numbers; integral: share that are whole numbers.
        negative: share of numbers below zero.
        timelike: share that read as times (a date-time type, ISO text, or numbers of
            Unix-timestamp size in a column of many distinct values).
        mean_len: mean length in characters; mean_words: mean number of words.
    """

    name: str
    kind: str
    filled: int
    distinct: int
    numeric: float
    integral: float
    negative: float
    timelike: float
    mean_len: float
    mean_words: float

    @property
    def rows_per_value(self) -> float:
        return self.filled / max(1, self.distinct)

    @property
    def free_text(self) -> bool:
        """Sentences or titles rather than codes: several words, or long with spaces."""
        return self.numeric < 0.5 and (
            self.mean_words >= 3 or (self.mean_len >= 30 and self.mean_words >= 2)
        )

    @property
    def id_like(self) -> bool:
        """Could hold ids: short tokens or whole numbers, neither times nor free text."""
        if self.filled == 0 or self.distinct < 2 or self.free_text or self.timelike >= 0.8:
            return False
        if self.numeric >= 0.95:
            return self.integral >= 0.99 and self.negative == 0
        return self.mean_len <= 64


def profile(sample: pd.DataFrame, types: dict[str, str]) -> dict[str, Profile]:
    """Profiles of every column of a text sample (see :class:`Profile`)."""
    return {col: _profile(col, sample[col], types.get(col, "")) for col in sample.columns}


def _profile(name: str, values: pd.Series, kind: str) -> Profile:
    text = values.dropna().astype(str).str.strip()
    text = text[text != ""]
    n = len(text)
    if n == 0:
        return Profile(name, kind, 0, 0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
    distinct = int(text.nunique())
    numbers = pd.to_numeric(text, errors="coerce")
    is_num = numbers.notna()
    numeric = float(is_num.mean())
    nums = numbers[is_num].to_numpy(dtype=float)
    integral = float(np.mean(np.isfinite(nums) & (nums == np.round(nums)))) if len(nums) else 0.0
    negative = float(np.mean(nums < 0)) if len(nums) else 0.0
    lengths = text.str.len()
    words = text.str.count(r"\s+") + 1
    if kind.startswith(("TIMESTAMP", "DATE")):
        timelike = 1.0
    else:
        # Unix seconds (1973-2286) or milliseconds, or ISO date-times (on the first 200 texts).
        size = np.abs(numbers.to_numpy(dtype=float, na_value=np.nan))
        unix = (size >= 1e8) & (size < 1e14)
        words_ = text[~is_num].head(200)
        iso = pd.to_datetime(words_, errors="coerce", format="ISO8601", utc=True).notna()
        iso_share = float(iso.mean()) if len(words_) else 0.0
        timelike = float(np.mean(unix)) + (1 - numeric) * iso_share
    return Profile(
        name,
        kind,
        n,
        distinct,
        numeric,
        integral,
        negative,
        timelike,
        float(lengths.mean()),
        float(words.mean()),
    )


class Relations:
    """Functional dependencies and sharing between columns of the sample (memoised)."""

    def __init__(self, sample: pd.DataFrame) -> None:
        self.sample = sample
        self._cache: dict[tuple[str, str], tuple[float, float]] = {}

    def _pair(self, a: str, b: str) -> tuple[float, float]:
        """(share of a's values that go with more than one b, mean distinct b per a value)."""
        key = (a, b)
        if key not in self._cache:
            both = self.sample[[a, b]].dropna()
            if both.empty:
                self._cache[key] = (1.0, 0.0)
            else:
                per = both.groupby(a, sort=False)[b].nunique()
                self._cache[key] = (float((per > 1).mean()), float(per.mean()))
        return self._cache[key]

    def determines(self, a: str, b: str, tolerance: float = 0.01) -> bool:
        """Whether each value of ``a`` goes with a single value of ``b`` (nearly always)."""
        return self._pair(a, b)[0] <= tolerance

    def shared(self, a: str, by: str) -> float:
        """Mean number of distinct ``by`` values per value of ``a``."""
        return self._pair(a, by)[1]


def time_ok(p: Profile) -> bool:
    """Values that read as times; plain numbers must also be many distinct values."""
    if p.filled == 0 or p.timelike < 0.8:
        return False
    return (
        p.numeric < 0.5
        or p.kind.startswith(("TIMESTAMP", "DATE"))
        or (p.distinct >= max(3, 0.05 * p.filled))
    )


def type_ok(p: Profile) -> bool:
    """Few distinct short labels: what an event type looks like (never free text)."""
    return (
        p.filled > 0
        and not p.free_text
        and p.numeric < 0.5
        and 1 <= p.distinct <= 100
        and p.distinct <= max(3, 0.2 * p.filled)
    )


def value_ok(p: Profile) -> bool:
    """Numbers that are not times: what a rating or weight looks like."""
    return p.filled > 0 and p.numeric >= 0.95 and p.timelike < 0.8
