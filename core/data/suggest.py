"""Column-mapping suggestions: which column of a log plays which role, read from the data.

Every column is scored for every role from its **name** and its **content** in a sample
of the file (the first :data:`SAMPLE_ROWS` rows, every value as written):

- what a value looks like: distinct count and ratio, numbers, integers, times, id-like
  short tokens against free text (long, many words);
- how columns relate: a column whose every value belongs to a single user is an order,
  invoice or session key, not an item; an item column's values are shared by many users;
  a column constant per item (a title, a category, a price) is an item detail, and one
  constant per user (a country) is a user attribute, neither an item nor an event type.

A name match is kept whatever the other roles find, except where the content rules it
out (a "time" column whose values are not times). Each choice carries a reason in words
and says whether it is *confident* (the name says so, or the content leaves no doubt) or a
*guess*; the command line refuses to load a file with a header whose user or item column
is a guess. Files without a header keep the shape rule: user, item, then a time and a
value column found by their content.

The name rules are in :mod:`core.data.column_names`, the profiles of the content and the
relations between columns in :mod:`core.data.column_profiles`; this module weighs them.
Pure pandas on a sample of at most a few MB: no database access, nothing written.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from core.data.column_names import EVENT_NAMES, ITEM_NAMES, has_word, is_key_name, name_rank
from core.data.column_profiles import Profile, Relations, profile, time_ok, type_ok, value_ok
from core.store.time_sql import NUMERIC_TYPE

EVENT_ROLES = ("user", "item", "time", "type", "value")
ITEM_ROLES = ("item", "title", "categories", "text")
# Item details a behaviour log may carry on every row (one value per item).
LOG_ITEM_ROLES = ("title", "categories", "text")

SAMPLE_ROWS = 20_000  # rows read to suggest a mapping
SAMPLE_CELLS = 2_000_000  # at most rows x columns of text in the sample

_INT_TYPE = re.compile(r"^(TINYINT|SMALLINT|INTEGER|BIGINT|HUGEINT|U\w*INT)")


@dataclass(frozen=True)
class Guess:
    """One role's suggested column, why, and whether it is confident or a guess."""

    column: str | None
    reason: str = ""
    confident: bool = False


@dataclass
class Suggestion:
    """Suggested columns for the event roles and for item details carried by the log.

    Attributes:
        events: role (:data:`EVENT_ROLES`) -> guess.
        items: item-detail role (:data:`LOG_ITEM_ROLES`) -> guess, for columns whose value
            is constant for each item (empty when none is).
        notes: what else the content showed (order keys, user attributes...).
    """

    events: dict[str, Guess]
    items: dict[str, Guess] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def column(self, role: str) -> str | None:
        guess = self.events.get(role)
        return guess.column if guess else None

    @property
    def confident(self) -> bool:
        """Whether both id columns are beyond doubt (a name match, or the shape rule)."""
        return all(self.events[r].column and self.events[r].confident for r in ("user", "item"))

    def unsure_ids(self) -> list[str]:
        """The id roles that are missing or only guessed."""
        return [
            r for r in ("user", "item") if not (self.events[r].column and self.events[r].confident)
        ]


def suggest_columns(
    columns: Sequence[str],
    types: dict[str, str],
    sample: pd.DataFrame,
    has_header: bool,
) -> Suggestion:
    """Suggest the event roles and the log's item details from names and content.

    Args:
        columns: the file's columns, in order.
        types: column -> type as DuckDB's reader sniffed it.
        sample: the first rows, every value as text (:meth:`core.store.Store.sample_text`).
        has_header: whether the first line named the columns (else the shape rule holds).
    """
    sample = _sample_of(sample, columns)
    profiles = profile(sample, types)
    rel = Relations(sample)
    if has_header:
        events, notes = _by_name_and_content(list(columns), profiles, rel)
    else:
        events, notes = _by_shape(list(columns), profiles, rel)
    items = _item_details(list(columns), profiles, rel, events)
    return Suggestion(events, items, notes)


