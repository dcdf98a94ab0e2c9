"""One small trained demo model shared by the interests/recommend/page tests of a run.

Training costs the most, so it happens once per test process (``lru_cache``); each test
module then opens its own copy of the (closed) database file, so tests can write to
it (cached vectors, AppTest sessions) or hand it to a CLI subprocess independently.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from functools import lru_cache
from pathlib import Path

from core.data.demo import load_demo
from core.store import Store
from core.training.config import TrainConfig
from core.training.runs import train_dataset

USERS = 300
MODEL = "demo-test"
# Small and quick, yet good enough to recover the planted interests: item text
# features (the built-in MiniLM encoder) make categories easy to learn. Four epochs
# recover about 90% of the planted final interests (three gave 82%: too near the bar).
CONFIG = dict(
    text_encoder="auto",
    epochs=4,
    layers=1,
    hidden=64,
    max_len=20,
    dropout=0.1,
    lr=5e-3,
)


@lru_cache(maxsize=1)
def trained_demo() -> Path:
    """Path of a closed database holding the demo (300 users) and the model ``demo-test``."""
    folder = Path(tempfile.mkdtemp(prefix="reclens-trained-demo-"))
    atexit.register(shutil.rmtree, folder, True)
    store = Store(folder / "demo.duckdb")
    try:
        load_demo(store, n_users=USERS)
        train_dataset(
            store,
            "demo",
            TrainConfig.from_preset("fast", **CONFIG),
            name=MODEL,
            out_dir=folder / "models" / MODEL,
        )
    finally:
        store.close()
    return folder / "demo.duckdb"


def copy_of_trained(target_dir: Path) -> Path:
    """A private copy of the trained database in ``target_dir`` (the model folder is shared)."""
    target = Path(target_dir) / "demo.duckdb"
    shutil.copyfile(trained_demo(), target)
    return target
