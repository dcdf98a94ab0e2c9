"""Benchmark: encoding 10,000 item texts with the default text encoder (all-MiniLM-L6-v2).

    .venv/bin/python bench/text.py [--texts N] [--naive N] [--batch-size B] [--threads T]

Texts: MovieLens "latest-small" titles with their genres (``item_text(title, genres)``,
from ``../shared/datasets/movielens-latest-small/movies.csv`` when present), padded with
the generated demo shop's item texts (title, categories and description) to N unique
texts; without the shared folder every text is a demo text.

In one process, with the model loaded once (load time reported apart), it times

* a naive loop: one text at a time through the tokenizer and the model (no batching,
  no padding), mean pooling and L2 normalisation, on a subset of ``--naive`` texts
  spread over the whole list; the time for all N is extrapolated linearly from it and
  labelled as an estimate;
* ``TextEncoder.encode`` on all N texts;

and checks that the two agree on the subset (cosine similarity of each pair). Prints
one JSON object on stdout; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import time

import numpy as np
import torch  # noqa: E402
import transformers  # noqa: E402
from common import ROOT, code_state, loadavg, log, machine  # noqa: E402  (bench/common.py)

from core.data.demo import generate_demo  # noqa: E402
from core.models.text import (  # noqa: E402
    DEFAULT_ENCODER,
    TextEncoder,
    default_encoder_path,
    item_text,
)

MOVIES = ROOT.parent / "shared" / "datasets" / "movielens-latest-small" / "movies.csv"
TARGET_S = 25.0
TARGET_TEXTS = 10_000


def bench_texts(n: int) -> tuple[list[str], dict]:
    """N unique, realistic item texts and where they came from."""
    texts: list[str] = []
    seen: set[str] = set()

    def add(text: str) -> None:
        if text and text not in seen and len(texts) < n:
            seen.add(text)
            texts.append(text)

    if MOVIES.is_file():
        with MOVIES.open(encoding="utf-8", newline="") as fh:
            for row in csv.DictReader(fh):
                genres = [g for g in row["genres"].split("|") if g != "(no genres listed)"]
                add(item_text(row["title"], genres, None))
    from_movies = len(texts)
    need = n - len(texts)
    if need > 0:
        items = generate_demo(n_users=1, n_items=max(need + 200, 600), n_categories=12).items
        for row in items.itertuples(index=False):
            add(item_text(row.title, row.categories, row.text))
    if len(texts) < n:
        raise SystemExit(f"could only make {len(texts)} unique texts")
    return texts, {
        "movielens_titles_genres": from_movies,
        "demo_items": len(texts) - from_movies,
        "movielens_file": str(MOVIES) if from_movies else None,
    }


def naive_encode(encoder: TextEncoder, texts: list[str]) -> np.ndarray:
    """One text per forward pass: the loop the batched encoder replaces."""
    out = []
    with torch.no_grad():
        for text in texts:
            batch = encoder.tokenizer(
                text, truncation=True, max_length=encoder.max_tokens, return_tensors="pt"
            )
            states = encoder.model(**batch).last_hidden_state[0]
            vec = states.mean(0)
            out.append(torch.nn.functional.normalize(vec, dim=-1).numpy())
    return np.stack(out)


def token_lengths(encoder: TextEncoder, texts: list[str]) -> dict:
    lengths = np.array(
        [len(ids) for ids in encoder.tokenizer(texts, truncation=False)["input_ids"]]
    )
    return {
        "mean": round(float(lengths.mean()), 1),
        "p50": int(np.percentile(lengths, 50)),
        "p95": int(np.percentile(lengths, 95)),
        "p99": int(np.percentile(lengths, 99)),
        "max": int(lengths.max()),
        "over_max_tokens": int((lengths > encoder.max_tokens).sum()),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--texts", type=int, default=TARGET_TEXTS)
    parser.add_argument("--naive", type=int, default=500, help="texts in the naive subset")
    parser.add_argument("--batch-size", type=int, default=None, help="default: encode's own")
    parser.add_argument("--precision", default="auto", choices=("auto", "float32", "bfloat16"))
    parser.add_argument(
        "--cpus", type=int, default=None, help="pin the process to its first N allowed CPUs"
    )
    args = parser.parse_args(argv)

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.cpus:
        cpus = sorted(os.sched_getaffinity(0))[: args.cpus]
        os.sched_setaffinity(0, cpus)
        torch.set_num_threads(len(cpus))
    load_start = loadavg(all_three=True)
    texts, source = bench_texts(args.texts)
    log(
        f"{len(texts)} texts ({source['movielens_titles_genres']} MovieLens, "
        f"{source['demo_items']} demo)"
    )

    t0 = time.perf_counter()
    encoder = TextEncoder(DEFAULT_ENCODER, default_encoder_path(), precision=args.precision)
    load_s = time.perf_counter() - t0
    lengths = token_lengths(encoder, texts)

    step = max(1, len(texts) // args.naive)
    subset = list(range(0, len(texts), step))[: args.naive]
    log(f"naive loop on {len(subset)} texts ...")
    naive_encode(encoder, texts[:8])  # warm-up
    t0, c0 = time.perf_counter(), time.process_time()
    naive = naive_encode(encoder, [texts[i] for i in subset])
    naive_s, naive_cpu = time.perf_counter() - t0, time.process_time() - c0
    naive_est = naive_s / len(subset) * len(texts)
    log(f"naive: {naive_s:.2f} s for {len(subset)}, about {naive_est:.1f} s for {len(texts)}")

    kwargs = {"batch_size": args.batch_size} if args.batch_size else {}
    runs = {}
    vectors = {}
    precisions = [encoder.precision] + (["float32"] if encoder.precision != "float32" else [])
    for precision in precisions:
        encoder.precision = precision  # only encode() reads it: the same loaded model
        encoder.encode(texts[-64:], **kwargs)  # warm-up
        t0, c0 = time.perf_counter(), time.process_time()
        vectors[precision] = encoder.encode(texts, **kwargs)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        log(f"encode ({precision}): {wall:.2f} s for {len(texts)}")
        runs[precision] = {
            "precision": precision,
            "s": round(wall, 2),
            "cpu_s": round(cpu, 2),
            "texts_per_s": round(len(texts) / wall, 1),
            "speedup_over_naive_est": round(naive_est / wall, 2),
            "target_met": bool(len(texts) >= TARGET_TEXTS and wall < TARGET_S),
        }
    default = precisions[0]

    agreement = {}
    for precision, vecs in vectors.items():
        cos = (naive * vecs[subset]).sum(1)
        agreement[f"{precision}_vs_naive"] = {
            "pairs": len(subset),
            "min_cosine": round(float(cos.min()), 6),
            "mean_cosine": round(float(cos.mean()), 6),
            "max_norm_error": float(np.abs(np.linalg.norm(vecs, axis=1) - 1).max()),
        }
    if len(vectors) > 1:
        cos = (vectors[default] * vectors["float32"]).sum(1)
        agreement[f"{default}_vs_float32_all"] = {
            "pairs": len(texts),
            "min_cosine": round(float(cos.min()), 6),
            "mean_cosine": round(float(cos.mean()), 6),
        }
    ok = all(a["min_cosine"] > 0.999 for a in agreement.values())
    report = {
        "benchmark": "text encoding",
        "encoder": DEFAULT_ENCODER,
        "texts": len(texts),
        "source": source,
        "token_lengths": lengths,
        "max_tokens": encoder.max_tokens,
        "batch_size": args.batch_size or "default",
        "torch_threads": torch.get_num_threads(),
        "cpus_allowed": len(os.sched_getaffinity(0)),
        "model_load_s": round(load_s, 2),
        "naive_loop": {
            "measured_texts": len(subset),
            "measured_s": round(naive_s, 2),
            "measured_cpu_s": round(naive_cpu, 2),
            "texts_per_s": round(len(subset) / naive_s, 1),
            "estimated_s_for_all": round(naive_est, 1),
            "note": "float32, one text per forward pass; the time for all texts is "
            "extrapolated linearly from the measured subset: an estimate",
        },
        "encode": runs[default],
        "encode_float32": runs.get("float32") if default != "float32" else None,
        "target": f"{TARGET_TEXTS} texts in < {TARGET_S} s",
        "target_met": runs[default]["target_met"],
        "agreement": {**agreement, "ok": ok},
        "loadavg_start": load_start,
        "loadavg_end": loadavg(all_three=True),
        "machine": machine(torch=torch.__version__, transformers=transformers.__version__),
        "code": code_state(["core/models/text.py"]),
    }
    print(json.dumps(report, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
