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

from core.cli_output import print_human
from core.cli_parser import UsageError, build_parser
from core.common.columns import Columns
from core.store import Store, StoreError


def _unescape(sep: str | None) -> str | None:
    if sep is None:
        return None
    return {"\\t": "\t", "tab": "\t", "space": " ", "\\s": " "}.get(sep, sep)


def _cmd_demo(store: Store, args: argparse.Namespace) -> dict[str, Any]:
    from core.data.demo import load_demo

    if args.users < 10:
        raise UsageError("--users must be at least 10")
    result = load_demo(
        store, args.dataset, n_users=args.users, seed=args.seed, replace_existing=args.replace
    )
    return result.summary()


def _cmd_ingest(store: Store, args: argparse.Namespace) -> dict[str, Any]:
    from core.data.ingest import ingest, refuse_single_column, suggest, unsure_message
    from core.data.inspection import inspect
    from core.data.mapping import Cleaning
    from core.data.sources import ReadOptions

    read = ReadOptions(
        delimiter=_unescape(args.sep),
        header=False if args.no_header else None,
        encoding=args.encoding,
    )
    inspection = inspect(store, args.events, read)
    refuse_single_column(inspection)
    found = suggest(inspection)
    roles = {r: getattr(args, f"{r}_col") for r in ("user", "item", "time", "type", "value")}
    unsure = [r for r in found.unsure_ids() if not roles[r]]
    if inspection.has_header and unsure:
        raise UsageError(
            unsure_message(
                inspection,
                found,
                "Say which they are: " + " ".join(f"--{r}-col COLUMN" for r in unsure) + ".",
            )
        )
    mapping = _complete_mapping(inspection, found, args, roles)
    item_mapping = None
    if args.items:
        item_mapping = _complete_item_mapping(store, args)
    elif args.item_id_col:
        raise UsageError("--item-id-col names the id column of an item file: pass --items FILE")
    elif args.title_col or args.category_col or args.text_col:
        item_mapping = _log_item_mapping(args)
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
        inspection=inspection,  # sniffed once, above
    )
    summary = result.summary()
    summary["mapping"] = {
        role: {"column": column, "reason": _reason(found, role, column, roles)}
        for role, column in result.dataset.mapping["events"].items()
        if role != "min_value" and column
    }
    if item_mapping is None and not args.items and found.items:
        summary["hint"] = (
            "the log also holds item details: "
            + " ".join(f"--{_ITEM_FLAGS[role]} {g.column!r}" for role, g in found.items.items())
            + " keeps them as the item catalogue"
        )
    return summary


_ITEM_FLAGS = {"title": "title-col", "categories": "category-col", "text": "text-col"}


def _reason(found, role: str, column: str, given: dict[str, Any]) -> str:
    if given.get(role):
        return "given"
    guess = found.events.get(role)
    return guess.reason if guess and guess.column == column else "given"


def _merge(suggested: dict[str, Any], given: dict[str, Any], resolve) -> dict[str, Any]:
    """Given columns override the suggestion; a role left out keeps its suggested column
    unless a given role already uses that column."""
    taken = {resolve(column, role) for role, column in given.items()}
    return {
        role: given.get(role) or (None if column in taken else column)
        for role, column in suggested.items()
    }


def _complete_mapping(inspection, found, args, roles):
    """The event mapping: the roles named on the command line, the rest suggested."""
    from core.data.mapping import EventMapping

    given = {r: c for r, c in roles.items() if c}
    suggested = {r: found.column(r) for r in roles}
    if not args.items:  # item details named in the log are not event columns
        details = {
            inspection.resolve(spec, "item detail")
            for spec in (args.title_col, args.category_col, args.text_col)
            if spec
        }
        suggested = {r: None if c in details else c for r, c in suggested.items()}
    fields = _merge(suggested, given, inspection.resolve)
    return EventMapping(**fields, min_value=args.min_value)


def _log_item_mapping(args):
    """Item details named on the command line, read from the behaviour log itself."""
    from core.data.mapping import ItemMapping

    return ItemMapping(
        title=args.title_col,
        categories=args.category_col,
        text=args.text_col,
        category_sep=_unescape(args.category_sep) or "|",
    )


def _complete_item_mapping(store, args):
    """The item-file mapping: the columns named on the command line, the rest suggested."""
    from core.data.ingest import suggest_item_mapping
    from core.data.inspection import inspect
    from core.data.mapping import ItemMapping

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


def _model_name(store: Store, args: argparse.Namespace) -> str | None:
    """``--name``, or a free name like it when a model already uses it (said on stderr)."""
    from core.models.registry import claim_model_name, free_model_name

    if not args.name or args.replace or args.resume:
        return args.name
    try:
        return claim_model_name(store, args.dataset, args.name, out_dir=args.out)
    except StoreError:
        name = free_model_name(store, args.name)
    print(
        f"note: a model named {args.name!r} already exists; saving this one as {name!r} "
        "(--replace replaces it)",
        file=sys.stderr,
    )
    return name


