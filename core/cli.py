"""``python -m core``: the command line mirrors what the app can do.

Exit status 0 on success; 2 for bad input or usage, with one ``error: ...`` line
on stderr and never a traceback for a user mistake. ``--json`` prints exactly one
JSON object (or list, for ``datasets``) on stdout.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from core.store import DEFAULT_DB, Store, StoreError


class UsageError(Exception):
    """A mistake in the command line itself."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse would print usage and exit 2 itself
        raise UsageError(message)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m core", description="RecLens command line")
    parser.add_argument("--db", default=str(DEFAULT_DB), help="database file (%(default)s)")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    demo = sub.add_parser("demo", help="generate the demo dataset")
    demo.add_argument("--dataset", default="demo")
    demo.add_argument("--users", type=int, default=3000)
    demo.add_argument("--seed", type=int, default=7)
    demo.add_argument("--replace", action="store_true")
    demo.add_argument("--json", action="store_true")

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
    ing.add_argument("--item-id-col")
    ing.add_argument("--title-col")
    ing.add_argument("--category-col")
    ing.add_argument("--category-sep", default="|")
    ing.add_argument("--text-col")
    ing.add_argument("--min-user-events", type=int, default=1)
    ing.add_argument("--min-item-events", type=int, default=1)
    ing.add_argument("--collapse-repeats", action="store_true")
    ing.add_argument("--replace", action="store_true", help="replace a dataset of that name")
    ing.add_argument("--json", action="store_true")

    ds = sub.add_parser("datasets", help="list the datasets")
    ds.add_argument("--json", action="store_true")

    stats = sub.add_parser("stats", help="figures of one dataset")
    stats.add_argument("--dataset", required=True)
    stats.add_argument("--json", action="store_true")

    drop = sub.add_parser("drop", help="delete a dataset")
    drop.add_argument("--dataset", required=True)
    return parser


def _unescape(sep: str | None) -> str | None:
    if sep is None:
        return None
    return {"\\t": "\t", "tab": "\t", "space": " ", "\\s": " "}.get(sep, sep)


def _cmd_demo(store: Store, args: argparse.Namespace) -> dict[str, Any]:
    from core.demo import load_demo

    if args.users < 10:
        raise UsageError("--users must be at least 10")
    result = load_demo(
        store, args.dataset, n_users=args.users, seed=args.seed, replace_existing=args.replace
    )
    return result.summary()


def _cmd_ingest(store: Store, args: argparse.Namespace) -> dict[str, Any]:
    from core.ingest import Cleaning, ReadOptions, ingest

    read = ReadOptions(
        delimiter=_unescape(args.sep),
        header=False if args.no_header else None,
        encoding=args.encoding,
    )
    roles = {r: getattr(args, f"{r}_col") for r in ("user", "item", "time", "type", "value")}
    mapping = None
    if any(roles.values()) or args.min_value is not None:
        mapping = _complete_mapping(store, args, read, roles)
    item_mapping = None
    if args.items:
        item_mapping = _complete_item_mapping(store, args)
    result = ingest(
        store,
        args.dataset,
        args.events,
        mapping,
        read=read,
        items_path=args.items,
        item_mapping=item_mapping,
        cleaning=Cleaning(args.min_user_events, args.min_item_events, args.collapse_repeats),
        replace_existing=args.replace,
        progress=_progress_printer(args.json),
    )
    return result.summary()


def _merge(suggested: dict[str, Any], given: dict[str, Any], resolve) -> dict[str, Any]:
    """Given columns override the suggestion; a role left out keeps its suggested column
    unless a given role already uses that column."""
    taken = {resolve(column, role) for role, column in given.items()}
    return {
        role: given.get(role) or (None if column in taken else column)
        for role, column in suggested.items()
    }


