"""The demo shop's catalogue: its categories, their items, and the chains among them.

The vocabulary of each category (brands, product lines, uses, detail sentences and a
price range) is data, not code: it lives in ``demo_vocabulary.json`` next to this file
and is read once, at import. From it :func:`build_catalog` draws the items of the shop
(titles, tags, descriptions, prices) and their Zipf popularity; the items of a category
in item-id order form the chain whose next items are an item's planted successors
(:func:`planted_successors`). The behaviour log drawn over this shop is in
:mod:`core.data.demo`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

VOCABULARY = Path(__file__).with_name("demo_vocabulary.json")


@dataclass(frozen=True)
class CategorySpec:
    """Vocabulary and price range of one category.

    Attributes:
        name: Category name, the item's main category.
        price_range: Lowest and highest price, drawn log-uniformly between.
        brands: Brands or adjectives that start a title.
        lines: Sub-tag mapped to the nouns that end a title.
        uses: Phrases completing "<noun> for <use> and <use>."
        details: Sentences, one of which may follow in a description.
    """

    name: str
    price_range: tuple[float, float]
    brands: tuple[str, ...]
    lines: dict[str, tuple[str, ...]]
    uses: tuple[str, ...]
    details: tuple[str, ...]


def _read_vocabulary(path: Path) -> tuple[CategorySpec, ...]:
    """The categories of the vocabulary file, in its order.

    Args:
        path: The JSON file (see ``demo_vocabulary.json``).
    """
    entries = json.loads(path.read_text(encoding="utf-8"))["categories"]
    return tuple(
        CategorySpec(
            name=entry["name"],
            price_range=(float(entry["price_range"][0]), float(entry["price_range"][1])),
            brands=tuple(entry["brands"]),
            lines={subtag: tuple(nouns) for subtag, nouns in entry["lines"].items()},
            uses=tuple(entry["uses"]),
            details=tuple(entry["details"]),
        )
        for entry in entries
    )


SPECS: tuple[CategorySpec, ...] = _read_vocabulary(VOCABULARY)
CATEGORIES: tuple[str, ...] = tuple(spec.name for spec in SPECS)

N_SUCCESSORS = 3
ZIPF_EXPONENT = 1.1
MIN_ITEMS_PER_CATEGORY = N_SUCCESSORS + 1
CATEGORY_SIZE_CONCENTRATION = 4.0
P_SUBTAG = 0.7
P_DETAIL = 0.7


@dataclass(frozen=True)
class Catalog:
    """Item-side arrays used while drawing the log.

    Attributes:
        price: Price of each item.
        chains: Per category, the item indices in id order (the chain cycle).
        popularity_cdf: Per category, the Zipf CDF over popularity ranks.
        rank_to_position: Per category, the chain position of each rank.
    """

    price: np.ndarray
    chains: tuple[np.ndarray, ...]
    popularity_cdf: tuple[np.ndarray, ...]
    rank_to_position: tuple[np.ndarray, ...]


def planted_successors(items: pd.DataFrame) -> dict[str, tuple[str, ...]]:
    """Return each item's planted successors, the next items of its chain.

    The items of a category, in item-id order, form a cycle; an item's
    successors are the `N_SUCCESSORS` items after it in that cycle.

    Args:
        items: The `DemoData.items` frame.

    Returns:
        Item id mapped to its successors' ids, most likely first.
    """
    main = items["categories"].map(lambda tags: tags[0])
    successors: dict[str, tuple[str, ...]] = {}
    for _, ids in items["item_id"].groupby(main, sort=False):
        chain = sorted(ids)
        for k, item_id in enumerate(chain):
            successors[item_id] = tuple(
                chain[(k + j) % len(chain)] for j in range(1, N_SUCCESSORS + 1)
            )
    return successors


def format_ids(prefix: str, count: int, min_width: int) -> np.ndarray:
    """Return zero-padded ids ``prefix + 1..count`` whose text order is numeric.

    Args:
        prefix: Leading letter.
        count: Number of ids.
        min_width: Minimum number of digits.
    """
    width = max(min_width, len(str(count)))
    return np.array([f"{prefix}{k:0{width}d}" for k in range(1, count + 1)], dtype=object)


def build_catalog(
    rng: np.random.Generator, specs: tuple[CategorySpec, ...], n_items: int
) -> tuple[Catalog, pd.DataFrame]:
    """Draw category sizes, prices, popularity and texts of all items.

    Args:
        rng: The generator.
        specs: The categories in use.
        n_items: Number of items.

    Returns:
        The arrays used to draw the log, and the items frame.
    """
    n_categories = len(specs)
    spare = n_items - MIN_ITEMS_PER_CATEGORY * n_categories
    shares = rng.dirichlet(np.full(n_categories, CATEGORY_SIZE_CONCENTRATION))
    sizes = MIN_ITEMS_PER_CATEGORY + rng.multinomial(spare, shares)
    category = rng.permutation(np.repeat(np.arange(n_categories), sizes))
    chains = tuple(np.flatnonzero(category == c) for c in range(n_categories))

    price = np.empty(n_items)
    described: list[tuple[str, list[str], str]] = [("", [], "")] * n_items
    for spec, chain in zip(specs, chains, strict=True):
        low, high = np.log(spec.price_range)
        price[chain] = np.maximum(np.round(np.exp(rng.uniform(low, high, len(chain)))) - 0.01, 0.99)
        for item, description in zip(chain, _describe_items(rng, spec, len(chain)), strict=True):
            described[item] = description

    titles, tags, texts = zip(*described, strict=True)
    items = pd.DataFrame(
        {
            "item_id": format_ids("i", n_items, 4),
            "title": list(titles),
            "categories": pd.Series(list(tags), dtype=object),
            "text": list(texts),
        }
    )
    popularity_cdf = tuple(_zipf_cdf(len(chain)) for chain in chains)
    rank_to_position = tuple(rng.permutation(len(chain)) for chain in chains)
    catalog = Catalog(price, chains, popularity_cdf, rank_to_position)
    return catalog, items


def _zipf_cdf(size: int) -> np.ndarray:
    """Return the CDF over popularity ranks ``0..size-1`` of a Zipf law.

    Args:
        size: Number of ranks.
    """
    weight = np.arange(1, size + 1, dtype=float) ** -ZIPF_EXPONENT
    return np.cumsum(weight) / weight.sum()


def _describe_items(
    rng: np.random.Generator, spec: CategorySpec, count: int
) -> list[tuple[str, list[str], str]]:
    """Draw unique titles, tags and descriptions for a category's items.

    Titles combine a brand with a noun; once every combination is used they
    repeat with a "Series N" suffix, so they stay unique.

    Args:
        rng: The generator.
        spec: The category.
        count: Number of items in it.

    Returns:
        Per item: title, tags (the category, then maybe the noun's sub-tag)
        and text.
    """
    nouns = [(noun, subtag) for subtag, line_nouns in spec.lines.items() for noun in line_nouns]
    combos = [(brand, noun, subtag) for brand in spec.brands for noun, subtag in nouns]
    uses = spec.uses
    order = rng.permutation(len(combos))
    described = []
    for k in range(count):
        brand, noun, subtag = combos[order[k % len(combos)]]
        series = k // len(combos)
        title = f"{brand} {noun}" if series == 0 else f"{brand} {noun} Series {series + 1}"
        tags = [spec.name, subtag] if rng.random() < P_SUBTAG else [spec.name]
        use_a, use_b = rng.choice(len(uses), size=2, replace=False)
        text = f"{noun} for {uses[use_a]} and {uses[use_b]}."
        if rng.random() < P_DETAIL:
            text += " " + spec.details[rng.integers(len(spec.details))]
        described.append((title, tags, text))
    return described
