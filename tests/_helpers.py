"""Small builders shared by test modules: hand-made sequences and a tiny training shape."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

from core.data.sequences import Sequences

# A tiny model shape for tests of training mechanics (not quality): quick on 2 cores.
TINY = dict(
    hidden=16,
    layers=1,
    heads=2,
    max_len=20,
    batch=64,
    min_steps_per_epoch=5,
    text_encoder="none",
    dropout=0.0,
    next_item_share=0.0,  # masked windows only: the mechanics, quickly
    attention="bidirectional",  # tests of prefix attention ask for it
)


ALL_CPUS = "RECLENS_TEST_ALL_CPUS"  # the CPUs before conftest pinned this pytest worker


@contextmanager
def every_cpu() -> Iterator[None]:
    """Undo this pytest worker's pin (tests/conftest.py) while inside, for tests that start
    several busy processes at once (an app server, Chromium, a training worker): they
    inherit the affinity of the moment they start."""
    cpus = os.environ.get(ALL_CPUS)
    if not cpus:  # not a pinned xdist worker
        yield
        return
    pinned = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {int(c) for c in cpus.split(",")})
    try:
        yield
    finally:
        os.sched_setaffinity(0, pinned)


def seqs_of(histories: list[list[int]], n_items: int) -> Sequences:
    """Sequences of users u0, u1, ... with these item-index histories over items i1..iN."""
    lengths = [len(h) for h in histories]
    return Sequences(
        np.array([f"u{i}" for i in range(len(histories))], dtype=object),
        np.array([""] + [f"i{i}" for i in range(1, n_items + 1)], dtype=object),
        np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
        np.array([x for h in histories for x in h], dtype=np.int32),
    )
