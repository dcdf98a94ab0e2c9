"""Deterministic demo data: an e-commerce behaviour log with planted structure.

`generate_demo` builds a small shop (items in readable categories, each with a
title, tags, a short description and a fixed price) and a log of views, carts
and purchases by a few thousand users. Everything comes from one seeded
`numpy.random.Generator`, so the same arguments always give identical frames.
The shop itself (the categories' vocabulary, read from ``demo_vocabulary.json``,
and the items drawn from it) is built by :mod:`core.data.demo_catalog`; this
module draws the behaviour log over it.

What is planted, and why, so that every part of the app has something to find:

* Interests that drift. Each user gets 1-3 categories (`planted.interests`).
  Users with two or more start in `interests[0]` and switch to `interests[-1]`
  at event `shift_at`; any middle interest stays in the background. A step
  (one visited item) comes from the dominant interest with probability
  ``P_DOMINANT``, from another planted interest with ``P_SIDE`` and from a
  uniformly random category otherwise. The drift is what a sequential model
  should follow and a static user profile should miss.
* Item chains. Within a category, items in item-id order form a cycle; the
  planted successors of an item are the next ``N_SUCCESSORS`` items of that
  cycle (see `core.data.demo_catalog.planted_successors`). When a user
  returns to a category, the next item follows the chain from the user's
  previous item there with probability ``P_FOLLOW``; otherwise it is drawn by
  popularity. This is the signal that lets a sequence model beat popularity.
* Zipf popularity inside each category (over a random order of its items),
  so popularity is a real but weaker baseline.
* A purchase funnel. Each step is a view, optionally followed by a cart and a
  purchase of the same item; purchases are far more likely after a cart.
  ``events.value`` is the item's price for carts and purchases and ``1.0``
  for views, so summing it over purchases gives revenue.
* Text that clusters. Titles and descriptions reuse each category's
  vocabulary, so a text encoder groups items by category.

Timestamps are naive UTC from 2026-03-01 over about six months, grouped into
sessions (minutes apart within a session, days between sessions) and strictly
increasing per user. History lengths are heavy-tailed: at least 5 events,
median about 25, at most 200.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from core.common.progress import ProgressFn
from core.data.demo_catalog import (
    CATEGORIES,
    MIN_ITEMS_PER_CATEGORY,
    N_SUCCESSORS,
    SPECS,
    Catalog,
    CategorySpec,
    build_catalog,
    format_ids,
)
from core.data.ingest import ingest
from core.data.loading import IngestResult
from core.data.mapping import EventMapping, ItemMapping
from core.store import Store

__all__ = [
    "DemoData",
    "generate_demo",
    "load_demo",
]

START = np.datetime64("2026-03-01T00:00:00", "us")
HORIZON_DAYS = 183.0
START_WINDOW_DAYS = 45.0

MIN_EVENTS = 5
MAX_EVENTS = 200
LENGTH_MEDIAN_EXTRA = 20.0  # median history length is MIN_EVENTS + this
LENGTH_SIGMA = 0.8

INTEREST_COUNT_PROBS = (0.25, 0.45, 0.30)  # P(1, 2, 3 planted interests)
SHIFT_WINDOW = (0.3, 0.7)  # shift_at falls in this fraction of the history
P_DOMINANT = 0.78
P_SIDE = 0.12  # the rest is a uniformly random category

SUCCESSOR_WEIGHTS = (0.6, 0.25, 0.15)  # P(next is the 1st, 2nd, 3rd successor)
P_FOLLOW = 0.65
INTEREST_WEIGHT_CONCENTRATION = 6.0

EVENT_TYPES = ("view", "cart", "purchase")
# A step is one visited item; its kind fixes the events it emits
# (codes index EVENT_TYPES, -1 = none).
_STEP_EVENTS = np.array([[0, -1, -1], [0, 1, -1], [0, 1, 2], [0, 2, -1]])
_STEP_SIZES = (_STEP_EVENTS >= 0).sum(axis=1)
STEP_KIND_PROBS = (
    0.785,
    0.13,
    0.07,
    0.015,
)  # view; view+cart; view+cart+purchase; view+purchase

P_NEW_SESSION = 0.2
MIN_SESSION_GAP_S = 3600.0
THINK_TIME_S = (15.0, 150.0)  # minimum and mean extra gap between items of a session
CART_DELAY_S = (10.0, 45.0)
PURCHASE_DELAY_S = (20.0, 90.0)
_DAY_S = 86_400.0


@dataclass(frozen=True)
class DemoData:
    """The generated shop, its behaviour log and the planted ground truth.

    Attributes:
        events: user_id, item_id, timestamp (datetime64[us], naive UTC),
            event_type ("view", "cart" or "purchase") and value (the item's
            price for carts and purchases, 1.0 for views); sorted by user_id
            then timestamp.
        items: item_id, title, categories (list of the main category and
            possibly a sub-tag) and text (one or two sentences).
        planted: One row per user: user_id, interests (1-3 categories in the
            order the user moves through them), initial_interest,
            final_interest, shift_at (index into the user's time-ordered
            events where final_interest becomes dominant; 0 if the user never
            shifts) and n_events.
    """

    events: pd.DataFrame
    items: pd.DataFrame
    planted: pd.DataFrame


@dataclass(frozen=True)
class _Steps:
    """The visited items of all users, in user then time order.

    Attributes:
        user: User index of each step.
        kind: Row of `_STEP_EVENTS` giving the step's events.
        start: Position of the step's first event in the user's history.
        item: Item index of the step.
    """

    user: np.ndarray
    kind: np.ndarray
    start: np.ndarray
    item: np.ndarray


def generate_demo(
    n_users: int = 3000, n_items: int = 800, n_categories: int = 12, seed: int = 7
) -> DemoData:
    """Generate the demo shop and behaviour log.

    Args:
        n_users: Number of users, each with at least 5 events.
        n_items: Number of items, spread unevenly over the categories.
        n_categories: How many of `CATEGORIES` to use (the first ones).
        seed: Seed of the only random generator used.

    Returns:
        The events, items and planted ground truth, identical for identical
        arguments.

    Raises:
        ValueError: If an argument is out of range.
    """
    _check_arguments(n_users, n_items, n_categories)
    rng = np.random.default_rng(seed)
    specs = SPECS[:n_categories]
    catalog, items = build_catalog(rng, specs, n_items)
    lengths = _draw_lengths(rng, n_users)
    interests, n_interests = _draw_interests(rng, n_users, n_categories)
    user, kind, start = _draw_step_kinds(rng, lengths)
    shift_at = _draw_shift_points(rng, lengths, n_interests, user, start)
    category = _draw_step_categories(
        rng, interests, n_interests, n_categories, shift_at, user, start
    )
    item = _draw_step_items(rng, catalog, user, category)
    steps = _Steps(user=user, kind=kind, start=start, item=item)
    user_ids = format_ids("u", n_users, 5)
    events = _build_events(
        rng, steps, lengths, catalog.price, user_ids, items["item_id"].to_numpy()
    )
    planted = _build_planted(user_ids, specs, interests, n_interests, shift_at, lengths)
    return DemoData(events=events, items=items, planted=planted)


def _check_arguments(n_users: int, n_items: int, n_categories: int) -> None:
    """Raise ValueError for arguments the generator cannot honour.

    Args:
        n_users: Number of users.
        n_items: Number of items.
        n_categories: Number of categories.
    """
    if n_users < 1:
        raise ValueError(f"n_users must be at least 1, got {n_users}")
    if not 1 <= n_categories <= len(CATEGORIES):
        raise ValueError(f"n_categories must be in 1..{len(CATEGORIES)}, got {n_categories}")
    if n_items < MIN_ITEMS_PER_CATEGORY * n_categories:
        raise ValueError(
            f"n_items must be at least {MIN_ITEMS_PER_CATEGORY * n_categories}, got {n_items}"
        )


def _draw_lengths(rng: np.random.Generator, n_users: int) -> np.ndarray:
    """Draw heavy-tailed history lengths in ``MIN_EVENTS..MAX_EVENTS``.

    Args:
        rng: The generator.
        n_users: Number of users.
    """
    extra = rng.lognormal(np.log(LENGTH_MEDIAN_EXTRA), LENGTH_SIGMA, n_users)
    return np.minimum(MIN_EVENTS + np.floor(extra), MAX_EVENTS).astype(np.int64)


def _draw_interests(
    rng: np.random.Generator, n_users: int, n_categories: int
) -> tuple[np.ndarray, np.ndarray]:
    """Draw each user's planted categories, without repeats.

    Categories have uneven appeal; the ordered choice uses the Gumbel top-k
    trick so that all users are drawn at once.

    Args:
        rng: The generator.
        n_users: Number of users.
        n_categories: Number of categories.

    Returns:
        A (n_users, up to 3) matrix of category indices in the order the user
        moves through them, and how many of its columns each user has.
    """
    appeal = np.log(rng.dirichlet(np.full(n_categories, INTEREST_WEIGHT_CONCENTRATION)))
    counts = rng.choice(
        np.arange(1, len(INTEREST_COUNT_PROBS) + 1),
        size=n_users,
        p=INTEREST_COUNT_PROBS,
    )
    keys = appeal + rng.gumbel(size=(n_users, n_categories))
    interests = np.argsort(-keys, axis=1, kind="stable")[:, : len(INTEREST_COUNT_PROBS)]
    return interests, np.minimum(counts, n_categories)


def _draw_step_kinds(
    rng: np.random.Generator, lengths: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draw the funnel kind of each step and where its events start.

    Every user gets as many steps as events (each step emits at least one
    event); the steps starting beyond the history length are dropped.

    Args:
        rng: The generator.
        lengths: History length of each user.

    Returns:
        User index, kind and start position of each kept step.
    """
    user = np.repeat(np.arange(len(lengths)), lengths)
    kind = rng.choice(len(STEP_KIND_PROBS), size=len(user), p=STEP_KIND_PROBS)
    start = _positions_within_users(user, _STEP_SIZES[kind])
    keep = start < lengths[user]
    return user[keep], kind[keep], start[keep]


