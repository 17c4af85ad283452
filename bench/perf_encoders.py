"""Encoder options for the same model: sentence-transformers + torch, ONNX Runtime float32, ONNX Runtime int8.

    .venv/bin/python -m bench.perf_encoders [--backends torch onnx onnx-int8] [--no-write]

Each backend runs in its own fresh process: load time and RSS, one query at a time over the question set (wall
and CPU time), passage throughput on the book's sentence units, and retrieval quality on CMRC 2018 trial (the
harness of bench/retrieval_cmrc.py: 256 paragraphs, 1002 questions; dense only and the default fusion).
Passage vectors are cached per backend fingerprint under embeddings/cache/bench-cmrc/, so only a first run
encodes the CMRC corpus. A backend keeps quality when its R@5 is within 0.005 of float32 torch.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import replace

from bench.common import child, load, pct, questions, rss_mb

BACKENDS = ("torch", "onnx", "onnx-int8")


def book_units() -> list[str]:
    """The sentence units the shipped book's index embeds (what a build encodes)."""
    from rag.build import HAND_LEXICON
    from rag.chunk import chunk_corpus
    from rag.config import Settings
    from rag.store.index import sentence_units
    from rag.ingest.corpus import load_corpus

    s = Settings.from_env({})
    docs = [d for d in load_corpus(list(s.corpus)).documents if d.source != HAND_LEXICON]
    return sorted({c.text[a:b] for c in chunk_corpus(docs, s.chunk) for a, b in sentence_units(c)})


def cmrc_quality(embedder, backend: str) -> dict:
    from bench.retrieval_cmrc import WORK, gold_rank, metrics, question_text, write_corpus
    from rag.config import RetrieveSettings, Settings
    from rag.build import build as build_index
    from rag.store.index import Index
    from rag.retrieve.retriever import Retriever

    qs = write_corpus(WORK / "corpus")
    base = Settings.from_env({})
    settings = replace(base, corpus=(WORK / "corpus",), index_dir=WORK / f"perf-index-{backend}",
                       model=replace(base.model, backend=backend))
    start = time.perf_counter()
    report = build_index(settings, embedder=embedder, force=True)  # timed: never the up-to-date skip
    build_s = time.perf_counter() - start
    index = Index.load(settings.index_dir, settings, embedder)
    retriever = Retriever(index, embedder, settings.retrieve)
    texts = [question_text(retriever, q) for q, _ in qs]  # "" for the two empty questions: misses
    start = time.perf_counter()
    qvecs = embedder.encode_queries([t or "?" for t in texts])
    query_s = time.perf_counter() - start
    depth = settings.retrieve
    arrays = [(index.dense(v, depth.dense_depth), *index.lexical(t, depth.lexical_depth)) if t else None
              for v, t in zip(qvecs, texts)]
    out = {"cmrc_build_s": build_s, "cmrc_encoded": report.embedded,
           "cmrc_queries_per_s": len(texts) / query_s}
    for name, rs in (("dense", RetrieveSettings(fusion="dense")), ("default", RetrieveSettings())):
        ranks = [gold_rank(retriever, a, g, rs) for a, (_, g) in zip(arrays, qs)]
        out[name] = metrics(ranks)
    return out


def measure(backend: str) -> dict:
    from rag.config import ModelSettings, offline_environment

    offline_environment()
    start = time.perf_counter()
    from rag.model.embed import load_embedder

    embedder = load_embedder(ModelSettings(backend=backend))
    load_s = time.perf_counter() - start
    rss_loaded = rss_mb()
    qs = [q for q, _ in questions()]
    embedder.encode_queries(["热身"])
    wall, cpu = [], []
    for _ in range(2):
        for q in qs:
            t, c = time.perf_counter(), time.process_time()
            embedder.encode_queries([q])
            wall.append((time.perf_counter() - t) * 1000)
            cpu.append((time.process_time() - c) * 1000)
    units = book_units()
    start = time.perf_counter()
    embedder.encode_passages(units)
    passages_per_s = len(units) / (time.perf_counter() - start)
    quality = cmrc_quality(embedder, backend)
    return {"backend": backend, "load_s": load_s, "rss_mb": rss_loaded, "query_ms": pct(wall),
            "query_cpu_ms": pct(cpu), "units": len(units), "passages_per_s": passages_per_s,
            "fingerprint": embedder.fingerprint[:12], "load": load(), **quality}


def table(rows: list[dict]) -> str:
    ref = next((r for r in rows if r["backend"] == "torch"), rows[0])
    lines = ["| backend | load (s) | RSS after load (MB) | query p50 / p95 (ms) | query CPU p50 (ms) "
             "| book units/s | CMRC dense R@1 / R@5 / MRR@10 | CMRC default R@1 / R@5 / MRR@10 "
             "| ΔR@5 vs torch | load avg |", "|" + "---|" * 10]
    for r in rows:
        delta = r["default"][1] - ref["default"][1]
        lines.append(
            f"| {r['backend']} | {r['load_s']:.1f} | {r['rss_mb']:.0f} | {r['query_ms'][0]:.1f} / "
            f"{r['query_ms'][1]:.1f} | {r['query_cpu_ms'][0]:.1f} | {r['passages_per_s']:.1f} | "
            + " / ".join(f"{x:.3f}" for x in r["dense"]) + " | "
            + " / ".join(f"{x:.3f}" for x in r["default"])
            + f" | {delta:+.3f} | {r['load'].split(',')[0]} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", choices=BACKENDS, help=argparse.SUPPRESS)
    parser.add_argument("--backends", nargs="+", choices=BACKENDS, default=list(BACKENDS))
    parser.add_argument("--json", action="store_true", help="print the rows as JSON (for bench.run_all)")
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(measure(args.child)))
        return 0
    rows = []
    for b in args.backends:
        try:
            rows.append(child("bench.perf_encoders", "--child", b, timeout=1800))
        except (RuntimeError, subprocess.TimeoutExpired) as exc:  # one backend failing keeps the others
            print(f"{b}: {exc}", file=sys.stderr)
            continue
        print(f"{b}: done", file=sys.stderr)
    print(json.dumps(rows) if args.json else table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
