"""The BERT preference model: a bidirectional Transformer over a user's item sequence.

Built on Hugging Face ``transformers`` (``BertConfig`` + ``BertModel``), trained with
masked-item prediction as in BERT4Rec. Items are embedded by their own table
(index 0 = padding, ``n_items + 1`` = the mask token); BertModel adds learned
positions and, optionally, event-type embeddings (as token types). The output
head scores every item by a dot product with the same (tied) item embeddings plus
a per-item bias; the preference score shown to users is the softmax over items.

Optional transition memory (attached after training, see
:func:`core.training.memory.fit_transitions`): how often each item followed each other item in
the training histories. The next-item distribution then becomes the posterior mean of
a Dirichlet whose prior is the Transformer's own prediction::

    P(j | history ending in i) = (C[i, j] + alpha * P_bert(j | history)) / (C[i] + alpha)

A last item with no recorded successors (or a cold user) leaves the Transformer's
ranking unchanged; a frequent one lets what really followed it speak. Interest vectors
(the Transformer's states) are not affected.

Optional item text: a frozen matrix of pretrained text vectors (see
:mod:`core.models.text`) passes through a learned projection and is added to each item's
id embedding, so an item never seen in training still gets a meaningful
embedding from its text (cold start).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn
from transformers import BertConfig, BertModel

from core.models.dropout import use_cheap_dropout

ATTENTIONS = ("bidirectional", "prefix")


@dataclass
class ModelConfig:
    """Shape of a :class:`PreferenceModel`.

    Args:
        n_items (int): number of real items; indices 1..n_items.
        max_len (int, default 50): longest input sequence (mask token included).
        hidden (int, default 64): embedding and hidden size.
        layers (int, default 2): Transformer layers.
        heads (int, default 2): attention heads (must divide ``hidden``).
        dropout (float, default 0.1): dropout on embeddings, attention and hidden states.
        n_event_types (int, default 0): event types embedded as token types (0 = none).
        text_dim (int, default 0): size of the item text vectors (0 = no text).
        causal (bool, default False): left-to-right attention (SASRec-style baseline).
        attention (str, default "bidirectional"): how the positions of a history see
            each other. ``bidirectional`` (BERT4Rec): every position sees every other.
            ``prefix``: an item sees itself and the items before it, a mask token sees
            every item before it, so the mask after a history reads it exactly as
            training read each of its prefixes, and training scores every prefix of a
            window in one pass (:meth:`PreferenceModel.encode_every_prefix`).
        transitions (int, default 0): recorded (item, next item) pairs of the transition
            memory (0 = none).
        transition_alpha (float, default 1.0): weight of the Transformer's prediction
            against the recorded transition counts.
    """

    n_items: int
    max_len: int = 50
    hidden: int = 64
    layers: int = 2
    heads: int = 2
    dropout: float = 0.1
    n_event_types: int = 0
    text_dim: int = 0
    causal: bool = False
    attention: str = "bidirectional"
    transitions: int = 0
    transition_alpha: float = 1.0

    def __post_init__(self) -> None:
        if self.attention not in ATTENTIONS:
            raise ValueError(
                f"unknown attention {self.attention!r}: choose {' or '.join(ATTENTIONS)}"
            )

    @property
    def mask_index(self) -> int:
        return self.n_items + 1

    @property
    def vocab_size(self) -> int:
        """Rows of the item table: padding, the items, the mask token."""
        return self.n_items + 2

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ModelConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown model settings: {', '.join(sorted(unknown))}")
        return cls(**data)

    def bert_config(self) -> BertConfig:
        """The ``BertConfig`` of the encoder (its word embeddings are unused)."""
        return BertConfig(
            vocab_size=1,
            hidden_size=self.hidden,
            num_hidden_layers=self.layers,
            num_attention_heads=self.heads,
            intermediate_size=4 * self.hidden,
            hidden_act="gelu",
            hidden_dropout_prob=self.dropout,
            attention_probs_dropout_prob=self.dropout,
            max_position_embeddings=self.max_len,
            type_vocab_size=max(1, self.n_event_types + 1),
            is_decoder=self.causal,
            add_cross_attention=False,
            use_cache=False,
            attn_implementation="sdpa",
        )


class PreferenceModel(nn.Module):
    """BERT4Rec-style next-item model.

    Args:
        config (ModelConfig): the shape.
        text_vectors (torch.Tensor | None): shape (n_items + 2, text_dim), frozen item
            text vectors (rows 0 and n_items + 1 are zeros); required when
            ``config.text_dim > 0``.
    """

    def __init__(self, config: ModelConfig, text_vectors: torch.Tensor | None = None) -> None:
        super().__init__()
        if config.hidden % config.heads:
            raise ValueError(
                f"hidden ({config.hidden}) must be a multiple of heads ({config.heads})"
            )
        self.config = config
        self.item_embeddings = nn.Embedding(config.vocab_size, config.hidden, padding_idx=0)
        self.encoder = use_cheap_dropout(BertModel(config.bert_config(), add_pooling_layer=False))
        # Items come in as inputs_embeds from the item table; BERT's own (1-row) word
        # embedding is never used, so it is not trained (DDP requires every trained
        # weight to get a gradient).
        self.encoder.embeddings.word_embeddings.weight.requires_grad_(False)
        self.head = nn.Sequential(
            nn.Linear(config.hidden, config.hidden),
            nn.GELU(),
            nn.LayerNorm(config.hidden, eps=1e-12),
        )
        self.item_bias = nn.Parameter(torch.zeros(config.vocab_size))
        if config.text_dim:
            if text_vectors is None or tuple(text_vectors.shape) != (
                config.vocab_size,
                config.text_dim,
            ):
                raise ValueError(
                    f"text_vectors must have shape ({config.vocab_size}, {config.text_dim})"
                )
            self.text_projection = nn.Linear(config.text_dim, config.hidden, bias=False)
            self.register_buffer("text_vectors", text_vectors.float(), persistent=True)
        else:
            self.text_projection = None
        nn.init.normal_(self.item_embeddings.weight, std=config.hidden**-0.5)
        with torch.no_grad():
            self.item_embeddings.weight[0].zero_()
        # A column mask over the item table: padding and the mask token are never scores.
        not_item = torch.zeros(config.vocab_size, dtype=torch.bool)
        not_item[0] = not_item[-1] = True
        self.register_buffer("not_item", not_item, persistent=False)
        if config.transitions:  # shapes only: the values come with the saved weights
            self._register_transitions(
                torch.zeros(config.vocab_size + 1, dtype=torch.long),
                torch.zeros(config.transitions, dtype=torch.long),
                torch.zeros(config.transitions),
            )

    def _register_transitions(
        self, row_starts: torch.Tensor, next_items: torch.Tensor, counts: torch.Tensor
    ) -> None:
        self.register_buffer("transition_rows", row_starts, persistent=True)
        self.register_buffer("transition_items", next_items, persistent=True)
        self.register_buffer("transition_counts", counts.float(), persistent=True)

    def attach_transitions(
        self, src: torch.Tensor, dst: torch.Tensor, counts: torch.Tensor, alpha: float
    ) -> None:
        """Store the transition memory: ``counts[k]`` times ``dst[k]`` followed ``src[k]``.

        Updates ``config.transitions`` and ``config.transition_alpha`` in place.
        """
        if alpha <= 0:
            raise ValueError(f"transition alpha must be positive, not {alpha}")
        device = self.item_bias.device
        src, dst = src.long().cpu(), dst.long().cpu()
        order = torch.argsort(src * self.config.vocab_size + dst)
        row_starts = torch.zeros(self.config.vocab_size + 1, dtype=torch.long)
        row_starts[1:] = torch.cumsum(torch.bincount(src, minlength=self.config.vocab_size), 0)
        self._register_transitions(
            row_starts.to(device), dst[order].to(device), counts.float().cpu()[order].to(device)
        )
        self.config.transitions = len(src)
        self.config.transition_alpha = float(alpha)

    def drop_transitions(self) -> None:
        """Remove the transition memory (the Transformer alone ranks again)."""
        for name in ("transition_rows", "transition_items", "transition_counts"):
            self._buffers.pop(name, None)
        self.config.transitions = 0

    def transitions_of(self, last: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """What followed each item of ``last``, sparse: (row, next item, count) triples.

        ``row`` indexes ``last``; within a row, the next items are distinct.
        """
        last = last.long()
        if not self.config.transitions:
            empty = torch.zeros(0, dtype=torch.long, device=last.device)
            return empty, empty, torch.zeros(0, device=last.device)
        starts = self.transition_rows[last]
        lengths = self.transition_rows[last + 1] - starts
        row = torch.repeat_interleave(torch.arange(len(last), device=last.device), lengths)
        offsets = torch.cumsum(lengths, 0) - lengths
        src = torch.arange(int(lengths.sum()), device=last.device) - offsets[row] + starts[row]
        return row, self.transition_items[src], self.transition_counts[src]

    def with_transitions(self, logits: torch.Tensor, last: torch.Tensor) -> torch.Tensor:
        """Next-item logits of the Transformer, combined with the transition memory.

        Args:
            logits: (batch, n_items + 2) Transformer logits.
            last: (batch,) the last item of each history (0 = none).

        Returns:
            ``logits`` unchanged without a memory; else the log-probabilities
            ``log((C[last, j] + alpha * softmax(logits)_j) / (C[last] + alpha))``.
        """
        if not self.config.transitions:
            return logits
        return fuse_transitions(logits, *self.transitions_of(last), self.config.transition_alpha)

    def item_table(self) -> torch.Tensor:
        """Embedding of every index, shape (n_items + 2, hidden): id (+ projected text)."""
        table = self.item_embeddings.weight
        if self.text_projection is not None:
            table = table + self.text_projection(self.text_vectors)
        return table

    def encode(
        self,
        items: torch.Tensor,
        event_types: torch.Tensor | None = None,
        table: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Transformer states of every position (before the output head).

        Args:
            items: (batch, length) left-padded item indices (0 = padding, the mask
                index = masked), most recent last; ``length <= max_len``. Positions
                are counted from the right, so a trimmed batch (fewer leading
                padding columns) means the same as a full-width one.
            event_types: (batch, length) event-type indices (0 = none), optional.
            table: a precomputed :meth:`item_table` (saves recomputing it).

        Returns:
            (batch, length, hidden) tensor.
        """
        table = self.item_table() if table is None else table
        length = items.shape[1]
        positions = torch.arange(
            self.config.max_len - length, self.config.max_len, device=items.device
        ).expand(items.shape[0], -1)
        if not self.config.n_event_types:
            event_types = None
        if self.config.attention == "prefix":
            attention = prefix_mask(items, self.config.mask_index)
        else:
            attention = (items != 0).long()
        return self.encoder(
            inputs_embeds=F.embedding(items, table),
            attention_mask=attention,
            token_type_ids=event_types,
            position_ids=positions,
        ).last_hidden_state

    def encode_every_prefix(
        self,
        windows: torch.Tensor,
        event_types: torch.Tensor | None = None,
        table: torch.Tensor | None = None,
        with_items: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """States of a mask token after every prefix of each window, in one pass.

        For a ``prefix`` model: the window's items are followed by one mask token per
        item, at that item's position; the mask standing for item ``t`` sees items
        ``1..t-1`` and itself, the items see themselves and the items before them. So
        the mask for item ``t`` is computed exactly as :meth:`encode` computes the mask
        after the history ``1..t-1`` (same attention, positions shifted), and a window
        of ``w`` items trains ``w - 1`` next-item questions for the cost of ``2w`` tokens,
        where one window per prefix costs about ``w^2 / 2``.

        Args:
            windows: (batch, width) left-padded items (no mask tokens).
            event_types: (batch, width) their event types, optional.

        Returns:
            (batch, width, hidden): the state that predicts ``windows[:, t]`` from the
            items before it (meaningless where ``t`` is padding or the first item).
            With ``with_items``, also the items' own states (batch, width, hidden), each
            computed from that item and the ones before it.
        """
        table = self.item_table() if table is None else table
        batch, width = windows.shape
        device = windows.device
        real = windows != 0
        masks = torch.where(real, self.config.mask_index, 0)
        positions = torch.arange(self.config.max_len - width, self.config.max_len, device=device)
        items_see = prefix_mask(windows, self.config.mask_index)[:, 0]  # (batch, w, w)
        itself = torch.eye(width, dtype=torch.bool, device=device).expand(batch, -1, -1)
        masks_see = items_see & ~itself  # the items strictly before
        attention = torch.cat(
            [
                torch.cat([items_see, torch.zeros_like(items_see)], 2),
                torch.cat([masks_see, itself], 2),
            ],
            1,
        )[:, None]
        if self.config.n_event_types and event_types is not None:
            event_types = torch.cat([event_types, torch.zeros_like(event_types)], 1)
        else:
            event_types = None
        states = self.encoder(
            inputs_embeds=F.embedding(torch.cat([windows, masks], 1), table),
            attention_mask=attention,
            token_type_ids=event_types,
            position_ids=positions.repeat(2).expand(batch, -1),
        ).last_hidden_state
        return (states[:, width:], states[:, :width]) if with_items else states[:, width:]

    def score(self, states: torch.Tensor, table: torch.Tensor | None = None) -> torch.Tensor:
        """Logits over the item table for encoder states of shape (..., hidden).

        Applies the output head, then the dot product with the (tied) item table
        plus the item bias.

        Returns:
            (..., n_items + 2) logits; padding and mask columns are -inf.
        """
        table = self.item_table() if table is None else table
        logits = self.head(states) @ table.T + self.item_bias
        return logits.masked_fill(self.not_item, float("-inf"))

    def next_item_logits(
        self, items: torch.Tensor, event_types: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Logits of the item that follows each history.

        Args:
            items: (batch, length) left-padded histories whose last column is the
                mask token (see :func:`append_mask`).

        Returns:
            (batch, n_items + 2) logits; with a transition memory, log-probabilities
            (see :meth:`with_transitions`; the item before the mask is the last one).
        """
        table = self.item_table()
        logits = self.score(self.encode(items, event_types, table)[:, -1], table)
        if not self.config.transitions:
            return logits
        last = items[:, -2] if items.shape[1] > 1 else torch.zeros_like(items[:, 0])
        return self.with_transitions(logits, last)


def fuse_transitions(
    logits: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, counts: torch.Tensor, alpha: float
) -> torch.Tensor:
    """``log((C + alpha * softmax(logits)) / (C.sum(1) + alpha))``, row-wise, where the
    sparse ``C`` holds ``counts`` at (``rows``, ``cols``) (no repeated pair).

    One log-softmax pass over the whole matrix, then a fix-up of the recorded pairs
    only. In log space, so items the Transformer finds very unlikely keep distinct
    (finite) scores instead of underflowing together to zero.

    >>> logits = torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    >>> one = torch.tensor([0])
    >>> fuse_transitions(logits, one, one, torch.tensor([2.0]), 1.0).exp()
    tensor([[0.7778, 0.1111, 0.1111],
            [0.3333, 0.3333, 0.3333]])
    """
    return fuse_log_probs(torch.log_softmax(logits.float(), dim=-1), rows, cols, counts, alpha)


def fuse_log_probs(
    log_probs: torch.Tensor,
    rows: torch.Tensor,
    cols: torch.Tensor,
    counts: torch.Tensor,
    alpha: float,
) -> torch.Tensor:
    """:func:`fuse_transitions` from the Transformer's log-probabilities (row-wise
    ``log_softmax``), so several ``alpha`` can share one softmax. Returns a new tensor."""
    norm = torch.log(
        torch.zeros(len(log_probs), device=log_probs.device).index_add_(0, rows, counts.float())
        + alpha
    )
    out = log_probs + (math.log(alpha) - norm)[:, None]  # every item: alpha * p / (C + alpha)
    if len(rows):
        prior = out[rows, cols]  # log(alpha * p / (C + alpha)) at the recorded pairs
        out[rows, cols] = torch.logaddexp(torch.log(counts.float()) - norm[rows], prior)
    return out


def prefix_mask(items: torch.Tensor, mask_index: int) -> torch.Tensor:
    """The attention of a ``prefix`` model over ``items``, shape (batch, 1, length, length).

    Each position sees itself and the real items (not padding, not mask tokens) before
    it, so no position ever sees a later one: the mask token after a history sees the
    whole history, each item only its past.
    """
    length = items.shape[1]
    earlier = torch.ones(length, length, dtype=torch.bool, device=items.device).tril()
    is_item = (items != 0) & (items != mask_index)
    allowed = (earlier & is_item[:, None, :]) | torch.eye(
        length, dtype=torch.bool, device=items.device
    )
    return allowed[:, None]


def append_mask(histories: torch.Tensor, mask_index: int) -> torch.Tensor:
    """Shift left-padded histories left by one and put the mask token in the last column.

    Args:
        histories: (batch, length) item indices, most recent item last.

    Returns:
        (batch, length) tensor: the last ``length - 1`` items followed by the mask.
    """
    out = torch.empty_like(histories)
    out[:, :-1] = histories[:, 1:]
    out[:, -1] = mask_index
    return out
