"""Deterministic demo data: an e-commerce behaviour log with planted structure.

`generate_demo` builds a small shop (items in readable categories, each with a
title, tags, a short description and a fixed price) and a log of views, carts
and purchases by a few thousand users. Everything comes from one seeded
`numpy.random.Generator`, so the same arguments always give identical frames.

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
  cycle (see `planted_successors`). When a user returns to a category, the
  next item follows the chain from the user's previous item there with
  probability ``P_FOLLOW``; otherwise it is drawn by popularity. This is the
  signal that lets a sequence model beat popularity.
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

from core.data.ingest import EventMapping, IngestResult, ItemMapping, ingest
from core.store import ProgressFn, Store

__all__ = [
    "CATEGORIES",
    "N_SUCCESSORS",
    "DemoData",
    "generate_demo",
    "load_demo",
    "planted_successors",
]


@dataclass(frozen=True)
class _CategorySpec:
    """Vocabulary and price range of one category.

    Attributes:
        name: Category name, the item's main category.
        price_range: Lowest and highest price, drawn log-uniformly between.
        brands: Comma-separated brands or adjectives that start a title.
        lines: Sub-tag mapped to the comma-separated nouns that end a title.
        uses: Comma-separated phrases completing "<noun> for <use> and <use>."
        details: Sentences, one of which may follow in a description.
    """

    name: str
    price_range: tuple[float, float]
    brands: str
    lines: dict[str, str]
    uses: str
    details: tuple[str, ...]


_SPECS: tuple[_CategorySpec, ...] = (
    _CategorySpec(
        name="Running",
        price_range=(15.0, 220.0),
        brands="Trailblazer, Stride, Velocity, Summit, Tempo, Pacer, Apex, Swift, Horizon, Kinetic",
        lines={
            "Footwear": "Running Shoe, Trail Shoe, Racing Flat, Recovery Sandal",
            "Apparel": "Running Jacket, Compression Tights, Running Shorts, Moisture-Wicking Tee",
            "Gear": "GPS Watch, Hydration Vest, Running Belt, Reflective Armband",
        },
        uses="tempo runs, marathon training, trail running, easy recovery jogs, interval sessions, race day",
        details=(
            "Breathable and lightweight for long distances.",
            "Built to keep your pace steady mile after mile.",
            "Reflective details for running after dark.",
            "Cushioned and responsive on road and trail.",
            "Tested by marathon runners and weekend joggers.",
        ),
    ),
    _CategorySpec(
        name="Coffee",
        price_range=(8.0, 180.0),
        brands="Bluebird, Morning Ritual, Highland, Crema, Roastery, Ember, Arabica House, Daybreak, Copper, Barista's",
        lines={
            "Beans": "Whole Bean Roast, Espresso Blend, Single-Origin Beans, Decaf Beans",
            "Brewing": "Pour-Over Dripper, French Press, Gooseneck Kettle, Cold Brew Maker",
            "Accessories": "Burr Grinder, Coffee Scale, Milk Frother, Travel Mug",
        },
        uses="espresso shots, slow pour-over mornings, cold brew, latte art, fresh ground coffee, home baristas",
        details=(
            "Notes of chocolate, citrus and caramel.",
            "Freshly roasted arabica from small farms.",
            "Brews a rich, balanced cup every time.",
            "Grind, brew and sip like a cafe barista.",
            "Medium roast with a smooth crema.",
        ),
    ),
    _CategorySpec(
        name="Sci-Fi Books",
        price_range=(7.0, 35.0),
        brands="Galactic, Quantum, Starlit, Dark Matter, Red Planet, Hyperspace, Android, Orbital, Void, Solar Wind",
        lines={
            "Space Opera": "Space Opera Novel, Star Empire Saga, Fleet Chronicle, First Contact Novel",
            "Cyberpunk": "Cyberpunk Thriller, Neon City Novella, Hacker Mystery, AI Uprising Novel",
            "Classics": "Short Story Anthology, Time Travel Classic, Robot Stories Collection, Dystopia Classic",
        },
        uses="long flights, rainy weekends, space opera fans, book club discussions, late-night reading, hard science lovers",
        details=(
            "A sweeping story of starships, empires and first contact.",
            "Award-winning science fiction with a twist ending.",
            "Explores artificial intelligence, time travel and the far future.",
            "Paperback edition with a new foreword.",
            "Hard science fiction grounded in real physics.",
        ),
    ),
    _CategorySpec(
        name="Board Games",
        price_range=(12.0, 90.0),
        brands="Meeple, Dice Tower, Castle, Kingdom, Tabletop, Dragon's, Harbor, Lantern, Clockwork, Wildwood",
        lines={
            "Strategy": "Strategy Game, Worker Placement Game, Deck-Building Game, Area Control Game",
            "Party": "Party Game, Word Game, Trivia Game, Bluffing Game",
            "Family": "Co-op Adventure, Family Card Game, Dice Game, Puzzle Game",
        },
        uses="game night, family evenings, two to four players, strategy fans, parties with friends, quick rounds",
        details=(
            "Includes wooden meeples, dice and a fold-out board.",
            "Easy to learn, with deep strategy for repeat plays.",
            "A tabletop game that plays in about 45 minutes.",
            "Cooperative play where everyone wins or loses together.",
            "An award-winning tabletop design.",
        ),
    ),
    _CategorySpec(
        name="Skincare",
        price_range=(6.0, 75.0),
        brands="Glow, Dew, Pure Botanica, Velvet, Aloe, Luminous, Calm, Hydra, Petal, Clear",
        lines={
            "Cleansing": "Foaming Cleanser, Micellar Water, Exfoliating Toner, Clay Mask",
            "Treatment": "Vitamin C Serum, Retinol Night Cream, Hyaluronic Serum, Eye Cream",
            "Protection": "Daily Moisturizer, SPF 50 Sunscreen, Lip Balm, Hand Cream",
        },
        uses="dry skin, sensitive skin, a morning skincare routine, a nightly routine, deep hydration, an even skin tone",
        details=(
            "Fragrance-free, dermatologist-tested formula.",
            "With hyaluronic acid and niacinamide.",
            "Lightweight texture that absorbs quickly into the skin.",
            "Gentle enough for daily use on the face.",
            "Vegan and cruelty-free skincare.",
        ),
    ),
    _CategorySpec(
        name="Camping",
        price_range=(12.0, 450.0),
        brands="Basecamp, Ridgeline, Wildland, Timberline, Northstar, Alpine, Canyon, Evergreen, Backcountry, Firefly",
        lines={
            "Shelter": "Two-Person Tent, Sleeping Bag, Sleeping Pad, Camping Hammock",
            "Camp Kitchen": "Camp Stove, Cookware Set, Water Filter, Insulated Bottle",
            "Trail Gear": "Headlamp, Trekking Poles, Hiking Backpack, Camp Lantern",
        },
        uses="backpacking trips, car camping, overnight hikes, cold nights outdoors, festival weekends, wilderness treks",
        details=(
            "Packs down small and weighs under a kilo.",
            "Waterproof and built for all weather at the campsite.",
            "Sets up in minutes after a long hike.",
            "Durable ripstop fabric for rugged trails.",
            "A favourite of thru-hikers and weekend campers.",
        ),
    ),
    _CategorySpec(
        name="Home Audio",
        price_range=(25.0, 900.0),
        brands="Sonic, Resonance, Echo, Studio, Acoustic, Bassline, Harmony, Crystal, Vinyl, Arcadia",
        lines={
            "Speakers": "Bookshelf Speaker, Soundbar, Subwoofer, Bluetooth Speaker",
            "Headphones": "Over-Ear Headphones, Noise-Cancelling Earbuds, Studio Headphones, Wireless Earbuds",
            "Hi-Fi": "Turntable, Stereo Amplifier, Streaming DAC, Speaker Cable",
        },
        uses="movie nights, vinyl listening, home studios, streaming music, small apartments, deep bass",
        details=(
            "Delivers clear highs and deep, punchy bass.",
            "Connects over Bluetooth, Wi-Fi and optical audio.",
            "Hi-fi sound tuned by audio engineers.",
            "Active noise cancelling with a 30-hour battery.",
            "Room-filling stereo sound.",
        ),
    ),
    _CategorySpec(
        name="Baking",
        price_range=(4.0, 120.0),
        brands="Golden Crust, Sugarloaf, Flour Mill, Sweet Oven, Rolling Pin, Hearth, Baker's, Honeycomb, Buttercup, Crumb",
        lines={
            "Bakeware": "Cake Pan, Loaf Tin, Muffin Tray, Baking Sheet",
            "Tools": "Hand Mixer, Silicone Spatula, Pastry Brush, Piping Set",
            "Ingredients": "Bread Flour, Sourdough Starter, Vanilla Extract, Cocoa Powder",
        },
        uses="sourdough bread, birthday cakes, weekend baking, holiday cookies, flaky pastry, beginner bakers",
        details=(
            "Non-stick surface for easy release from the oven.",
            "Perfect for bread, cakes and pastries.",
            "Oven-safe and dishwasher-safe bakeware.",
            "Bake like a pastry chef at home.",
            "Even heat for a golden crust.",
        ),
    ),
    _CategorySpec(
        name="Yoga",
        price_range=(8.0, 140.0),
        brands="Lotus, Zen, Prana, Serene, Sun Salutation, Balance, Flow State, Mindful, Shanti, Still Water",
        lines={
            "Mats & Props": "Yoga Mat, Travel Mat, Cork Yoga Block, Yoga Strap",
            "Apparel": "Yoga Leggings, Sports Bra, Yoga Top, Wrap Cardigan",
            "Meditation": "Meditation Cushion, Yoga Bolster, Singing Bowl, Aromatherapy Oil",
        },
        uses="vinyasa flow, hot yoga, daily meditation, deep stretching, pilates classes, restorative practice",
        details=(
            "Non-slip grip for balanced yoga poses.",
            "Supports alignment in every asana.",
            "Soft, breathable and made to move.",
            "Brings calm to your daily practice.",
            "Eco-friendly natural materials.",
        ),
    ),
    _CategorySpec(
        name="Gardening",
        price_range=(3.0, 120.0),
        brands="Green Thumb, Bloom, Seedling, Terra, Fern, Sunny Patch, Rosewood, Greenhouse, Meadow, Orchard",
        lines={
            "Plants & Seeds": "Tomato Seeds, Herb Kit, Flower Bulbs, Succulent Set",
            "Tools": "Pruning Shears, Garden Trowel, Watering Can, Garden Hose",
            "Soil & Beds": "Potting Mix, Organic Compost, Raised Bed, Plant Food",
        },
        uses="balcony gardens, raised beds, growing herbs, spring planting, healthy roots, indoor plants",
        details=(
            "Organic and safe for vegetable gardens.",
            "Helps plants bloom all season long.",
            "Rust-proof steel garden tools for years of use.",
            "Ideal for beginners and seasoned gardeners.",
            "Rich soil for strong seedlings.",
        ),
    ),
    _CategorySpec(
        name="Photography",
        price_range=(15.0, 1800.0),
        brands="Aperture, Shutter, Lumen, Focal, Prism, Optix, Silver Halide, Panorama, Bokeh, Exposure",
        lines={
            "Cameras": "Mirrorless Camera, Instant Camera, Action Camera, Film Camera",
            "Lenses": "Prime Lens, Zoom Lens, Macro Lens, Wide-Angle Lens",
            "Accessories": "Camera Tripod, Camera Bag, Memory Card, ND Filter",
        },
        uses="portrait photography, landscape shots, street photography, travel vlogging, low-light scenes, macro detail",
        details=(
            "Fast autofocus with beautiful bokeh.",
            "Sharp images from edge to edge of the frame.",
            "Weather-sealed for shooting outdoors.",
            "Captures 4K video and RAW photos.",
            "A compact camera companion for everyday carry.",
        ),
    ),
    _CategorySpec(
        name="Pet Supplies",
        price_range=(4.0, 110.0),
        brands="Happy Paws, Whisker, Tail Wag, Furry Friend, Pawprint, Good Boy, Kitty Corner, Fetch, Cozy Pet, Purrfect",
        lines={
            "Food": "Dog Food, Cat Food, Dog Treats, Cat Treats",
            "Toys": "Chew Toy, Cat Teaser Wand, Fetch Ball, Puzzle Feeder",
            "Care": "Pet Bed, Grooming Brush, Dog Leash, Litter Box",
        },
        uses="puppies, senior dogs, indoor cats, playful kittens, daily walks, picky eaters",
        details=(
            "Vet-approved and made with natural ingredients.",
            "Keeps your pet busy, happy and healthy.",
            "Durable enough for heavy chewers.",
            "Easy to clean and machine washable.",
            "Grain-free pet recipe with real chicken.",
        ),
    ),
)

CATEGORIES: tuple[str, ...] = tuple(spec.name for spec in _SPECS)

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

N_SUCCESSORS = 3
SUCCESSOR_WEIGHTS = (0.6, 0.25, 0.15)  # P(next is the 1st, 2nd, 3rd successor)
P_FOLLOW = 0.65
ZIPF_EXPONENT = 1.1
MIN_ITEMS_PER_CATEGORY = N_SUCCESSORS + 1
CATEGORY_SIZE_CONCENTRATION = 4.0
INTEREST_WEIGHT_CONCENTRATION = 6.0
P_SUBTAG = 0.7
P_DETAIL = 0.7

EVENT_TYPES = ("view", "cart", "purchase")
# A step is one visited item; its kind fixes the events it emits (codes index EVENT_TYPES, -1 = none).
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
class _Catalog:
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
    specs = _SPECS[:n_categories]
    catalog, items = _build_catalog(rng, specs, n_items)
    lengths = _draw_lengths(rng, n_users)
    interests, n_interests = _draw_interests(rng, n_users, n_categories)
    user, kind, start = _draw_step_kinds(rng, lengths)
    shift_at = _draw_shift_points(rng, lengths, n_interests, user, start)
    category = _draw_step_categories(
        rng, interests, n_interests, n_categories, shift_at, user, start
    )
    item = _draw_step_items(rng, catalog, user, category)
    steps = _Steps(user=user, kind=kind, start=start, item=item)
    user_ids = _format_ids("u", n_users, 5)
    events = _build_events(
        rng, steps, lengths, catalog.price, user_ids, items["item_id"].to_numpy()
    )
    planted = _build_planted(user_ids, specs, interests, n_interests, shift_at, lengths)
    return DemoData(events=events, items=items, planted=planted)


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


def _format_ids(prefix: str, count: int, min_width: int) -> np.ndarray:
    """Return zero-padded ids ``prefix + 1..count`` whose text order is numeric.

    Args:
        prefix: Leading letter.
        count: Number of ids.
        min_width: Minimum number of digits.
    """
    width = max(min_width, len(str(count)))
    return np.array([f"{prefix}{k:0{width}d}" for k in range(1, count + 1)], dtype=object)


def _build_catalog(
    rng: np.random.Generator, specs: tuple[_CategorySpec, ...], n_items: int
) -> tuple[_Catalog, pd.DataFrame]:
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
            "item_id": _format_ids("i", n_items, 4),
            "title": list(titles),
            "categories": pd.Series(list(tags), dtype=object),
            "text": list(texts),
        }
    )
    popularity_cdf = tuple(_zipf_cdf(len(chain)) for chain in chains)
    rank_to_position = tuple(rng.permutation(len(chain)) for chain in chains)
    catalog = _Catalog(price, chains, popularity_cdf, rank_to_position)
    return catalog, items


def _zipf_cdf(size: int) -> np.ndarray:
    """Return the CDF over popularity ranks ``0..size-1`` of a Zipf law.

    Args:
        size: Number of ranks.
    """
    weight = np.arange(1, size + 1, dtype=float) ** -ZIPF_EXPONENT
    return np.cumsum(weight) / weight.sum()


def _describe_items(
    rng: np.random.Generator, spec: _CategorySpec, count: int
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
    nouns = [(noun, subtag) for subtag, line in spec.lines.items() for noun in line.split(", ")]
    combos = [(brand, noun, subtag) for brand in spec.brands.split(", ") for noun, subtag in nouns]
    uses = spec.uses.split(", ")
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
    rng: np.random.Generator, catalog: _Catalog, user: np.ndarray, category: np.ndarray
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
    specs: tuple[_CategorySpec, ...],
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