def _positions_within_users(user: np.ndarray, size: np.ndarray) -> np.ndarray:
    """Return the exclusive running sum of `size` restarted at each user.

    Args:
        user: Non-decreasing user index of each row.
        size: Size of each row.
    """
    before = np.cumsum(size) - size
    first_row = np.searchsorted(user, user)
    return before - before[first_row]


def _draw_shift_points(
    rng: np.random.Generator,
    lengths: np.ndarray,
    n_interests: np.ndarray,
    user: np.ndarray,
    start: np.ndarray,
) -> np.ndarray:
    """Draw where each user's dominant interest switches.

    Users with two or more interests switch at the first step starting at or
    after a target drawn in ``SHIFT_WINDOW`` of the history (kept at most
    ``len - 3`` so that such a step exists); the others never switch.

    Args:
        rng: The generator.
        lengths: History length of each user.
        n_interests: Number of planted interests of each user.
        user: User index of each step.
        start: Start position of each step.

    Returns:
        shift_at of each user (0 for users who never switch).
    """
    low = np.maximum(2, np.ceil(SHIFT_WINDOW[0] * lengths)).astype(np.int64)
    high = np.maximum(low, np.minimum(np.floor(SHIFT_WINDOW[1] * lengths), lengths - 3)).astype(
        np.int64
    )
    target = np.where(n_interests >= 2, rng.integers(low, high + 1), 0)
    after = start >= target[user]
    shift_at = np.full(len(lengths), np.iinfo(np.int64).max)
    np.minimum.at(shift_at, user[after], start[after])
    return shift_at


