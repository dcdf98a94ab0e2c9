"""The flags of ``python -m core``: one sub-parser per command, in ``--help`` order.

Declarations only: what each command does with its flags is :mod:`core.cli`'s. A
mistake in the command line raises :class:`UsageError` (argparse would print its usage
and exit by itself); the CLI turns it into one ``error: ...`` line and exit status 2.
"""

from __future__ import annotations

import argparse

from core.store import DEFAULT_DB


class UsageError(Exception):
    """A mistake in the command line itself."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse would print usage and exit 2 itself
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    """The command line: global options, then one sub-parser per command."""
    parser = _Parser(prog="python -m core", description="RecLens command line")
    parser.add_argument("--db", default=str(DEFAULT_DB), help="database file (%(default)s)")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    _add_demo(sub)
    _add_ingest(sub)
    _add_dataset_commands(sub)
    _add_train(sub)
    models = sub.add_parser("models", help="list the trained models")
    models.add_argument("--json", action="store_true")
    _add_recommend(sub)
    _add_interests(sub)
    _add_export(sub)
    _add_evaluate(sub)
    _add_report(sub)
    return parser


def _add_demo(sub: argparse._SubParsersAction) -> None:
    demo = sub.add_parser("demo", help="generate the demo dataset")
    demo.add_argument("--dataset", default="demo")
    demo.add_argument("--users", type=int, default=3000)
    demo.add_argument("--seed", type=int, default=7)
    demo.add_argument("--replace", action="store_true")
    demo.add_argument("--json", action="store_true")


def _add_ingest(sub: argparse._SubParsersAction) -> None:
    ing = sub.add_parser("ingest", help="load a behaviour log (and an item file)")
    ing.add_argument("--dataset", required=True)
    ing.add_argument("--events", required=True, help="CSV/TSV/Parquet behaviour log")
    ing.add_argument("--items", help="optional item file (id, title, categories, text)")
    ing.add_argument("--sep", help="delimiter (default: sniffed); \\t for tab")
    ing.add_argument("--no-header", action="store_true", help="the file has no header line")
    ing.add_argument("--encoding", default="auto", choices=["auto", "utf-8", "latin-1"])
    for role in ("user", "item", "time", "type", "value"):
        ing.add_argument(f"--{role}-col", help=f"{role} column: name or 1-based position")
    ing.add_argument("--min-value", type=float, help="keep events with value >= X")
    ing.add_argument("--item-id-col", help="the item file's id column")
    ing.add_argument("--title-col", help="item titles: in the item file, else in the log")
    ing.add_argument("--category-col", help="item categories: in the item file, else the log")
    ing.add_argument("--category-sep", default="|")
    ing.add_argument("--text-col", help="item descriptions: in the item file, else the log")
    ing.add_argument("--min-user-events", type=int, default=1)
    ing.add_argument("--min-item-events", type=int, default=1)
    ing.add_argument("--collapse-repeats", action="store_true")
    ing.add_argument("--replace", action="store_true", help="replace a dataset of that name")
    ing.add_argument("--json", action="store_true")


def _add_dataset_commands(sub: argparse._SubParsersAction) -> None:
    """``datasets``, ``stats`` and ``drop``."""
    ds = sub.add_parser("datasets", help="list the datasets")
    ds.add_argument("--json", action="store_true")
    stats = sub.add_parser("stats", help="figures of one dataset")
    stats.add_argument("--dataset", required=True)
    stats.add_argument("--json", action="store_true")
    drop = sub.add_parser("drop", help="delete a dataset")
    drop.add_argument("--dataset", required=True)


# train's plain numeric settings (default: the preset's), in --help order.
_TRAIN_NUMBERS = (
    ("epochs", int),
    ("max-len", int),
    ("hidden", int),
    ("layers", int),
    ("heads", int),
    ("batch", int),
    ("lr", float),
    ("mask-prob", float),
    ("dropout", float),
)


def _add_train(sub: argparse._SubParsersAction) -> None:
    tr = sub.add_parser("train", help="train the BERT preference model on a dataset")
    tr.add_argument("--dataset", required=True)
    tr.add_argument("--name", help="model name (default: DATASET-PRESET-TIMESTAMP)")
    tr.add_argument("--out", help="model directory (default: data/models/NAME)")
    tr.add_argument("--preset", default="fast", choices=["fast", "balanced", "quality"])
    for flag, kind in _TRAIN_NUMBERS:
        tr.add_argument(f"--{flag}", type=kind)
    _add_train_method(tr)
    _add_train_run(tr)


def _add_train_method(tr: argparse.ArgumentParser) -> None:
    """How train learns: targets, attention, inputs, transition memory, loss, start."""
    tr.add_argument(
        "--next-items",
        type=float,
        metavar="SHARE",
        help="share (0-1) of every history's next-item prefixes added to each epoch",
    )
    tr.add_argument(
        "--attention",
        choices=["bidirectional", "prefix"],
        help="prefix: each item sees only the ones before it and every prefix of a window "
        "trains in one pass; bidirectional: BERT4Rec's cloze windows",
    )
    tr.add_argument(
        "--item-targets",
        action=argparse.BooleanOptionalAction,
        help="with prefix attention, also train each item's own state on the next item "
        "(the fast preset does)",
    )
    tr.add_argument(
        "--event-types",
        action="store_true",
        help="embed each event's type (view, cart, ...) when the dataset has several",
    )
    tr.add_argument(
        "--no-transitions",
        action="store_true",
        help="never add a transition memory (what followed each item in training)",
    )
    tr.add_argument("--loss", choices=["auto", "full", "sampled"])
    tr.add_argument(
        "--item-init",
        choices=["random", "pmi"],
        help="item embeddings' start (default: the preset's, pmi = from co-occurrence)",
    )
    tr.add_argument("--text-encoder", help="auto | none | PATH of a BERT-family model folder")


def _add_train_run(tr: argparse.ArgumentParser) -> None:
    """Where, how precisely and how long train runs, and what it may replace."""
    tr.add_argument("--device", choices=["auto", "cpu", "cuda"])
    tr.add_argument(
        "--precision",
        choices=["auto", "float32", "bfloat16"],
        help="training steps: auto = bfloat16 on CUDA and on CPUs with native bfloat16",
    )
    tr.add_argument("--seed", type=int)
    tr.add_argument("--time-budget", type=float, help="stop after SECONDS (best epoch kept)")
    tr.add_argument("--resume", action="store_true", help="continue an interrupted run")
    tr.add_argument(
        "--replace",
        action="store_true",
        help="replace the model called --name (same dataset only); without it a taken "
        "name gets a free one (NAME-2, ...), said on stderr",
    )
    tr.add_argument(
        "--nproc",
        type=int,
        default=1,
        help="data-parallel processes on this machine (torchrun; GPUs or CPU cores)",
    )
    tr.add_argument("--json", action="store_true")


def _add_recommend(sub: argparse._SubParsersAction) -> None:
    rec = sub.add_parser("recommend", help="top-K items for a user")
    rec.add_argument("--model", required=True, help="a registered model name or a directory")
    rec.add_argument("--user", help="a user of the model's dataset")
    rec.add_argument("--k", type=int, default=10)
    rec.add_argument("--include-seen", action="store_true")
    rec.add_argument(
        "--history", help="ITEM,ITEM,... rank for this history instead (what-if, cold user)"
    )
    rec.add_argument(
        "--explain", action="store_true", help="attribute each item to the history (occlusion)"
    )
    rec.add_argument("--json", action="store_true")


def _add_interests(sub: argparse._SubParsersAction) -> None:
    inter = sub.add_parser("interests", help="a user's interest vector, affinity and drift")
    inter.add_argument("--model", required=True, help="a registered model name or a directory")
    inter.add_argument("--user", required=True)
    inter.add_argument("--level", default="all", choices=["all", "main"], help="categories")
    inter.add_argument("--k", type=int, default=10, help="neighbours and aligned items")
    inter.add_argument("--json", action="store_true")


def _add_export(sub: argparse._SubParsersAction) -> None:
    exp = sub.add_parser("export", help="top-K of every user to Parquet or CSV")
    exp.add_argument("--model", required=True, help="a registered model name or a directory")
    exp.add_argument("--out", required=True, help="FILE.parquet or FILE.csv")
    exp.add_argument("--k", type=int, default=20)
    exp.add_argument("--include-seen", action="store_true")
    exp.add_argument("--json", action="store_true")


def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    ev = sub.add_parser("evaluate", help="full-ranking evaluation of a model against baselines")
    ev.add_argument("--model", action="append", help="a registered model name or a directory")
    ev.add_argument("--dataset", help="evaluate baselines alone on this dataset")
    ev.add_argument("--split", choices=["loo", "time"], default="loo")
    ev.add_argument(
        "--baselines",
        default="pop,recent,itemknn,markov,ease",
        help="comma-separated pop,recent,itemknn,markov,ease,sasrec | all | none (%(default)s)",
    )
    ev.add_argument("--k", type=int, default=10, help="K of the headline figures (%(default)s)")
    ev.add_argument("--sampled", type=int, default=0, help="also rank against N sampled negatives")
    ev.add_argument("--sampling", choices=["popularity", "uniform"], default="popularity")
    ev.add_argument("--include-seen", action="store_true", help="rank the user's own items too")
    ev.add_argument("--ease-max-items", type=int, help="skip EASE above this many items (20000)")
    ev.add_argument("--no-save", action="store_true", help="do not store the results")
    ev.add_argument("--json", action="store_true")


def _add_report(sub: argparse._SubParsersAction) -> None:
    rep = sub.add_parser("report", help="one self-contained HTML page of what RecLens found")
    rep.add_argument("--dataset", required=True)
    rep.add_argument("--model", help="a registered model name or a directory (of the dataset)")
    rep.add_argument("--evaluation", help="a stored evaluation run id (default: the latest)")
    rep.add_argument("--out", required=True, help="FILE.html")
    rep.add_argument(
        "--users", help="U1,U2,...: example users (default: the first of each segment, up to 5)"
    )
    rep.add_argument("--json", action="store_true")
