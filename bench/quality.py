"""Benchmark: quality of our BERT model against every baseline on Amazon Beauty.

    .venv/bin/python bench/quality.py [--budget S] [--preset fast|balanced|quality]
                                      [--epochs N] [--batch B] [--lr LR] [--next-items SHARE]
                                      [--attention bidirectional|prefix] [--[no-]item-targets]
                                      [--keep DIR]
                                      [--baselines all|LIST] [--sampled N] [--data PATH]

Loads ``beauty.txt`` (``user item``, space-delimited, no header, file order = time;
40,226 users, 54,542 items) into a temporary store with ``core.data.ingest.ingest`` (or, when
``--data`` is a folder, MovieLens ``ratings.csv`` + ``movies.csv``, every rating an
event, time-ordered), then
under the default protocol of :mod:`core.evaluation.runner` (leave-one-out, full ranking over
all items, the user's own items excluded):

* trains our BERT model (``core.training.runs.train_dataset``, the preset's shape, no text
  features, at most ``--budget`` seconds of training); when training kept a transition
  memory, the Transformer alone is evaluated too, as ``bert-alone``;
* fits every baseline on the same training data (``sasrec`` gets the same settings,
  made causal with full-softmax loss, and the same budget; EASE is skipped above
  20,000 items, so on Beauty it is reported as skipped);
* evaluates them all in one pass (``core.evaluation.runner.run``): full-ranking HR@10 and
  NDCG@10 with 95 % bootstrap CIs, and the same targets ranked against ``--sampled``
  negatives drawn by popularity, next to the BERT4Rec paper's sampled figures on this
  file (HR@10 0.3025, NDCG@10 0.1862).

Reports training (fit) seconds and evaluation seconds of each. Wall-clock figures
depend on the machine's load: the load average is sampled at start and end.

Prints one JSON object on stdout; progress goes to stderr. ``--curve PNG`` (default
``bench/time_to_quality.png``) also draws the time-to-quality curve: BERT's validation
NDCG@10 after each epoch against wall-clock seconds since training began, with every
model's test NDCG@10 of this run at its training time, and the CPU points of RecBole
and RecTools measured on this file (see BENCHMARKS.md). ``--plot-from JSON`` redraws it
from a saved output without training. The PNG needs kaleido (requirements-dev.txt) and
a Chromium; without them the chart is written as HTML next to it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch
from common import (  # noqa: E402  (bench/common.py)
    ROOT,
    code_state,
    ingest_beauty,
    ingest_movielens,
    loadavg,
    log,
)
from common import machine as machine_facts  # noqa: E402

from core.evaluation.results import EvalConfig  # noqa: E402
from core.evaluation.runner import run  # noqa: E402
from core.models.baselines import parse_baselines  # noqa: E402
from core.models.checkpoint import load_model, save_model  # noqa: E402
from core.store import Store  # noqa: E402
from core.training.config import TrainConfig  # noqa: E402
from core.training.runs import train_dataset  # noqa: E402

DEFAULT_DATA = ROOT.parent / "shared" / "datasets" / "amazon-beauty" / "beauty.txt"
MEASURED_CODE = (
    "core/evaluation/",
    "core/training/",
    "core/models/bert.py",
    "core/models/dropout.py",
    "core/models/baselines.py",
    "core/models/inputs.py",
    "core/models/scoring.py",
    "core/data/sequences.py",
)
PAPER = {"model": "BERT4Rec (Sun et al., CIKM 2019)", "hr@10": 0.3025, "ndcg@10": 0.1862}


# Points measured on this file on a 2-core CPU like ours (issue 14's table): RecBole
# 1.2.1 SASRec, test NDCG@10 0.0119 after 24 minutes; RecTools 0.19 SASRec, 30 to 40
# minutes for its first epoch, no result yet. SASRec+ is a GPU figure (test).
RECBOLE_CPU = {"seconds": 24 * 60, "ndcg@10": 0.0119}
RECTOOLS_FIRST_EPOCH_S = (30 * 60, 40 * 60)
SASREC_PLUS_GPU = 0.0327


def r(x: float | None, nd: int = 4) -> float | None:
    return None if x is None else round(float(x), nd)


def plot_curve(out: dict, path: Path) -> Path:
    """Draw the time-to-quality chart of one run's output (see the module docstring);
    returns the file written (``path``, or an ``.html`` beside it without kaleido)."""
    import plotly.graph_objects as go

    history = out["bert_training"].get("history") or []
    fig = go.Figure()
    fig.add_trace(
        go.Scatter(
            x=[h["elapsed_s"] for h in history],
            y=[h["val_ndcg@10"] for h in history],
            mode="lines+markers",
            name=f"RecLens {out['bert_training']['preset']}: validation, by epoch",
            line={"color": "#1f77b4"},
        )
    )
    fit_s = {row["name"]: row.get("fit_seconds") for row in out["results"]}
    fit_s["bert-alone"] = fit_s.get("bert")
    for row in out["results"]:
        seconds = max(float(fit_s.get(row["name"]) or 0.0), 0.1)
        fig.add_trace(
            go.Scatter(
                x=[seconds],
                y=[row["full_ndcg@10"]],
                mode="markers+text",
                text=[row["name"]],
                textposition="middle right",
                marker={"size": 10, "symbol": "diamond"},
                name=f"{row['name']}: test",
            )
        )
    beauty = "beauty" in str(out.get("data", "")).lower()
    if beauty:  # the other libraries' points were measured on Beauty only
        _mark_other_libraries(fig)
    name = "Amazon Beauty" if beauty else Path(str(out.get("data", "data"))).name
    fig.update_layout(
        title=f"Time to quality on {name}, 2 CPU cores (full ranking, NDCG@10)",
        xaxis={
            "title": "wall-clock seconds of training (log scale)",
            "type": "log",
            "range": [-1.3, 3.6],  # 0.05 s to about 66 minutes
        },
        yaxis={"title": "NDCG@10", "rangemode": "tozero"},
        width=1100,
        height=620,
        template="plotly_white",
        legend={"font": {"size": 11}},
    )
    try:
        fig.write_image(str(path))
        return path
    except Exception as exc:  # noqa: BLE001  (no kaleido or no Chromium: keep the chart)
        html = path.with_suffix(".html")
        fig.write_html(str(html), include_plotlyjs="cdn")
        log(f"could not write {path.name} ({type(exc).__name__}); wrote {html.name} instead")
        return html


def _mark_other_libraries(fig) -> None:
    import plotly.graph_objects as go

    fig.add_trace(
        go.Scatter(
            x=[RECBOLE_CPU["seconds"]],
            y=[RECBOLE_CPU["ndcg@10"]],
            mode="markers+text",
            text=["RecBole SASRec"],
            textposition="bottom center",
            marker={"size": 12, "symbol": "x", "color": "black"},
            name="RecBole 1.2.1 SASRec, this CPU: test",
        )
    )
    lo, hi = RECTOOLS_FIRST_EPOCH_S
    fig.add_vrect(
        x0=lo,
        x1=hi,
        fillcolor="grey",
        opacity=0.2,
        line_width=0,
        annotation_text="RecTools SASRec:<br>its first epoch ends",
        annotation_position="top right",
    )
    fig.add_trace(  # a legend entry for the band
        go.Scatter(
            x=[None],
            y=[None],
            mode="markers",
            marker={"size": 12, "symbol": "square", "color": "lightgrey"},
            name="RecTools 0.19 SASRec, this CPU: its first epoch",
        )
    )
    fig.add_hline(
        y=SASREC_PLUS_GPU,
        line_dash="dot",
        annotation_text="SASRec+ (GPU, test) 0.0327",
        annotation_position="bottom right",
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--preset", default="fast", choices=["fast", "balanced", "quality"])
    parser.add_argument("--budget", type=float, default=480.0, help="training seconds per model")
    parser.add_argument("--epochs", type=int, help="override the preset's epochs")
    parser.add_argument("--batch", type=int, help="override the preset's batch")
    parser.add_argument("--lr", type=float, help="override the preset's learning rate")
    parser.add_argument("--next-items", type=float, help="override the preset's next-item share")
    parser.add_argument(
        "--attention", choices=["bidirectional", "prefix"], help="override the preset's"
    )
    parser.add_argument(
        "--item-targets", action=argparse.BooleanOptionalAction, help="override the preset's"
    )
    parser.add_argument(
        "--keep", type=Path, help="keep the database (models, evaluation) in this new folder"
    )
    parser.add_argument("--loss", choices=["auto", "full", "sampled"], help="BERT's loss")
    parser.add_argument("--baselines", default="all")
    parser.add_argument("--sampled", type=int, default=100)
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument(
        "--curve", type=Path, default=ROOT / "bench" / "time_to_quality.png", help="PNG to draw"
    )
    parser.add_argument("--plot-from", type=Path, help="redraw --curve from a saved output")
    args = parser.parse_args()
    if args.plot_from:
        log(f"wrote {plot_curve(json.loads(args.plot_from.read_text()), args.curve)}")
        return 0
    if not args.data.exists():
        log(f"no dataset at {args.data}: nothing to measure")
        print(json.dumps({"skipped": f"missing {args.data}"}))
        return 0
    load_start = loadavg(all_three=True)
    if args.keep:  # for bench/report.py: the database with its models and evaluation
        args.keep.mkdir(parents=True)  # a new folder: never mixes with an earlier run
        work = args.keep.resolve()
    else:
        work = Path(tempfile.mkdtemp(prefix="reclens-quality-"))
    os.environ["RECLENS_HOME"] = str(work)
    started = time.perf_counter()
    try:
        store = Store(work / "bench.duckdb")
        t0 = time.perf_counter()
        dataset = "movielens" if args.data.is_dir() else "beauty"
        (ingest_movielens if args.data.is_dir() else ingest_beauty)(store, args.data)
        ingest_s = time.perf_counter() - t0
        log(f"ingested in {ingest_s:.1f} s; training BERT ({args.preset}, {args.budget:.0f} s)")
        config = TrainConfig.from_preset(
            args.preset,
            text_encoder="none",
            time_budget=args.budget,
            device=args.device,
            epochs=args.epochs,
            batch=args.batch,
            lr=args.lr,
            next_item_share=args.next_items,
            attention=args.attention,
            item_targets=args.item_targets,
            loss=args.loss,
        )

        def report(p) -> None:
            if p.phase == "validate":
                log(f"bert {p.message} ({p.elapsed_s:.0f} s)")

        model, trained = train_dataset(
            store, dataset, config, name="bert", out_dir=work / "bert", callback=report
        )
        log(f"bert trained: best val NDCG@10 {trained.best_val_ndcg10:.4f}; evaluating")
        models = ["bert"]
        if trained.transitions.get("kept"):  # the Transformer alone, for comparison
            saved = load_model(model.path)
            saved.model.drop_transitions()
            folder = save_model(
                work / "bert-alone",
                saved.model,
                saved.item_ids,
                replace(saved.training, name="bert-alone", transitions={}),
            )
            store.register_model("bert-alone", dataset, str(folder), {}, {})
            models.append("bert-alone")

        def progress(fraction: float, message: str) -> None:
            progress.last = getattr(progress, "last", "")
            if message != progress.last:
                log(f"{fraction:.0%} {message}")
                progress.last = message

        t0 = time.perf_counter()
        evaluation, warnings = run(
            store,
            models=models,
            baselines=parse_baselines(args.baselines),
            config=EvalConfig(sampled=args.sampled, sampling="popularity"),
            sasrec_settings=config.to_dict(),
            progress=progress,
        )
        run_s = time.perf_counter() - t0
        store.close()
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    table = []
    for name, res in evaluation.results.items():
        sampled = res.get("sampled", {})
        table.append(
            {
                "name": name,
                "full_hr@10": r(res["hr@10"]),
                "full_hr@10_ci": [r(x) for x in res["ci"]["hr@10"]],
                "full_ndcg@10": r(res["ndcg@10"]),
                "full_ndcg@10_ci": [r(x) for x in res["ci"]["ndcg@10"]],
                "full_mrr": r(res["mrr"]),
                "coverage@10": r(res["coverage@10"]),
                "sampled_hr@10": r(sampled.get("hr@10")),
                "sampled_ndcg@10": r(sampled.get("ndcg@10")),
                "fit_seconds": r(res.get("fit_seconds"), 1),
                "eval_seconds": r(res.get("seconds"), 1),
                "significance": res.get("significance"),
            }
        )
    out = {
        "benchmark": "quality",
        "data": str(args.data),
        "protocol": evaluation.settings,
        "bert_training": {
            "preset": args.preset,
            "config": config.to_dict(),
            "budget_s": args.budget,
            "epochs_run": len(trained.history),
            "best_epoch": trained.best_epoch,
            "best_val_ndcg@10": r(trained.best_val_ndcg10),
            "transitions": trained.transitions,
            "loss": config.loss_mode(evaluation.settings["items"]),
            "seconds": r(trained.seconds, 1),
            "history": [
                {k: r(v, 1) if k in ("seconds", "elapsed_s") else v for k, v in h.items()}
                for h in trained.history
            ],
        },
        "results": table,
        "paper_sampled": PAPER,
        "warnings": warnings,
        "seconds": {
            "ingest": r(ingest_s, 1),
            "fit_baselines_and_evaluate": r(run_s, 1),
            "total": r(time.perf_counter() - started, 1),
        },
        "load_average": {"start": load_start, "end": loadavg(all_three=True)},
        "machine": machine_facts(torch=torch.__version__, torch_threads=torch.get_num_threads()),
        "code": code_state(MEASURED_CODE),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
    }
    print(json.dumps(out, indent=2, default=str))
    if args.curve:
        log(f"wrote {plot_curve(out, args.curve)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