def _draw_step_categories(
    rng: np.random.Generator,
    interests: np.ndarray,
    n_interests: np.ndarray,
    n_categories: int,
    shift_at: np.ndarray,
    user: np.ndarray,
    start: np.ndarray,
) -> np.ndarray:
    """Draw each step's category: dominant interest, side interest or noise.

    Args:
        rng: The generator.
        interests: Planted category indices of each user.
        n_interests: Number of planted interests of each user.
        n_categories: Number of categories, the range of the noise.
        shift_at: Where each user's dominant interest switches.
        user: User index of each step.
        start: Start position of each step.

    Returns:
        Category index of each step.
    """
    count = n_interests[user]
    dominant = np.where(start >= shift_at[user], count - 1, 0)
    other = rng.integers(0, np.maximum(count - 1, 1))
    side = np.where(other >= dominant, other + 1, other)
    noise = rng.integers(0, n_categories, len(user))
    draw = rng.random(len(user))
    p_side = np.where(count >= 2, P_SIDE, 0.0)
    chosen = np.where(draw < P_DOMINANT, dominant, np.where(draw < P_DOMINANT + p_side, side, -1))
    picked = interests[user, np.maximum(chosen, 0)]
    return np.where(chosen >= 0, picked, noise)


def _draw_step_items(
    rng: np.random.Generator, catalog: Catalog, user: np.ndarray, category: np.ndarray
) -> np.ndarray:
    """Draw each step's item: follow the chain or jump by popularity.

    A user's steps in one category form a run; its first step, and any
    step that does not follow (probability ``1 - P_FOLLOW``), jumps to a
    Zipf-popular item. A following step moves 1..N_SUCCESSORS places along
    the chain from the run's previous item. The chain position is thus the
    last jump's position plus the offsets since, computed for all steps at
    once.

    Args:
        rng: The generator.
        catalog: The item-side arrays.
        user: User index of each step.
        category: Category index of each step.

    Returns:
        Item index of each step.
    """
    n_categories = len(catalog.chains)
    order = np.argsort(user * n_categories + category, kind="stable")
    cat = category[order]
    group = user[order] * n_categories + cat
    first_in_run = np.r_[True, group[1:] != group[:-1]]
    follows = (rng.random(len(order)) < P_FOLLOW) & ~first_in_run
    offset = np.where(
        follows,
        rng.choice(np.arange(1, N_SUCCESSORS + 1), size=len(order), p=SUCCESSOR_WEIGHTS),
        0,
    )

    jump_position = np.empty(len(order), dtype=np.int64)
    draw = rng.random(len(order))
    for c in range(n_categories):
        in_c = cat == c
        rank = np.searchsorted(catalog.popularity_cdf[c], draw[in_c], side="right")
        jump_position[in_c] = catalog.rank_to_position[c][
            np.minimum(rank, len(catalog.chains[c]) - 1)
        ]

    jump_rows = np.flatnonzero(~follows)
    segment = np.cumsum(~follows) - 1
    total_offset = np.cumsum(offset)
    sizes = np.array([len(c) for c in catalog.chains])
    position = (
        jump_position[jump_rows][segment] + total_offset - total_offset[jump_rows][segment]
    ) % sizes[cat]
    flat_chains = np.concatenate(catalog.chains)
    chain_start = np.cumsum(sizes) - sizes
    item = np.empty(len(order), dtype=np.int64)
    item[order] = flat_chains[chain_start[cat] + position]
    return item