def _sample_of(sample: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """The sample as trimmed text, empty values missing (as the loader treats them)."""
    out = {}
    for col in columns:
        values = sample[col] if col in sample.columns else pd.Series([None] * len(sample))
        text = values.astype("string").str.strip()
        out[col] = text.mask(text == "").astype(object).where(text.notna() & (text != ""), None)
    return pd.DataFrame(out, index=sample.index)


def _fmt(x: float) -> str:
    return f"{x:,.0f}" if x >= 10 else f"{x:,.1f}"


@dataclass
class _Picks:
    """The roles chosen so far, the columns they took, and what was noticed on the way."""

    chosen: dict[str, Guess] = field(default_factory=dict)
    taken: set[str] = field(default_factory=set)
    notes: list[str] = field(default_factory=list)

    def take(self, role: str, guess: Guess) -> None:
        self.chosen[role] = guess
        if guess.column:
            self.taken.add(guess.column)


def _by_name_and_content(
    columns: list[str], profiles: dict[str, Profile], rel: Relations
) -> tuple[dict[str, Guess], list[str]]:
    """A header names the columns: names first, then content for the roles still open."""
    picks = _Picks()
    _match_names(picks, columns, profiles)
    _prefer_owner_of_session(picks, columns, profiles, rel)
    _match_name_words(picks, columns, profiles)
    _ids_by_content(picks, columns, profiles, rel)
    _details_by_content(picks, columns, profiles, rel)
    return {role: picks.chosen[role] for role in EVENT_ROLES}, picks.notes


def _match_names(picks: _Picks, columns: list[str], profiles: dict[str, Profile]) -> None:
    """1. Exact name matches, role by role; the content may only veto a match it contradicts."""
    for role in EVENT_ROLES:
        ranked = sorted(
            (rank, i, c)
            for i, c in enumerate(columns)
            if c not in picks.taken and (rank := name_rank(c, EVENT_NAMES, role)) is not None
        )
        for _, _, col in ranked:
            p = profiles[col]
            veto = _veto(role, p)
            if veto:
                picks.notes.append(f"{col!r} is named like the {role} column, but {veto}")
                continue
            picks.take(role, Guess(col, "name matches", True))
            break


def _prefer_owner_of_session(
    picks: _Picks, columns: list[str], profiles: dict[str, Profile], rel: Relations
) -> None:
    """A session (order) column named like a user that nests in a customer column: the
    customer is the user, the session a key of theirs."""
    if "user" not in picks.chosen or not is_key_name(picks.chosen["user"].column):
        return
    key = picks.chosen["user"].column
    owner = next(
        (
            c
            for c in columns
            if c not in picks.taken
            and has_word(c, "user")
            and not is_key_name(c)
            and profiles[c].id_like
            and 2 <= profiles[c].distinct < profiles[key].distinct
            and rel.determines(key, c)
        ),
        None,
    )
    if owner:
        picks.taken.discard(key)
        picks.take("user", Guess(owner, f"the name says user and {key!r} nests in it", True))


def _match_name_words(picks: _Picks, columns: list[str], profiles: dict[str, Profile]) -> None:
    """2. Names that contain a role's word ("Customer No", "InvoiceDate"), content agreeing."""
    for role in ("user", "item", "time"):
        if role in picks.chosen:
            continue
        for col in columns:
            p = profiles[col]
            if col in picks.taken or not has_word(col, role):
                continue
            if role == "time" and time_ok(p):
                picks.take(
                    role, Guess(col, "the name says time and the values read as times", True)
                )
                break
            if role != "time" and p.id_like and not is_key_name(col):
                picks.take(
                    role, Guess(col, f"the name says {role} and the values look like ids", True)
                )
                break


def _ids_by_content(
    picks: _Picks, columns: list[str], profiles: dict[str, Profile], rel: Relations
) -> None:
    """3. Content, for the id roles still open; order keys are noted and never an item."""
    chosen, taken = picks.chosen, picks.taken
    keys = _order_keys(columns, profiles, rel, chosen.get("user"), taken)
    for col, owner in keys.items():
        picks.notes.append(
            f"{col!r}: every value belongs to a single {owner}, so it is an order, invoice "
            "or session key, not an item"
        )
    if "user" not in chosen:
        picks.take("user", _content_user(columns, profiles, rel, taken, keys))
    if "item" not in chosen:
        user = chosen["user"].column
        picks.take("item", _content_item(columns, profiles, rel, taken, keys, user, chosen["user"]))


def _details_by_content(
    picks: _Picks, columns: list[str], profiles: dict[str, Profile], rel: Relations
) -> None:
    """4. Time, type and value by content."""
    chosen, taken = picks.chosen, picks.taken
    user, item = chosen["user"].column, chosen["item"].column
    if "time" not in chosen:
        picks.take("time", _content_time(columns, profiles, taken))
    if "type" not in chosen:
        picks.take("type", _content_type(columns, profiles, rel, taken, user, item, picks.notes))
    if "value" not in chosen:
        picks.take("value", _content_value(columns, profiles, rel, taken, item))


def _content_time(columns: list[str], profiles: dict[str, Profile], taken: set[str]) -> Guess:
    times = [c for c in columns if c not in taken and time_ok(profiles[c])]
    times.sort(key=lambda c: -profiles[c].distinct)
    if not times:
        return Guess(None, "no column reads as times: events keep file order")
    return Guess(
        times[0],
        f"guessed from content: {profiles[times[0]].timelike:.0%} of the values read as times",
    )


def _veto(role: str, p: Profile) -> str | None:
    """Why the content rules out a column whose name matched ``role`` (None: it does not).

    Only free text or a crowd of values rule out an event type; every other name match
    stands, and the load explains values that do not fit (unparseable times, text ratings).
    """
    if p.filled == 0:
        return None  # nothing to contradict the name (a header-only file)
    if role == "type" and not type_ok(p):
        return (
            "it holds free text, not a few event types"
            if p.free_text
            else f"it has {p.distinct:,} distinct values, too many for event types"
        )
    return None


def _order_keys(
    columns: list[str],
    profiles: dict[str, Profile],
    rel: Relations,
    user: Guess | None,
    taken: set[str],
) -> dict[str, str]:
    """Columns whose every value belongs to a single user (or user candidate): order keys.

    Returns column -> the column it nests in.
    """
    owners = [user.column] if user and user.column else []
    if not owners:
        owners = [c for c in columns if profiles[c].id_like and c not in taken]
    keys: dict[str, str] = {}
    for col in columns:
        p = profiles[col]
        if col in taken or not p.id_like or p.rows_per_value < 1.05:
            continue
        for owner in owners:
            q = profiles[owner]
            if owner == col or q.distinct < 2 or q.distinct >= p.distinct:
                continue
            if rel.determines(col, owner):
                keys[col] = owner
                break
    return keys


def _user_attribute(col: str, user: str, profiles: dict[str, Profile], rel: Relations) -> bool:
    """Whether ``col`` is constant for each user who has several rows (a country)."""
    u = profiles[user]
    return u.distinct > 1 and u.rows_per_value >= 2 and rel.determines(user, col)


def _content_user(
    columns: list[str],
    profiles: dict[str, Profile],
    rel: Relations,
    taken: set[str],
    keys: dict[str, str],
) -> Guess:
    candidates = [
        c
        for c in columns
        if c not in taken
        and c not in keys
        and profiles[c].id_like
        and profiles[c].rows_per_value > 1.0
        and profiles[c].distinct >= 2
    ]
    if not candidates:
        return Guess(None, "no column looks like user ids")
    owners = set(keys.values())
    # A column that order keys nest into is the user; else the first id-like column.
    col = next((c for c in candidates if c in owners), candidates[0])
    p = profiles[col]
    return Guess(
        col,
        f"guessed from content: {p.distinct:,} distinct values, "
        f"{_fmt(p.rows_per_value)} rows each on average",
    )


def _content_item(
    columns: list[str],
    profiles: dict[str, Profile],
    rel: Relations,
    taken: set[str],
    keys: dict[str, str],
    user: str | None,
    user_guess: Guess,
) -> Guess:
    scored: list[tuple[float, str, float]] = []
    for col in columns:
        p = profiles[col]
        if col in taken or col in keys or not p.id_like:
            continue
        if user:
            if rel.determines(col, user) and p.rows_per_value >= 1.05:
                continue  # an order key of this user
            if _user_attribute(col, user, profiles, rel):
                continue  # a country, a segment
            sharing = rel.shared(col, user)
        else:
            sharing = p.rows_per_value
        if sharing < 1.0:
            continue
        scored.append((np.log1p(p.distinct) * np.log1p(sharing), col, sharing))
    if not scored:
        return Guess(None, "no column looks like item ids")
    scored.sort(reverse=True)
    _, col, sharing = scored[0]
    p = profiles[col]
    who = "user" if user else "row"
    reason = (
        f"guessed from content: {p.distinct:,} distinct values, each shared by "
        f"{_fmt(sharing)} {who}s on average"
    )
    # Beyond doubt when the user is known and this is the only column that behaves like items.
    sure = bool(user) and user_guess.confident and len(scored) == 1 and sharing >= 1.5
    if not sure and len(scored) > 1:
        reason += f" (next best: {scored[1][1]!r})"
    return Guess(col, reason, sure)


def _content_type(
    columns: list[str],
    profiles: dict[str, Profile],
    rel: Relations,
    taken: set[str],
    user: str | None,
    item: str | None,
    notes: list[str],
) -> Guess:
    for col in columns:
        p = profiles[col]
        if col in taken or not type_ok(p) or p.distinct < 2:
            continue
        if user and _user_attribute(col, user, profiles, rel):
            notes.append(
                f"{col!r} is the same on every row of a {user}: a user attribute, not an event type"
            )
            continue
        if item and profiles[item].distinct > 1 and rel.determines(item, col):
            continue  # constant per item: an item detail
        return Guess(col, f"guessed from content: {p.distinct} distinct labels")
    return Guess(None, "no column of a few short labels")


def _content_value(
    columns: list[str],
    profiles: dict[str, Profile],
    rel: Relations,
    taken: set[str],
    item: str | None,
) -> Guess:
    for col in columns:
        p = profiles[col]
        if col in taken or not value_ok(p) or p.distinct < 2 or p.distinct > 1000:
            continue
        if item and profiles[item].distinct > 1 and rel.determines(item, col):
            continue  # constant per item: a price, not an event's value
        return Guess(col, f"guessed from content: numbers, {p.distinct:,} distinct values")
    return Guess(None, "no numeric column for a rating or weight")


def _by_shape(
    columns: list[str], profiles: dict[str, Profile], rel: Relations
) -> tuple[dict[str, Guess], list[str]]:
    """No header: column 1 is the user, column 2 the item; time and value by content."""
    chosen = {role: Guess(None) for role in EVENT_ROLES}
    if len(columns) >= 2:
        chosen["user"] = Guess(columns[0], "no header: the first column (shape rule)", True)
        chosen["item"] = Guess(columns[1], "no header: the second column (shape rule)", True)
    for col in columns[2:]:
        p = profiles[col]
        kind = p.kind
        if chosen["time"].column is None and (
            kind.startswith(("TIMESTAMP", "DATE"))
            or (_INT_TYPE.match(kind) and p.numeric == 1.0 and p.timelike == 1.0)
        ):
            chosen["time"] = Guess(col, "values read as times", True)
        elif chosen["value"].column is None and NUMERIC_TYPE.match(kind):
            chosen["value"] = Guess(col, "numbers", True)
        elif chosen["type"].column is None and kind == "VARCHAR" and type_ok(p):
            chosen["type"] = Guess(col, f"a few short labels ({p.distinct} distinct)", True)
    return chosen, []


def _item_details(
    columns: list[str],
    profiles: dict[str, Profile],
    rel: Relations,
    events: dict[str, Guess],
) -> dict[str, Guess]:
    """Columns of the log whose value is constant for each item: title, categories, text."""
    item = events["item"].column
    if not item or profiles[item].distinct < 2:
        return {}
    used = {g.column for g in events.values() if g.column}
    user = events["user"].column
    found: dict[str, Guess] = {}
    for col in columns:
        p = profiles[col]
        if col in used or p.filled == 0 or p.numeric >= 0.95:
            continue  # numbers (a price) have no place in the catalogue
        if not rel.determines(item, col, tolerance=0.05):
            continue
        if user and p.distinct < profiles[item].distinct / 2:
            if _user_attribute(col, user, profiles, rel):
                continue  # constant per user too, with few values: a user attribute
        role, how = _item_role(col, p, profiles[item])
        if role and role not in found:
            found[role] = Guess(
                col,
                f"{how}; one value per item ({p.distinct:,} distinct)",
                how == "name matches",
            )
    return {role: found[role] for role in LOG_ITEM_ROLES if role in found}


def _item_role(col: str, p: Profile, item: Profile) -> tuple[str | None, str]:
    for role in LOG_ITEM_ROLES:
        if name_rank(col, ITEM_NAMES, role) is not None:
            return role, "name matches"
    if p.timelike >= 0.8:
        return None, ""
    if p.mean_words >= 8 or p.mean_len >= 60:
        return "text", "guessed from content: long free text"
    if p.free_text or (p.distinct >= 0.5 * item.distinct and p.mean_len >= 4):
        return "title", "guessed from content: a text per item"
    if p.distinct <= max(2, item.distinct / 5):
        return "categories", f"guessed from content: {p.distinct:,} labels shared by items"
    return None, ""
