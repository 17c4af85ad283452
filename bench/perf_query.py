"""Query latency and build time of the product against the model's own cost, in one process.

    .venv/bin/python -m bench.perf_query [--rounds 3] [--json]

Build: the shipped corpus into a fresh temporary index (empty embedding cache), split into reading, chunking,
embedding (the encoder calls inside the build) and indexing (BM25, FAISS, files, swap); the floor is encoding
the same distinct sentence units alone; three rounds, each build followed by its floor, medians reported; then the same build again with nothing changed (in this process, and as
a fresh `python -m rag build` process).
Queries (warm): every question of tests/data/questions.jsonl one at a time, interleaved per question so load
swings hit all three alike: the floor (embedder.encode_queries of the resolved question), Pipeline.search and
Pipeline.ask (extractive). Then a cProfile of the ask loop: the share spent in the encoder, and the top
functions by own time outside it.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from bench.common import load, pct, questions, rss_mb


class TimedEmbedder:
    """The real embedder, with the time spent in encode_passages added up (what a build pays the model)."""

    def __init__(self, inner) -> None:
        self.inner, self.seconds, self.texts = inner, 0.0, 0

    def __getattr__(self, name: str):
        return getattr(self.inner, name)

    def encode_passages(self, texts, progress: bool = False):
        start = time.perf_counter()
        out = self.inner.encode_passages(texts, progress)
        self.seconds += time.perf_counter() - start
        self.texts += len(texts)
        return out


def build_figures(settings, embedder, rounds: int = 3) -> dict:
    """`rounds` builds from scratch, each into a fresh folder with an empty embedding cache and jieba's
    dictionary not yet loaded (as in a new `rag build` process), each followed by the floor; medians."""
    import statistics

    import rag.text
    from rag.build import HAND_LEXICON
    from rag.chunk import chunk_corpus
    from rag.build import build as build_index
    from rag.store.index import sentence_units
    from rag.ingest.corpus import load_corpus

    start = time.perf_counter()
    docs = [d for d in load_corpus(list(settings.corpus)).documents if d.source != HAND_LEXICON]
    reading = time.perf_counter() - start
    chunks = chunk_corpus(docs, settings.chunk)
    units = sorted({c.text[a:b] for c in chunks for a, b in sentence_units(c)})
    runs = []
    for r in range(rounds):
        fresh = replace(settings, index_dir=settings.index_dir.parent / f"round-{r}" / "index")
        rag.text._BASE = None  # noqa: SLF001 — the process-wide dictionary, loaded again as a new process would
        timed = TimedEmbedder(embedder)
        start = time.perf_counter()
        report = build_index(fresh, embedder=timed)
        total = time.perf_counter() - start
        start = time.perf_counter()
        embedder.encode_passages(units)
        runs.append((total, time.perf_counter() - start, timed.seconds, report, fresh))
    total, floor, embedding, report, fresh = sorted(runs, key=lambda x: x[0])[len(runs) // 2]
    start = time.perf_counter()
    again = build_index(fresh, embedder=TimedEmbedder(embedder))
    unchanged = time.perf_counter() - start
    start = time.perf_counter()  # and as a user runs it: a fresh `python -m rag build` process
    cli = subprocess.run([sys.executable, "-m", "rag", "build", "--quiet"], capture_output=True, timeout=600,
                         env=os.environ | {"RAG_INDEX_DIR": str(fresh.index_dir), "HF_HUB_OFFLINE": "1"})
    unchanged_cli = time.perf_counter() - start
    stages = report.timings
    return {"chunks": report.chunks, "units": report.sentences, "encoded": report.embedded, "rounds": rounds,
            "total_s": total, "reading_s": reading,
            "chunking_s": max(0.0, stages["ingest+chunk"] - reading),
            "embedding_s": embedding, "indexing_s": total - stages["ingest+chunk"] - embedding,
            "floor_s": statistics.median(r[1] for r in runs),
            "ratios": [round(r[0] / r[1], 2) for r in runs],
            "unchanged_s": unchanged, "unchanged_encoded": again.embedded,
            "unchanged_timings": again.timings, "unchanged_cli_s": unchanged_cli,
            "unchanged_cli_ok": cli.returncode == 0, "index_dir": str(fresh.index_dir)}


def query_figures(pipeline, rounds: int) -> dict:
    qs = questions()
    embedder = pipeline.embedder
    texts = [pipeline.prepare(q, h).text for q, h in qs]
    pipeline.search(qs[0][0])
    pipeline.ask(qs[0][0])
    runs = {"floor": [], "search": [], "ask": []}
    cpu = {"floor": [], "search": [], "ask": []}
    for _ in range(rounds):
        for (q, h), text in zip(qs, texts):
            calls = (("floor", lambda: embedder.encode_queries([text])),
                     ("search", lambda: pipeline.search(q, h)), ("ask", lambda: pipeline.ask(q, h)))
            for name, call in calls:
                t, c = time.perf_counter(), time.process_time()
                call()
                runs[name].append((time.perf_counter() - t) * 1000)
                cpu[name].append((time.process_time() - c) * 1000)
    return {"questions": len(qs), "rounds": rounds, "wall": {k: pct(v) for k, v in runs.items()},
            "cpu": {k: pct(v) for k, v in cpu.items()},
            "sum_ratio": {k: sum(runs[k]) / sum(runs["floor"]) for k in ("search", "ask")}}


def profile_ask(pipeline) -> dict:
    """Where ask's time goes: the encoder's share, and the top own-time functions outside it."""
    profiler = cProfile.Profile()
    qs = questions()
    profiler.enable()
    for q, h in qs:
        pipeline.ask(q, h)
    profiler.disable()
    stats = pstats.Stats(profiler)
    total = max(stats.total_tt, 1e-9)
    encode = sum(v[3] for k, v in stats.stats.items() if k[2] in ("encode_queries", "encode_passages")
                 and k[0].endswith("embed.py"))
    own = ((v[2], f"{Path(k[0]).name}:{k[1]}({k[2]})") for k, v in stats.stats.items())
    top = sorted(own, reverse=True)[:8]
    return {"encoder_share": encode / total, "per_question_ms": total / len(qs) * 1000,
            "top_own": [(name, round(t / len(qs) * 1000, 2)) for t, name in top]}


def measure(rounds: int) -> dict:
    from rag.config import Settings, offline_environment

    offline_environment()
    from rag.model.embed import load_embedder
    from rag.pipeline import Pipeline

    start = time.perf_counter()
    embedder = load_embedder(Settings.from_env({}).model)
    model_s = time.perf_counter() - start
    with tempfile.TemporaryDirectory(prefix="rag-perf-") as tmp:
        settings = replace(Settings.from_env({}), index_dir=Path(tmp) / "index",
                           feedback_path=Path(tmp) / "feedback.jsonl")
        build = build_figures(settings, embedder)
        pipeline = Pipeline.load(replace(settings, index_dir=Path(build.pop("index_dir"))), embedder=embedder)
        pipeline.answerer.warm()
        query = query_figures(pipeline, rounds)
        profile = profile_ask(pipeline)
    return {"backend": embedder.backend, "model_load_s": model_s, "build": build, "query": query,
            "profile": profile, "rss_mb": rss_mb(), "load": load()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    result = measure(args.rounds)
    print(json.dumps(result, ensure_ascii=False, indent=None if args.json else 1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