def _build_events(
    rng: np.random.Generator,
    steps: _Steps,
    lengths: np.ndarray,
    price: np.ndarray,
    user_ids: np.ndarray,
    item_ids: np.ndarray,
) -> pd.DataFrame:
    """Expand steps into events, cut each history to its length, add times.

    Args:
        rng: The generator.
        steps: The visited items.
        lengths: History length of each user.
        price: Price of each item.
        user_ids: Id of each user index.
        item_ids: Id of each item index.

    Returns:
        The events frame.
    """
    size = _STEP_SIZES[steps.kind]
    step = np.repeat(np.arange(len(size)), size)
    within_step = np.arange(len(step)) - np.repeat(np.cumsum(size) - size, size)
    keep = steps.start[step] + within_step < lengths[steps.user[step]]
    step, within_step = step[keep], within_step[keep]
    event_type = _STEP_EVENTS[steps.kind[step], within_step]
    item = steps.item[step]
    timestamp = _draw_timestamps(rng, steps.user, lengths, step, within_step, event_type)
    return pd.DataFrame(
        {
            "user_id": user_ids[steps.user[step]],
            "item_id": item_ids[item],
            "timestamp": timestamp,
            "event_type": np.array(EVENT_TYPES, dtype=object)[event_type],
            "value": np.where(event_type == 0, 1.0, price[item]),
        }
    )