def _complete_mapping(store, args, read, roles):
    """The event mapping: the roles named on the command line, the rest suggested."""
    from core.ingest import EventMapping, inspect, suggest_mapping

    inspection = inspect(store, args.events, read)
    suggested = suggest_mapping(inspection)
    given = {r: c for r, c in roles.items() if c}
    fields = _merge({r: getattr(suggested, r) for r in roles}, given, inspection.resolve)
    return EventMapping(**fields, min_value=args.min_value)


def _complete_item_mapping(store, args):
    """The item-file mapping: the columns named on the command line, the rest suggested."""
    from core.ingest import ItemMapping, inspect, suggest_item_mapping

    inspection = inspect(store, args.items)
    suggested = suggest_item_mapping(inspection)
    flags = {
        "item": "item_id_col",
        "title": "title_col",
        "categories": "category_col",
        "text": "text_col",
    }
    given = {role: getattr(args, flag) for role, flag in flags.items() if getattr(args, flag)}
    fields = _merge(
        {role: getattr(suggested, role) for role in flags},
        given,
        lambda spec, role: inspection.resolve(spec, f"item-file {role}"),
    )
    return ItemMapping(**fields, category_sep=_unescape(args.category_sep) or "|")


def _progress_printer(quiet: bool):
    if quiet or not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    bar = tqdm(total=100, desc="ingest", unit="%", leave=False)

    def report(fraction: float, message: str) -> None:
        bar.set_description(message)
        bar.update(max(0, round(fraction * 100) - bar.n))
        if fraction >= 1:
            bar.close()

    return report


def _cmd_datasets(store: Store, args: argparse.Namespace) -> list[dict[str, Any]]:
    return [d.summary() for d in store.list_datasets()]


def _cmd_stats(store: Store, args: argparse.Namespace) -> dict[str, Any]:
    return store.dataset_stats(args.dataset)


def _cmd_drop(store: Store, args: argparse.Namespace) -> dict[str, Any]:
    store.drop_dataset(args.dataset)
    return {"dropped": args.dataset}


def _print_human(command: str, result: Any) -> None:
    if command == "datasets":
        if not result:
            print("no datasets yet: run `python -m core demo` or `python -m core ingest ...`")
        for d in result:
            print(
                f"{d['name']:<24} {d['events']:>10,} events {d['users']:>8,} users "
                f"{d['items']:>8,} items"
            )
        return
    if command in ("ingest", "demo"):
        print(
            f"loaded {result['dataset']}: {result['events']:,} events, {result['users']:,} "
            f"users, {result['items']:,} items"
        )
        dropped = {k: v for k, v in result["dropped"].items() if v}
        print("dropped: " + (", ".join(f"{k}={v:,}" for k, v in dropped.items()) or "nothing"))
        for ex in result.get("report", {}).get("examples", []):
            print(f"  line {ex['line']}: {ex['problem']}")
        return
    if command == "drop":
        print(f"dropped {result['dropped']}")
        return
    for key, value in result.items():
        if key != "report":
            print(f"{key}: {value}")


def _print_error(message: str) -> None:
    """One ``error: ...`` line on stderr, whatever line breaks the message holds."""
    print("error: " + " ".join(message.split()), file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status."""
    from core.ingest import IngestError

    try:
        args = _parser().parse_args(argv)
        store = Store(args.db)
        handler = {
            "demo": _cmd_demo,
            "ingest": _cmd_ingest,
            "datasets": _cmd_datasets,
            "stats": _cmd_stats,
            "drop": _cmd_drop,
        }[args.command]
        result = handler(store, args)
    except (UsageError, StoreError, IngestError) as exc:
        _print_error(str(exc))
        return 2
    except OSError as exc:  # an unreadable file or folder named on the command line
        where = f": {exc.filename}" if exc.filename else ""
        _print_error(f"{exc.strerror or exc}{where}")
        return 2
    if getattr(args, "json", False):
        print(json.dumps(result, default=str))
    else:
        _print_human(args.command, result)
    return 0
