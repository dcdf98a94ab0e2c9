"""How ``python -m core`` prints a command's result for a reader (without ``--json``).

Each command with a shape of its own has a printer; any other result prints as
``key: value`` lines. Part of the CLI: like :mod:`core.cli`, it imports the evaluation's
helpers only when an evaluation is printed, so ``--help`` starts without torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from core.common.columns import Columns, MetricKeys


def print_human(command: str, result: Any) -> None:
    """``result`` of ``command`` for a reader: its own printer, else ``key: value`` lines."""
    _PRINTERS.get(command, _print_fields)(result)


def _print_fields(result: dict[str, Any]) -> None:
    for key, value in result.items():
        if key != "report":
            print(f"{key}: {value}")


def _print_evaluation(result: dict[str, Any]) -> None:
    from core.evaluation.results import describe
    from core.evaluation.statistics import significance_label

    settings, k = result["settings"], result["settings"]["k"]
    print(describe(settings))
    head = f"{'NDCG@' + str(k):>16} {'HR@' + str(k):>16} {'MRR':>8} {'cov@' + str(k):>7}"
    print(f"{'':<28} {head}")
    for name, res in result["results"].items():
        ci = res["ci"]
        print(
            f"{name:<28} {res[f'ndcg@{k}']:.4f} ±{_half(ci[f'ndcg@{k}']):.4f}"
            f"  {res[f'hr@{k}']:.4f} ±{_half(ci[f'hr@{k}']):.4f} {res['mrr']:>8.4f}"
            f" {res[f'coverage@{k}']:>7.3f}  {significance_label(res.get('significance'))}"
        )
        if "sampled" in res:
            sampled = res["sampled"]
            print(
                f"{'  (sampled)':<28} {sampled[f'ndcg@{k}']:.4f}{'':>8}"
                f"  {sampled[f'hr@{k}']:.4f}{'':>8} {sampled['mrr']:>8.4f}"
            )
    for note in settings.get("notes", []):
        print(f"note: {note}")


def _print_datasets(result: list[dict[str, Any]]) -> None:
    if not result:
        print("no datasets yet: run `python -m core demo` or `python -m core ingest ...`")
    for d in result:
        print(
            f"{d['name']:<24} {d['events']:>10,} events {d['users']:>8,} users "
            f"{d['items']:>8,} items"
        )


def _print_loaded(result: dict[str, Any]) -> None:
    """What ``ingest`` and ``demo`` loaded: counts, mapping, what was dropped and why."""
    print(
        f"loaded {result['dataset']}: {result['events']:,} events, {result['users']:,} "
        f"users, {result['items']:,} items"
    )
    for role, used in result.get("mapping", {}).items():
        print(f"{role:>5}: {used['column']} ({used['reason']})")
    dropped = {k: v for k, v in result["dropped"].items() if v}
    print("dropped: " + (", ".join(f"{k}={v:,}" for k, v in dropped.items()) or "nothing"))
    for ex in result.get("report", {}).get("examples", []):
        print(f"  line {ex['line']}: {ex['problem']}")
    for note in result.get("report", {}).get("notes", []):
        print(f"note: {note}")
    if result.get("hint"):
        print(f"hint: {result['hint']}")


def _print_models(result: list[dict[str, Any]]) -> None:
    if not result:
        print("no models yet: run `python -m core train --dataset NAME`")
    for m in result:
        ndcg = m["metrics"].get(MetricKeys.NDCG, 0)
        print(f"{m['name']:<40} {m['dataset']:<20} val NDCG@10 {ndcg:.4f}")


def _print_interests(result: dict[str, Any]) -> None:
    top = ", ".join(f"{c['category']} {c['affinity']:.2f}" for c in result["categories"][:5])
    shifts = [d["step"] for d in result["drift"] if d["shift"]]
    print(f"user {result['user']}: {len(result['drift'])} steps; top categories: {top or '—'}")
    print("interest shifts at steps: " + (", ".join(map(str, shifts)) or "none"))
    print("nearest users: " + ", ".join(n[Columns.USER] for n in result["neighbours"]))


def _print_recommendations(result: dict[str, Any]) -> None:
    for rank, item in enumerate(result["items"], 1):
        print(f"{rank:>3}. {item['item_id']:<16} {item['score']:.4f}  {item.get('title') or ''}")
        parts = {p[Columns.ITEM]: p for p in item.get("explanation", [])}
        for reason in item.get("because_of", []):
            print(f"       {parts[reason]['contribution']:+.4f}  because of {reason}")


_PRINTERS = {
    "evaluate": _print_evaluation,
    "datasets": _print_datasets,
    "ingest": _print_loaded,
    "demo": _print_loaded,
    "drop": lambda result: print(f"dropped {result['dropped']}"),
    "models": _print_models,
    "interests": _print_interests,
    "export": lambda result: print(
        f"wrote {result['rows']:,} rows ({result['users']:,} users) to {result['path']}"
    ),
    "recommend": _print_recommendations,
}


def _half(interval: Sequence[float]) -> float:
    return (interval[1] - interval[0]) / 2