def _draw_timestamps(
    rng: np.random.Generator,
    step_user: np.ndarray,
    lengths: np.ndarray,
    step: np.ndarray,
    within_step: np.ndarray,
    event_type: np.ndarray,
) -> np.ndarray:
    """Draw session-structured, strictly increasing timestamps per user.

    A user starts within the first ``START_WINDOW_DAYS`` and is active over
    a random share of the remaining horizon. Each step opens a new session
    with probability ``P_NEW_SESSION``; the gaps between sessions split the
    active span at random (at least an hour each). Inside a session, items
    are minutes apart and a cart or purchase follows its view within
    seconds to minutes. Times are whole seconds.

    Args:
        rng: The generator.
        step_user: User index of each step.
        lengths: History length of each user.
        step: Step index of each event.
        within_step: Position of each event inside its step.
        event_type: Event type code of each event.

    Returns:
        datetime64[us] timestamp of each event.
    """
    n_users = len(lengths)
    first_step = np.r_[True, step_user[1:] != step_user[:-1]]
    opens_session = (rng.random(len(step_user)) < P_NEW_SESSION) & ~first_step
    weight = np.where(opens_session, rng.exponential(size=len(step_user)), 0.0)
    offset_days = rng.uniform(0.0, START_WINDOW_DAYS, n_users)
    span_s = (HORIZON_DAYS - offset_days) * rng.uniform(0.35, 1.0, n_users) * _DAY_S
    n_gaps = np.bincount(step_user, weights=opens_session, minlength=n_users)
    weight_sum = np.bincount(step_user, weights=weight, minlength=n_users)
    spread = np.maximum(span_s - n_gaps * MIN_SESSION_GAP_S, 0.0) / np.maximum(weight_sum, 1e-12)
    session_gap = MIN_SESSION_GAP_S + weight * spread[step_user]
    think = THINK_TIME_S[0] + rng.exponential(THINK_TIME_S[1], len(step_user))
    step_gap = np.where(first_step, 0.0, np.where(opens_session, session_gap, think))

    cart_delay = CART_DELAY_S[0] + rng.exponential(CART_DELAY_S[1], len(step))
    purchase_delay = PURCHASE_DELAY_S[0] + rng.exponential(PURCHASE_DELAY_S[1], len(step))
    gap_s = np.where(
        within_step == 0,
        step_gap[step],
        np.where(event_type == 1, cart_delay, purchase_delay),
    )
    gap = np.round(gap_s).astype(np.int64)
    elapsed = _positions_within_users(step_user[step], gap) + gap
    first = np.round(offset_days * _DAY_S).astype(np.int64)
    return START + (first[step_user[step]] + elapsed).astype("timedelta64[s]")


def _build_planted(
    user_ids: np.ndarray,
    specs: tuple[CategorySpec, ...],
    interests: np.ndarray,
    n_interests: np.ndarray,
    shift_at: np.ndarray,
    lengths: np.ndarray,
) -> pd.DataFrame:
    """Assemble the ground-truth frame, one row per user.

    Args:
        user_ids: Id of each user index.
        specs: The categories in use.
        interests: Planted category indices of each user.
        n_interests: Number of planted interests of each user.
        shift_at: Where each user's dominant interest switches.
        lengths: History length of each user.

    Returns:
        The planted frame.
    """
    names = np.array([spec.name for spec in specs], dtype=object)
    lists = [list(names[row[:count]]) for row, count in zip(interests, n_interests, strict=True)]
    return pd.DataFrame(
        {
            "user_id": user_ids,
            "interests": pd.Series(lists, dtype=object),
            "initial_interest": names[interests[:, 0]],
            "final_interest": names[interests[np.arange(len(user_ids)), n_interests - 1]],
            "shift_at": shift_at.astype(np.int64),
            "n_events": lengths,
        }
    )


def load_demo(
    store: Store,
    name: str = "demo",
    n_users: int = 3000,
    seed: int = 7,
    replace_existing: bool = False,
    progress: ProgressFn | None = None,
) -> IngestResult:
    """Generate the demo data and load it through the normal ingestion path.

    The frames are written to temporary Parquet files and ingested like any upload,
    so the demo exercises the same code as a user's file; the planted interests are
    stored alongside, in the same transaction.
    """
    data = generate_demo(n_users=n_users, seed=seed)
    with tempfile.TemporaryDirectory(prefix="reclens-demo-") as tmp:
        events_path = Path(tmp) / "demo_events.parquet"
        items_path = Path(tmp) / "demo_items.parquet"
        data.events.to_parquet(events_path, index=False)
        data.items.to_parquet(items_path, index=False)
        return ingest(
            store,
            name,
            events_path,
            EventMapping(
                user="user_id", item="item_id", time="timestamp", type="event_type", value="value"
            ),
            items_path=items_path,
            item_mapping=ItemMapping(
                item="item_id", title="title", categories="categories", text="text"
            ),
            replace_existing=replace_existing,
            source_names=[f"generated demo (seed {seed}, {n_users} users)"],
            planted=data.planted,
            progress=progress,
        )
