"""One home for the names that cross layers: frame columns and the training metric keys.

The store's tables, the frames the serving and report code hand to the pages, the
exports and the JSON records of a model all spell a user, an item and the validation
figures the same way; these constants are that spelling. SQL text keeps the column
names inline (the store is the only place SQL lives, and a statement reads better
whole).

>>> Columns.USER, Columns.ITEM
('user_id', 'item_id')
>>> MetricKeys.NDCG, MetricKeys.WITHOUT_MEMORY
('val_ndcg@10', 'val_ndcg@10_without')
"""

from __future__ import annotations


class Columns:
    """The id columns that join frames across layers: the store's tables, the frames
    serving and the reports hand to the pages, and the exports. (Display columns such as
    ``title`` and ``categories`` double as the mapping's role names, spelled in
    :mod:`core.data.suggest`.)"""

    USER = "user_id"
    ITEM = "item_id"


class MetricKeys:
    """Keys of the validation figures in a model's training record (``training.json``),
    its per-epoch history and its transition-memory summary: NDCG@10 and HR@10 on the
    validation users."""

    NDCG = "val_ndcg@10"
    HR = "val_hr@10"
    # the memory summary's figure of the Transformer alone, and the run's best figure
    WITHOUT_MEMORY = "val_ndcg@10_without"
    BEST_NDCG = "best_val_ndcg@10"
