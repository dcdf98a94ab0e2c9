"""Tests of per-user item sequences: vocabulary, order, padding, Arrow hand-off, the
docstring examples."""

from __future__ import annotations

import doctest
from collections import Counter

import numpy as np
import pyarrow as pa
import pytest

from core.data import sequences
from core.data.ingest import ingest
from core.data.sequences import PAD, Sequences, from_arrow, load_sequences
from core.store import Store, StoreError


@pytest.fixture(scope="module")
def demo_seq(demo_store: Store) -> Sequences:
    return load_sequences(demo_store, "demo")


@pytest.fixture(scope="module")
def demo_naive(demo_store: Store) -> tuple[dict[str, list[str]], list[str]]:
    """Histories and vocabulary built the slow, obvious way in Python."""
    frame = demo_store.query_df(
        """SELECT user_id, item_id, pos FROM events
           WHERE dataset_id = (SELECT dataset_id FROM datasets WHERE name = 'demo')"""
    )
    hist: dict[str, list[tuple[int, str]]] = {}
    for user, item, pos in frame.itertuples(index=False):
        hist.setdefault(user, []).append((pos, item))
    histories = {u: [item for _, item in sorted(events)] for u, events in hist.items()}
    counts = Counter(frame["item_id"])
    vocab = sorted(counts, key=lambda item: (-counts[item], item))
    return histories, vocab


def test_vocabulary_padding_popularity_and_mask(demo_seq: Sequences, demo_naive) -> None:
    _, vocab = demo_naive
    assert PAD == 0
    assert demo_seq.item_ids[0] == ""
    assert list(demo_seq.item_ids[1:]) == vocab
    assert demo_seq.n_items == len(vocab)
    assert demo_seq.mask_index == len(vocab) + 1
    # Indices count down in popularity: index 1 is the most frequent item.
    freq = np.bincount(demo_seq.items, minlength=demo_seq.n_items + 1)
    assert freq[0] == 0  # padding never appears in a history
    assert (np.diff(freq[1:]) <= 0).all()
    assert demo_seq.items.min() >= 1 and demo_seq.items.max() <= demo_seq.n_items


def test_histories_match_a_naive_construction(demo_seq: Sequences, demo_naive) -> None:
    histories, _ = demo_naive
    assert list(demo_seq.user_ids) == sorted(histories)
    assert demo_seq.items.dtype == np.int32
    assert demo_seq.offsets[0] == 0 and demo_seq.offsets[-1] == len(demo_seq.items)
    for u, user in enumerate(demo_seq.user_ids):
        assert list(demo_seq.item_ids[demo_seq.history(u)]) == histories[user]
    assert demo_seq.lengths.tolist() == [len(histories[u]) for u in demo_seq.user_ids]


@pytest.mark.parametrize("max_len", [1, 5, 20, 200])
def test_padded_matches_a_naive_construction(demo_seq: Sequences, max_len: int) -> None:
    expected = np.zeros((demo_seq.n_users, max_len), dtype=np.int32)
    for u in range(demo_seq.n_users):
        recent = demo_seq.history(u)[-max_len:]
        expected[u, max_len - len(recent) :] = recent
    got = demo_seq.padded(max_len)
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got, expected)


def test_padded_for_a_subset_of_users(demo_seq: Sequences) -> None:
    users = np.array([5, 0, 5, demo_seq.n_users - 1])
    np.testing.assert_array_equal(demo_seq.padded(8, users), demo_seq.padded(8)[users])


def test_padded_keeps_the_most_recent_items_right_aligned(store: Store, write) -> None:
    text = "user,item,time\n" + "".join(
        f"u1,i{k},{100 - k}\n" for k in range(6)
    )  # later lines are older
    text += "u2,i0,5\nu2,i9,1\n"
    ingest(store, "s", write("s.csv", text))
    seq = load_sequences(store, "s")
    idx = {item: i for i, item in enumerate(seq.item_ids)}
    # u1 in time order: i5, i4, i3, i2, i1, i0 (oldest first).
    assert list(seq.item_ids[seq.history(0)]) == ["i5", "i4", "i3", "i2", "i1", "i0"]
    padded = seq.padded(4)
    assert padded[0].tolist() == [idx["i3"], idx["i2"], idx["i1"], idx["i0"]]
    assert padded[1].tolist() == [PAD, PAD, idx["i9"], idx["i0"]]
    assert idx["i0"] == 1  # the only item two users share is the most popular


def test_histories_follow_pos_order(demo_store: Store, demo_seq: Sequences) -> None:
    info = demo_store.get_dataset("demo")
    user = demo_seq.user_ids[3]
    events = demo_store.user_events(info.dataset_id, user, limit=10_000)
    assert events["pos"].tolist() == list(range(len(events)))
    assert list(demo_seq.item_ids[demo_seq.history(3)]) == events["item_id"].tolist()
    assert events["time"].is_monotonic_increasing


def test_from_arrow_handles_sliced_and_chunked_tables(demo_store: Store, demo_seq) -> None:
    table, vocab = demo_store.sequences_arrow(demo_store.get_dataset("demo").dataset_id)
    sliced = from_arrow(table.slice(10, 20), vocab)
    assert list(sliced.user_ids) == list(demo_seq.user_ids[10:30])
    for u in range(20):
        np.testing.assert_array_equal(sliced.history(u), demo_seq.history(10 + u))
    chunked = pa.concat_tables([table.slice(0, 7), table.slice(7)])
    again = from_arrow(chunked, vocab)
    np.testing.assert_array_equal(again.items, demo_seq.items)
    np.testing.assert_array_equal(again.offsets, demo_seq.offsets)


def test_sequences_of_an_unknown_dataset(store: Store) -> None:
    with pytest.raises(StoreError, match="no dataset called 'nope'"):
        load_sequences(store, "nope")


def test_sequences_are_per_dataset(store: Store, write) -> None:
    ingest(store, "one", write("a.csv", "user,item\nu1,a\nu1,b\n"))
    ingest(store, "two", write("b.csv", "user,item\nu1,x\nu2,x\nu2,y\n"))
    one, two = load_sequences(store, "one"), load_sequences(store, "two")
    assert list(one.item_ids) == ["", "a", "b"] and list(one.user_ids) == ["u1"]
    assert list(two.item_ids) == ["", "x", "y"]
    assert [list(two.item_ids[two.history(u)]) for u in range(2)] == [["x"], ["x", "y"]]


def test_the_docstring_examples() -> None:
    """The module's docstring examples (transition_pairs)."""
    result = doctest.testmod(sequences)
    assert result.attempted > 0 and result.failed == 0
