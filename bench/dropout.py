"""Benchmark: the encoder's cheap CPU dropout against torch's own, alone and in a step.

    .venv/bin/python bench/dropout.py [--data PATH] [--steps S] [--reps R]

Part 1 times one forward and backward pass of a dropout layer (rate 0.2) on activations
of the shapes a ``balanced`` step on Beauty feeds it, ``torch.nn.Dropout`` against
``core.models.dropout.CheapDropout``, alternated ``R`` times. Part 2 trains ``S`` steps
of the ``balanced`` preset on Amazon Beauty (``PATH``, default the shared dataset) twice
per round, once with the model as it is and once with its dropout layers swapped back
to ``nn.Dropout``, from the same seed and batches, alternated ``R`` times; the first
5 steps of each are not timed. Prints one JSON object: milliseconds per pass or per step
(median over rounds) and the plain/cheap ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402
from common import code_state, ingest_beauty, log, machine  # noqa: E402
from torch import nn  # noqa: E402

from core.data.sequences import dataset_sequences  # noqa: E402
from core.models.dropout import CheapDropout  # noqa: E402
from core.store import Store  # noqa: E402
from core.training import loop  # noqa: E402
from core.training.config import TrainConfig  # noqa: E402

SHAPES = [(512, 8, 64), (512, 30, 64), (512, 100, 64)]
BEAUTY = Path(__file__).resolve().parents[1] / "../shared/datasets/amazon-beauty/beauty.txt"


def layer_times(reps: int) -> dict:
    """Median ms of a forward and backward pass per shape, plain and cheap."""
    times: dict[str, list[float]] = {}
    for _ in range(reps + 1):  # the first round warms up, untimed
        for shape in SHAPES:
            x = torch.randn(*shape, requires_grad=True)
            grad = torch.randn(*shape)
            for way, layer in (("plain", nn.Dropout(0.2)), ("cheap", CheapDropout(0.2))):
                start = time.perf_counter()
                for _ in range(10):
                    layer(x).backward(grad)
                times.setdefault(f"{'x'.join(map(str, shape))}_{way}", []).append(
                    (time.perf_counter() - start) / 10
                )
    return {k: round(1000 * statistics.median(v[1:]), 2) for k, v in times.items()}


def plain_dropout(module: nn.Module) -> None:
    """Swap every :class:`CheapDropout` inside ``module`` back to ``nn.Dropout``."""
    for name, child in list(module.named_children()):
        if isinstance(child, CheapDropout):
            setattr(module, name, nn.Dropout(child.p))
        else:
            plain_dropout(child)


def step_ms(seqs, steps: int, plain: bool) -> tuple[float, float]:
    """Median ms of a ``balanced`` training step, and the mean loss of the last 20."""
    config = TrainConfig.from_preset("balanced", text_encoder="none", epochs=1, transitions=False)
    run = loop._set_up(seqs, config, None, None, None, time.perf_counter())
    if plain:
        plain_dropout(run.model)
    drawn = run.windows.draw(run.generator)
    batches = loop.length_bucketed_batches(drawn.lengths, config.batch, run.generator)
    run.model.train()
    times, losses = [], []
    for i, idx in enumerate(batches[: steps + 5]):
        batch = run.windows.batch(drawn, idx, run.generator)
        start = time.perf_counter()
        loss, _ = loop._train_step(run, batch)
        if i >= 5:
            times.append(time.perf_counter() - start)
            losses.append(loss)
    return 1000 * statistics.mean(times), statistics.mean(losses[-20:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=str(BEAUTY))
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    layers = layer_times(args.reps)
    log(json.dumps(layers))
    with tempfile.TemporaryDirectory() as work:
        store = Store(Path(work) / "b.duckdb")
        ingest_beauty(store, args.data)
        seqs = dataset_sequences(store, "beauty")
        rounds: dict[str, list[float]] = {"plain": [], "cheap": []}
        loss = {}
        for r in range(args.reps):
            for way in ("plain", "cheap") if r % 2 == 0 else ("cheap", "plain"):
                ms, loss[way] = step_ms(seqs, args.steps, way == "plain")
                rounds[way].append(round(ms, 1))
                log(f"round {r + 1}: {way} {ms:.1f} ms per step")
        store.close()
    step = {way: statistics.median(v) for way, v in rounds.items()}
    report = {
        "benchmark": "dropout",
        "machine": machine(threads=torch.get_num_threads()),
        "code": code_state(["core/models/dropout.py", "core/models/bert.py"]),
        "layer_ms": layers,
        "layer_plain_over_cheap": {
            s: round(layers[f"{s}_plain"] / layers[f"{s}_cheap"], 2)
            for s in ("x".join(map(str, shape)) for shape in SHAPES)
        },
        "step_ms_rounds": rounds,
        "step_ms": step,
        "step_plain_over_cheap": round(step["plain"] / step["cheap"], 2),
        "loss_last20": loss,
        "steps": args.steps,
    }
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