def _cmd_train(store: Store, args: argparse.Namespace) -> dict[str, Any]:
    from core.services import train_model
    from core.training.cluster import pick_device
    from core.training.config import TrainConfig

    try:
        config = TrainConfig.from_preset(
            args.preset,
            epochs=args.epochs,
            max_len=args.max_len,
            hidden=args.hidden,
            layers=args.layers,
            heads=args.heads,
            batch=args.batch,
            lr=args.lr,
            mask_prob=args.mask_prob,
            dropout=args.dropout,
            next_item_share=args.next_items,
            attention=args.attention,
            item_targets=args.item_targets,
            event_types=True if args.event_types else None,
            transitions=False if args.no_transitions else None,
            loss=args.loss,
            text_encoder=args.text_encoder,
            device=args.device,
            precision=args.precision,
            item_init=args.item_init,
            seed=args.seed,
            time_budget=args.time_budget,
        )
        pick_device(config.device)  # --device cuda without CUDA: say so before any work
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    _check_positive(
        args, ("epochs", "max_len", "hidden", "layers", "heads", "batch", "lr", "nproc")
    )
    return train_model(
        store,
        args.dataset,
        config,
        nproc=args.nproc,
        name=_model_name(store, args),
        out_dir=args.out,
        resume=args.resume,
        replace=args.replace,
        callback=_train_bar(args.json),
    )


def _check_positive(args: argparse.Namespace, names: Sequence[str]) -> None:
    for name in names:
        value = getattr(args, name)
        if value is not None and value <= 0:
            raise UsageError(f"--{name.replace('_', '-')} must be positive")


def _train_bar(quiet: bool):
    if quiet or not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    bars: dict[str, Any] = {}

    def report(p) -> None:
        bar = bars.get("bar")
        if bar is None or bar.desc != f"epoch {p.epoch}/{p.epochs}":
            if bar is not None:
                bar.close()
            bar = bars["bar"] = tqdm(
                total=p.steps_per_epoch,
                desc=f"epoch {p.epoch}/{p.epochs}",
                unit="step",
                leave=False,
            )
        bar.n = p.step
        bar.set_postfix(loss=f"{p.loss or 0:.3f}", best_ndcg10=f"{p.best_val_ndcg10 or 0:.4f}")
        bar.refresh()
        if p.phase in ("validate", "transitions"):
            bar.write(p.message)

    return report


def _cmd_models(store: Store, args: argparse.Namespace) -> list[dict[str, Any]]:
    return [m.summary() for m in store.list_models()]


def _cmd_recommend(store: Store, args: argparse.Namespace) -> dict[str, Any]:
    if args.k <= 0:
        raise UsageError("--k must be positive")
    if args.user is None and args.history is None:
        raise UsageError("give --user USER_ID, or --history ITEM,ITEM,... (or both)")
    from core.common.tables import category_list, text_or_empty
    from core.models.registry import model_dataset, resolve_model
    from core.services import recommend_with_reasons
    from core.serving.model_data import encode_history

    saved = resolve_model(store, args.model)
    for warning in saved.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    dataset = model_dataset(store, saved)
    if args.history is not None:  # what-if: this history instead of the stored one
        history = [i.strip() for i in args.history.split(",") if i.strip()]
    else:
        history = store.user_history(dataset.dataset_id, args.user)
        if not history:
            raise UsageError(f"user {args.user!r} has no events in dataset {dataset.name!r}")
    ranked = recommend_with_reasons(
        saved, history, args.k, not args.include_seen, explained=args.explain
    )
    wanted = list(ranked.top[Columns.ITEM]) + (history if args.explain else [])
    details = store.item_details(dataset.dataset_id, wanted).set_index(Columns.ITEM)

    def title(item_id: str) -> str | None:
        if item_id not in details.index:
            return None
        return text_or_empty(details.at[item_id, "title"]) or None

    items = []
    for n, row in enumerate(ranked.top.itertuples(index=False)):
        item = {Columns.ITEM: row.item_id, "score": float(row.score)}
        if row.item_id in details.index:
            item["title"] = title(row.item_id)
            item["categories"] = category_list(details.at[row.item_id, "categories"])
        if args.explain:
            item["explanation"] = [
                {
                    Columns.ITEM: e.history_item,
                    "title": title(e.history_item),
                    "contribution": float(e.contribution),
                }
                for e in ranked.explanations[row.item_id].itertuples(index=False)
            ]
            item["because_of"] = ranked.because[n]
        items.append(item)
    result = {"user": args.user, "model": saved.name, "items": items}
    if args.history is not None:
        _, unknown = encode_history(saved, history)
        result["history"] = history
        result["unknown_items"] = unknown
    return result


