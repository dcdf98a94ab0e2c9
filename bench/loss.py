"""Benchmark: the training loss on a CPU, tiled against the plain expressions.

    .venv/bin/python bench/loss.py [--targets M] [--items N] [--hidden D] [--reps R]

Times one forward and backward pass of the loss of one training step (``M`` target
states of width ``D`` against a catalogue of ``N`` items) four ways, alternated ``R``
times in one run so that the machine's state is shared: the full softmax and the sampled
softmax (2,048 and 1,024 shared negatives, logQ-corrected, hits on the target left out),
each as the plain PyTorch expression and as ``core.training.losses``' tiled log-sum-exp. The
defaults are a MovieLens step of the ``fast`` preset with item targets (64 windows of up
to 50 items, two targets per item). Checks that both give the same value. Prints one
JSON object: milliseconds per pass (median) and the plain/tiled ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from common import code_state, log, machine  # noqa: E402

from core.training.losses import _TiledLogSumExp  # noqa: E402


def full_plain(h, table, bias, labels, neg, log_q):
    return F.cross_entropy(h @ table.T + bias, labels)


def full_tiled(h, table, bias, labels, neg, log_q):
    lse = _TiledLogSumExp.apply(h, table, bias)
    return (lse - ((h * table[labels]).sum(1) + bias[labels])).mean()


def sampled_plain(h, table, bias, labels, neg, log_q):
    pos = (h * table[labels]).sum(1) + bias[labels] - log_q[labels]
    logits = (h @ table[neg].T + bias[neg] - log_q[neg]).masked_fill(
        neg[None, :] == labels[:, None], float("-inf")
    )
    zeros = torch.zeros(len(labels), dtype=torch.long)
    return F.cross_entropy(torch.cat([pos[:, None], logits], 1), zeros)


def sampled_tiled(h, table, bias, labels, neg, log_q):
    pos = (h * table[labels]).sum(1) + bias[labels] - log_q[labels]
    lse = _TiledLogSumExp.apply(h, table[neg], bias[neg] - log_q[neg], False, neg, labels)
    return (torch.logaddexp(pos, lse) - pos).mean()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--targets", type=int, default=6400)
    parser.add_argument("--items", type=int, default=9742)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    gen = torch.Generator().manual_seed(0)
    h = torch.randn(args.targets, args.hidden, generator=gen).requires_grad_()
    table = (torch.randn(args.items, args.hidden, generator=gen) * 0.2).requires_grad_()
    bias = torch.zeros(args.items).requires_grad_()
    labels = torch.randint(0, args.items, (args.targets,), generator=gen)
    q = torch.rand(args.items, generator=gen) + 0.1
    q /= q.sum()
    cases = {"full": (full_plain, full_tiled, None)}
    for n in (2048, 1024):
        neg = torch.multinomial(q, n, replacement=True, generator=gen)
        cases[f"sampled_{n}"] = (sampled_plain, sampled_tiled, neg)
    times = {f"{case}_{way}": [] for case in cases for way in ("plain", "tiled")}
    values = {}
    for _ in range(args.reps + 1):  # the first round warms up, untimed
        for case, (plain, tiled, neg) in cases.items():
            log_q = torch.log(q * (len(neg) if neg is not None else 1))
            for way, fn in (("plain", plain), ("tiled", tiled)):
                start = time.perf_counter()
                loss = fn(h, table, bias, labels, neg, log_q)
                loss.backward()
                times[f"{case}_{way}"].append(time.perf_counter() - start)
                values[f"{case}_{way}"] = float(loss.detach())
                h.grad = table.grad = bias.grad = None
    ms = {k: round(1000 * statistics.median(v[1:]), 1) for k, v in times.items()}
    report = {
        "benchmark": "loss",
        "machine": machine(threads=torch.get_num_threads()),
        "code": code_state(["core/training/losses.py"]),
        "shape": {"targets": args.targets, "items": args.items, "hidden": args.hidden},
        "ms_per_pass": ms,
        "plain_over_tiled": {
            case: round(ms[f"{case}_plain"] / ms[f"{case}_tiled"], 2) for case in cases
        },
        "same_value": all(
            abs(values[f"{c}_plain"] - values[f"{c}_tiled"]) <= 1e-4 * abs(values[f"{c}_plain"])
            for c in cases
        ),
    }
    log(json.dumps(report["ms_per_pass"]))
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
