"""Generated datasets of every shape users bring, each with a tiny trained model.

Each shape is a small, deterministic behaviour log (and maybe an item file) written
as CSV files on disk, loaded through the real :func:`core.data.ingest.ingest`, and
trained with :func:`core.training.runs.train_dataset` at a tiny size. Training costs the
most, so each shape is built once per test process (``functools.cache``); a test then
takes its own copy of the (closed) database with :func:`copy_of_shape` (the model
folders are shared and only read).

The shapes: no item file at all; titles only; categories but no text; no
timestamps (file order); baskets (many events sharing one timestamp); integer ids
written as floats (``17850.0``); many one-event users beside normal ones; one user
with thousands of events; a catalogue of two items; ids with spaces, commas,
quotes, emoji and leading zeros.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd

from core.data.ingest import ingest
from core.data.loading import IngestResult
from core.data.mapping import EventMapping, ItemMapping
from core.store import Store
from core.training.config import TrainConfig
from core.training.runs import train_dataset

# Tiny and quick: these models only have to exist and be usable, not be good.
TRAIN = dict(
    epochs=2,
    hidden=16,
    layers=1,
    heads=2,
    max_len=20,
    batch=64,
    dropout=0.0,
    min_steps_per_epoch=4,
    text_encoder="none",
)

T0 = 1_700_000_000  # a Unix time in November 2023


@dataclass(frozen=True)
class Shape:
    """One generated dataset: its files' content, how to map them, and what it has.

    Attributes:
        name: the dataset name (the model is ``NAME-model``).
        events: the behaviour log as written (its columns are the file's header).
        mapping: which column plays which role.
        items: the item file, or None for none.
        item_mapping: its roles.
        has_time, has_titles, has_categories, has_types: what the loaded dataset should have.
        text_encoder: the training setting (``auto`` exercises item text).
    """

    name: str
    events: pd.DataFrame
    mapping: EventMapping
    items: pd.DataFrame | None = None
    item_mapping: ItemMapping | None = None
    has_time: bool = True
    has_titles: bool = False
    has_categories: bool = False
    has_types: bool = False
    text_encoder: str = "none"
    notes: list[str] = field(default_factory=list)

    @property
    def model(self) -> str:
        return f"{self.name}-model"


def _walks(
    rng: np.random.Generator, users: list[str], lengths: np.ndarray, items: list[str]
) -> pd.DataFrame:
    """Each user walks the item list (mostly to the next item, sometimes a jump), so
    a model has a sequential pattern to learn. Columns user, item, step."""
    rows_user, rows_item, rows_step = [], [], []
    n = len(items)
    for user, length in zip(users, lengths, strict=True):
        at = int(rng.integers(n))
        for step in range(int(length)):
            rows_user.append(user)
            rows_item.append(items[at])
            rows_step.append(step)
            at = (at + 1) % n if rng.random() < 0.8 else int(rng.integers(n))
    return pd.DataFrame({"user": rows_user, "item": rows_item, "step": rows_step})


def _log(
    seed: int,
    n_users: int = 40,
    n_items: int = 30,
    user_prefix: str = "u",
    item_prefix: str = "i",
    lengths: tuple[int, int] = (4, 12),
) -> pd.DataFrame:
    """A plain log: columns user, item, step, time (Unix seconds, one hour apart)."""
    rng = np.random.default_rng(seed)
    users = [f"{user_prefix}{u:03d}" for u in range(n_users)]
    items = [f"{item_prefix}{i:03d}" for i in range(n_items)]
    frame = _walks(rng, users, rng.integers(lengths[0], lengths[1] + 1, n_users), items)
    offset = {u: int(rng.integers(0, 30 * 86400)) for u in users}
    steps = zip(frame["user"], frame["step"], strict=True)
    frame["time"] = [T0 + offset[u] + 3600 * s for u, s in steps]
    return frame


def _item_names(n: int, prefix: str = "i") -> list[str]:
    return [f"{prefix}{i:03d}" for i in range(n)]


CATEGORY_NAMES = ["kitchen", "garden", "books", "toys", "sport", "music"]


def _categories(items: list[str]) -> list[str]:
    """Each item one or two categories, written "main|second"."""
    out = []
    for i, _ in enumerate(items):
        main = CATEGORY_NAMES[i % len(CATEGORY_NAMES)]
        out.append(main if i % 3 else f"{main}|{CATEGORY_NAMES[(i + 1) % len(CATEGORY_NAMES)]}")
    return out


# --------------------------------------------------------------------------- the shapes


def ids_only() -> Shape:
    """No item file at all: user, item and an ISO time, oddly named columns."""
    log = _log(1)
    events = pd.DataFrame(
        {
            "visitor": log["user"],
            "sku": log["item"],
            "when": pd.to_datetime(log["time"], unit="s").dt.strftime("%Y-%m-%d %H:%M:%S"),
        }
    )
    return Shape("ids_only", events, EventMapping(user="visitor", item="sku", time="when"))


def titles_only() -> Shape:
    """An item file with titles only (no categories, no text); the model reads the titles."""
    log = _log(2)
    names = _item_names(30)
    words = ["mug", "lamp", "chair", "kettle", "plant", "novel", "kite", "ball", "drum", "cup"]
    items = pd.DataFrame(
        {"item_id": names, "title": [f"{words[i % 10]} no. {i}" for i in range(30)]}
    )
    return Shape(
        "titles_only",
        log[["user", "item", "time"]].rename(columns={"user": "user_id", "item": "item_id"}),
        EventMapping(user="user_id", item="item_id", time="time"),
        items,
        ItemMapping(item="item_id", title="title"),
        has_titles=True,
        text_encoder="auto",
    )


def categories_only() -> Shape:
    """An item file with categories but no titles or text."""
    log = _log(3)
    names = _item_names(30)
    items = pd.DataFrame({"product": names, "tags": _categories(names)})
    return Shape(
        "categories_only",
        log[["user", "item", "time"]],
        EventMapping(user="user", item="item", time="time"),
        items,
        ItemMapping(item="product", categories="tags", category_sep="|"),
        has_categories=True,
    )


def no_time() -> Shape:
    """No timestamps: the file order is the order of events."""
    log = _log(4)
    return Shape(
        "no_time",
        log[["user", "item"]],
        EventMapping(user="user", item="item"),
        has_time=False,
    )


def baskets() -> Shape:
    """Many events share one timestamp: baskets of four, every user's first basket at
    the same instant; with categories, so shifts and affinity are exercised."""
    log = _log(5, lengths=(8, 16))
    basket = log["step"] // 4
    log["time"] = T0 + 86400 * basket  # everyone's basket b at the same second
    names = _item_names(30)
    items = pd.DataFrame({"item": names, "category": _categories(names)})
    return Shape(
        "baskets",
        log[["user", "item", "time"]],
        EventMapping(user="user", item="item", time="time"),
        items,
        ItemMapping(item="item", categories="category"),
        has_categories=True,
    )


def float_ids() -> Shape:
    """Integer ids written as floats, as a spreadsheet export does (``17850.0``)."""
    log = _log(6)
    user_num = {u: 17850 + 7 * k for k, u in enumerate(sorted(set(log["user"])))}
    item_num = {i: 85123 + 11 * k for k, i in enumerate(sorted(set(log["item"])))}
    events = pd.DataFrame(
        {
            "CustomerID": log["user"].map(user_num).astype(float),
            "StockCode": log["item"].map(item_num).astype(float),
            "InvoiceDate": pd.to_datetime(log["time"], unit="s").dt.strftime("%Y-%m-%d %H:%M"),
        }
    )
    return Shape(
        "float_ids", events, EventMapping(user="CustomerID", item="StockCode", time="InvoiceDate")
    )


def one_event_users() -> Shape:
    """Sixty users with a single event beside twenty-five normal ones (the single-event
    users sort first, so the pages open on one of them)."""
    rng = np.random.default_rng(7)
    normal = _log(7, n_users=25, lengths=(5, 10))
    names = _item_names(30)
    single = pd.DataFrame(
        {
            "user": [f"a{u:03d}" for u in range(60)],
            "item": [names[int(i)] for i in rng.integers(0, 30, 60)],
            "step": 0,
            "time": T0 + rng.integers(0, 30 * 86400, 60),
        }
    )
    log = pd.concat([single, normal], ignore_index=True)
    return Shape(
        "one_event_users",
        log[["user", "item", "time"]],
        EventMapping(user="user", item="item", time="time"),
    )


HEAVY_EVENTS = 3000


def heavy_user() -> Shape:
    """One user (``u000``, the first) with thousands of events beside thirty normal ones;
    they keep to the first twenty items, so ten are left to recommend to them."""
    rng = np.random.default_rng(8)
    names = _item_names(30)
    heavy = _walks(rng, ["u000"], np.array([HEAVY_EVENTS]), names[:20])
    heavy["time"] = T0 + 60 * heavy["step"]
    normal = _log(8, n_users=30, user_prefix="v", lengths=(4, 10))
    log = pd.concat([heavy, normal], ignore_index=True)
    return Shape(
        "heavy_user",
        log[["user", "item", "time"]],
        EventMapping(user="user", item="item", time="time"),
    )


def two_items() -> Shape:
    """A catalogue of two items (every user has seen both)."""
    rng = np.random.default_rng(9)
    users = [f"u{u:03d}" for u in range(30)]
    lengths = rng.integers(3, 9, 30)
    rows = []
    for user, length in zip(users, lengths, strict=True):
        first = int(rng.integers(2))
        for step in range(int(length)):
            rows.append((user, "AB"[(first + step) % 2], T0 + 3600 * step))
    events = pd.DataFrame(rows, columns=["user", "item", "time"])
    items = pd.DataFrame({"item": ["A", "B"], "title": ["Apple", "Banana"], "kind": ["fruit"] * 2})
    return Shape(
        "two_items",
        events,
        EventMapping(user="user", item="item", time="time"),
        items,
        ItemMapping(item="item", title="title", categories="kind"),
        has_titles=True,
        has_categories=True,
    )


ODD_USERS = [
    "0042",
    "42",
    "Ann Lee",
    "Smith, John",
    'the "boss"',
    "🙂 smiley",
    "o'neil",
]
ODD_ITEMS = [
    "00123",
    "123",
    "a b",
    "x,y",
    '"quoted"',
    "🎁 gift",
    "semi;colon",
    "back\\slash",
    "0",
    "007",
]


def odd_ids() -> Shape:
    """Ids with spaces, commas, quotes, emoji and leading zeros (a properly quoted CSV),
    beside plain ones; titles and categories with the same characters."""
    rng = np.random.default_rng(10)
    users = ODD_USERS + [f"user {u:02d}" for u in range(24)]
    items = ODD_ITEMS + [f"item {i:02d}" for i in range(15)]
    log = _walks(rng, users, rng.integers(4, 11, len(users)), items)
    log["time"] = T0 + 3600 * log["step"] + 7 * np.arange(len(log))
    catalog = pd.DataFrame(
        {
            "id": items,
            "name": [f'Thing "{i}", edition {k}' for k, i in enumerate(items)],
            "cats": ["home & garden|toys, games" if k % 2 else "café|🎉 party" for k in range(25)],
        }
    )
    return Shape(
        "odd_ids",
        log[["user", "item", "time"]],
        EventMapping(user="user", item="item", time="time"),
        catalog,
        ItemMapping(item="id", title="name", categories="cats"),
        has_titles=True,
        has_categories=True,
    )


# Markup a page or a chart would act on if it reached them unescaped (tests/test_security.py).
MARKUP = [
    "<a href='http://evil.example/'>click</a>",
    "**bold**",
    "![img](http://evil.example/i.png)",
    "&lt;b&gt;",
    "<span style='color:red'>red</span>",
]


def markup() -> Shape:
    """Ids, titles, categories and event types that hold Markdown, HTML and entities."""
    rng = np.random.default_rng(11)
    users = [f"{MARKUP[u % len(MARKUP)]} u{u}" for u in range(30)]
    items = [f"{MARKUP[i % len(MARKUP)]} i{i}" for i in range(20)]
    log = _walks(rng, users, rng.integers(4, 11, len(users)), items)
    log["time"] = T0 + 3600 * log["step"] + 7 * np.arange(len(log))
    log["type"] = [MARKUP[0].replace("click", "view") if k % 3 else "**cart**" for k in log.index]
    catalog = pd.DataFrame(
        {
            "id": items,
            "name": [f"Title {MARKUP[(k + 1) % len(MARKUP)]} {k}" for k in range(len(items))],
            "cats": [
                f"{MARKUP[k % len(MARKUP)]}|{MARKUP[(k + 2) % len(MARKUP)]}" for k in range(20)
            ],
        }
    )
    return Shape(
        "markup",
        log[["user", "item", "time", "type"]],
        EventMapping(user="user", item="item", time="time", type="type"),
        catalog,
        ItemMapping(item="id", title="name", categories="cats"),
        has_titles=True,
        has_categories=True,
        has_types=True,
    )


def ids_only_changed() -> Shape:
    """New data for ``ids_only`` (the same columns): other users' walks, five users fewer,
    four items more, as a re-export of the log some weeks later would be."""
    log = _log(99, n_users=35, n_items=34)
    events = pd.DataFrame(
        {
            "visitor": log["user"],
            "sku": log["item"],
            "when": pd.to_datetime(log["time"], unit="s").dt.strftime("%Y-%m-%d %H:%M:%S"),
        }
    )
    return Shape("ids_only", events, EventMapping(user="visitor", item="sku", time="when"))


SHAPES: dict[str, Callable[[], Shape]] = {
    f.__name__: f
    for f in (
        ids_only,
        titles_only,
        categories_only,
        no_time,
        baskets,
        float_ids,
        one_event_users,
        heavy_user,
        two_items,
        odd_ids,
        markup,
    )
}


# --------------------------------------------------------------------------- building


def write_files(shape: Shape, folder: Path) -> tuple[Path, Path | None]:
    """Write the shape's CSV files (quoted where needed, UTF-8); returns their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    events = folder / f"{shape.name}_events.csv"
    shape.events.to_csv(events, index=False)
    items = None
    if shape.items is not None:
        items = folder / f"{shape.name}_items.csv"
        shape.items.to_csv(items, index=False)
    return events, items


def load_shape(
    store: Store, shape: Shape, folder: Path, name: str | None = None, replace: bool = False
) -> IngestResult:
    """Write the shape's files under ``folder`` and ingest them as dataset ``name``."""
    events, items = write_files(shape, folder)
    return ingest(
        store,
        name or shape.name,
        events,
        shape.mapping,
        items_path=items,
        item_mapping=shape.item_mapping,
        replace_existing=replace,
    )


def train_shape(store: Store, shape: Shape, dataset: str | None = None, name: str | None = None):
    """Train the shape's tiny model on its dataset; returns (ModelInfo, TrainResult)."""
    name = name or shape.model
    config = TrainConfig.from_preset("fast", **{**TRAIN, "text_encoder": shape.text_encoder})
    return train_dataset(
        store,
        dataset or shape.name,
        config,
        name=name,
        out_dir=Path(store.path).parent / "models" / name,
    )


@cache
def trained_shape(name: str) -> Path:
    """Path of a closed database holding the shape's dataset and its trained model."""
    shape = SHAPES[name]()
    folder = Path(tempfile.mkdtemp(prefix=f"reclens-shape-{name}-"))
    atexit.register(shutil.rmtree, folder, True)
    store = Store(folder / "shape.duckdb")
    try:
        load_shape(store, shape, folder / "files")
        train_shape(store, shape)
    finally:
        store.close()
    return folder / "shape.duckdb"


def copy_of_shape(name: str, target_dir: Path) -> Path:
    """A private copy of the shape's trained database in ``target_dir``."""
    target = Path(target_dir) / f"{name}.duckdb"
    shutil.copyfile(trained_shape(name), target)
    return target