def _cmd_interests(store: Store, args: argparse.Namespace) -> dict[str, Any]:
    from core.models.registry import resolve_model
    from core.serving.interests import user_report
    from core.serving.model_data import load_model_data

    if args.k <= 0:
        raise UsageError("--k must be positive")
    saved = resolve_model(store, args.model)
    for warning in saved.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    data = load_model_data(store, saved)
    if data.user_number(args.user) is None:
        raise UsageError(f"user {args.user!r} has no events in dataset {saved.dataset!r}")
    return user_report(store, data, args.user, level=args.level, k=args.k)


def _cmd_export(store: Store, args: argparse.Namespace) -> dict[str, Any]:
    if args.k <= 0:
        raise UsageError("--k must be positive")
    if not args.out.lower().endswith((".parquet", ".pq", ".csv")):
        raise UsageError(f"{args.out}: the export file must end in .parquet or .csv")
    from core.models.registry import resolve_model
    from core.serving.exports import export_top_k
    from core.serving.model_data import load_model_data

    saved = resolve_model(store, args.model)
    for warning in saved.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    data = load_model_data(store, saved)
    result = export_top_k(
        data,
        args.out,
        k=args.k,
        exclude_seen=not args.include_seen,
        progress=_progress_printer(args.json),
    )
    return {"model": saved.name, **result}


def _cmd_evaluate(store: Store, args: argparse.Namespace) -> dict[str, Any]:
    from core.evaluation.results import EvalConfig
    from core.evaluation.runner import run
    from core.models.baselines import parse_baselines

    _check_positive(args, ("k", "ease_max_items"))
    if args.sampled < 0:
        raise UsageError("--sampled must be 0 (off) or positive")
    if not args.model and not args.dataset:
        raise UsageError("name a model with --model (or a dataset for baselines alone)")
    bar = _progress_printer(args.json)
    try:
        evaluation, warnings = run(
            store,
            models=args.model or [],
            dataset=args.dataset,
            baselines=parse_baselines(args.baselines),
            config=EvalConfig(
                split=args.split,
                k=args.k,
                exclude_seen=not args.include_seen,
                sampled=args.sampled,
                sampling=args.sampling,
            ),
            ease_max_items=args.ease_max_items,
            save_results=not args.no_save,
            progress=bar,
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return evaluation.to_json()


def _cmd_report(store: Store, args: argparse.Namespace) -> dict[str, Any]:
    if not args.out.lower().endswith((".html", ".htm")):
        raise UsageError(f"{args.out}: the report file must end in .html")
    from core.reports.page import ReportError, write_report

    users = None
    if args.users is not None:
        users = [u.strip() for u in args.users.split(",") if u.strip()]
    try:
        result = write_report(
            store,
            args.dataset,
            model=args.model,
            evaluation=args.evaluation,
            users=users,
            out=args.out,
        )
    except ReportError as exc:
        raise UsageError(str(exc)) from None
    for warning in result["warnings"]:
        print(f"warning: {warning}", file=sys.stderr)
    return result


def _print_error(message: str) -> None:
    """One ``error: ...`` line on stderr, whatever line breaks the message holds."""
    print("error: " + " ".join(message.split()), file=sys.stderr)


def _loaded_errors() -> tuple[type[Exception], ...]:
    """User-error types of the heavy modules (torch), only once a command has imported them:
    an error of a module not loaded cannot have been raised, and ``ingest`` or ``datasets``
    start in a second instead of ten."""
    found = []
    for module, name in (
        ("core.models.checkpoint", "CheckpointError"),
        ("core.models.text", "TextEncoderError"),
    ):
        if module in sys.modules:
            found.append(getattr(sys.modules[module], name))
    return tuple(found)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status."""
    from core.data.mapping import IngestError

    try:
        args = build_parser().parse_args(argv)
        store = Store(args.db)
        handler = {
            "demo": _cmd_demo,
            "ingest": _cmd_ingest,
            "datasets": _cmd_datasets,
            "stats": _cmd_stats,
            "drop": _cmd_drop,
            "train": _cmd_train,
            "models": _cmd_models,
            "recommend": _cmd_recommend,
            "interests": _cmd_interests,
            "export": _cmd_export,
            "evaluate": _cmd_evaluate,
            "report": _cmd_report,
        }[args.command]
        result = handler(store, args)
    except (UsageError, StoreError, IngestError, *_loaded_errors()) as exc:
        _print_error(str(exc))
        return 2
    except OSError as exc:  # an unreadable file or folder named on the command line
        where = f": {exc.filename}" if exc.filename else ""
        _print_error(f"{exc.strerror or exc}{where}")
        return 2
    if getattr(args, "json", False):
        print(json.dumps(result, default=str))
    else:
        print_human(args.command, result)
    return 0
