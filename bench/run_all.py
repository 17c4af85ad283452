"""`make bench`: every performance benchmark, each in a fresh process, printed and written to bench/RESULTS.md
(section "Performance (make bench)", replaced on each run).

    .venv/bin/python -m bench.run_all [--quick] [--no-write] [--hnsw-max 100000]

--quick: one round of queries, 20 app questions, scaling up to 100k (a smoke run).
"""

from __future__ import annotations

import argparse
import sys
import time

from bench.common import child, load, machine, stamp, write_section

TARGETS = {"search_p50": 15, "ask_p50": 30, "ratio": 1.3, "build": 20, "unchanged": 2, "build_ratio": 1.2,
           "cold": 5, "rss": 1500, "p95_1m": 50, "recall_1m": 0.95}


def query_section(q: dict) -> list[str]:
    w, c, b = q["query"]["wall"], q["query"]["cpu"], q["build"]
    r = lambda k: w[k][0] / w["floor"][0]  # noqa: E731
    n, rounds = q["query"]["questions"], q["query"]["rounds"]
    lines = [f"### Queries (warm, {n} questions × {rounds} rounds, one at a time; backend {q['backend']}; "
             f"load {q['load']})", "",
             "| | p50 / p95 wall (ms) | p50 / p95 CPU (ms) | p50 / floor p50 | target |",
             "|---|---|---|---|---|"]
    for k, target in (("floor", "—"), ("search", f"p50 ≤ {TARGETS['search_p50']} ms"),
                      ("ask", f"p50 ≤ {TARGETS['ask_p50']} ms")):
        ratio = f"{r(k):.2f}" if k != "floor" else "1"
        lines.append(f"| {k if k != 'floor' else 'floor: encode_queries'} | {w[k][0]:.1f} / {w[k][1]:.1f} | "
                     f"{c[k][0]:.1f} / {c[k][1]:.1f} | {ratio} | {target} |")
    p = q["profile"]
    lines += ["", f"Profile of ask over the question set (cProfile): {p['per_question_ms']:.1f} ms per "
              f"question under the profiler, {p['encoder_share']:.0%} of it in the encoder; top own time per "
              "question: " + ", ".join(f"`{n}` {t} ms" for n, t in p["top_own"][:6]) + ".", "",
              f"### Build of the shipped corpus ({b['chunks']} chunks, {b['units']} sentence vectors, "
              f"{b['encoded']} distinct sentences encoded)", "",
              "| reading | chunking | embedding | indexing | total | floor (encode alone) | build / floor "
              "| chunks/s | unchanged rebuild |", "|---|---|---|---|---|---|---|---|---|",
              f"| {b['reading_s']:.2f} s | {b['chunking_s']:.2f} s | {b['embedding_s']:.1f} s | "
              f"{b['indexing_s']:.1f} s | {b['total_s']:.1f} s | {b['floor_s']:.1f} s | "
              f"{b['total_s'] / b['floor_s']:.2f} (rounds: {', '.join(map(str, b['ratios']))}) | "
              f"{b['chunks'] / b['total_s']:.1f} | "
              f"{b['unchanged_s']:.2f} s in process ({b['unchanged_encoded']} encoded; "
              f"stages {b['unchanged_timings']}); `python -m rag build` process "
              f"{b['unchanged_cli_s']:.2f} s{'' if b['unchanged_cli_ok'] else ' (FAILED)'} |",
              "", f"Model load {q['model_load_s']:.1f} s; RSS of the benchmark process at the end "
              f"{q['rss_mb']:.0f} MB."]
    return lines


def encoder_section(rows: list[dict]) -> list[str]:
    from bench.perf_encoders import table

    return ["### Encoder options (same model; each in a fresh process)", "", table(rows)] if rows else []


def scale_section(s: dict) -> list[str]:
    lines = [f"### Scaling (synthetic model-shaped vectors from {s['seeds']} real seeds; 200 queries, one at "
             f"a time, one FAISS thread; load {s['load']})", "",
             "| chunks | flat p50 / p95 (ms) | flat MB | all-vector scoring p50 (ms) | HNSW build (s) "
             "| HNSW MB | HNSW ef=32 p50 / p95, R@10 | ef=64 | ef=128 |",
             "|---|---|---|---|---|---|---|---|---|"]
    for d in s["dense"]:
        cells = [f"{d['n']:,}", f"{d['flat_ms'][0]:.2f} / {d['flat_ms'][1]:.2f}", f"{d['flat_mb']:.0f}",
                 f"{d['flat_all_ms'][0]:.1f}" if "flat_all_ms" in d else "—"]
        if "hnsw_build_s" in d:
            cells += [f"{d['hnsw_build_s']:.0f}", f"{d['hnsw_mb']:.0f}"]
            cells += [f"{d[f'hnsw_ef{e}']['ms'][0]:.2f} / {d[f'hnsw_ef{e}']['ms'][1]:.2f}, "
                      f"{d[f'hnsw_ef{e}']['recall']:.3f}" for e in (32, 64, 128)]
        else:
            cells += ["not built (--hnsw-max)"] + ["—"] * 4
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "BM25 (bm25s through rag.store.lexical.Lexical.query, jieba tokenising included):", "",
              "| chunks | build (s) | query p50 / p95 (ms) | index MB |", "|---|---|---|---|"]
    lines += [f"| {x['n']:,} | {x['build_s']:.1f} | {x['ms'][0]:.2f} / {x['ms'][1]:.2f} | {x['mb']:.0f} |"
              for x in s["lexical"]]
    return lines


def app_section(a: dict) -> list[str]:
    return [f"### App (load {a['load']})", "",
            "| `make run` (`python -m rag serve`) → health | → first answer on screen | `streamlit run app.py` → "
            "first answer | `python -m rag ask` process → answer "
            f"| server RSS after 1 / {a['questions']} questions | page time per question |",
            "|---|---|---|---|---|---|",
            f"| {a['healthy_s']:.1f} s | {a['first_answer_s']:.1f} s | {a['streamlit_run_first_answer_s']:.1f} s "
            f"| {a['cli_ask_s']:.1f} s | {a['rss_first_mb']:.0f} / {a['rss_after_mb']:.0f} MB "
            f"| {a['page_s_per_question']:.2f} s |"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--hnsw-max", default="100000")
    args = parser.parse_args(argv)
    start = time.monotonic()
    sizes = ["1000", "10000", "100000"] + ([] if args.quick else ["1000000"])
    command = " ".join([".venv/bin/python -m bench.run_all", *(argv if argv is not None else sys.argv[1:])])
    parts = [f"Run {stamp()} with `make bench` (`{command}`; scripts in bench/perf_*.py).  ",
             f"Machine: {machine()}.  ",
             f"Load average at the start: {load()} (the cores are shared with other test runs; wall-clock "
             "figures grow with load, CPU times and ratios much less)."]
    runs = [("queries", lambda: query_section(child("bench.perf_query", "--json", "--rounds",
                                                    "1" if args.quick else "3"))),
            ("encoders", lambda: encoder_section(child("bench.perf_encoders", "--json", timeout=3600))),
            ("scaling", lambda: scale_section(child("bench.perf_scale", "--json", "--hnsw-max", args.hnsw_max,
                                                    "--sizes", *sizes, timeout=3600))),
            ("app", lambda: app_section(child("bench.perf_app", "--json", "--questions",
                                              "20" if args.quick else "100")))]
    for name, run in runs:
        t = time.monotonic()
        try:
            lines = run()
        except Exception as exc:  # one failing benchmark must not lose the others' figures
            lines = [f"### {name}: failed", "", f"```\n{str(exc)[-1500:]}\n```"]
        print("\n".join(lines), "\n", flush=True)
        print(f"[{name}: {time.monotonic() - t:.0f} s]", file=sys.stderr, flush=True)
        parts += ["", *lines]
    parts += ["", f"Total {time.monotonic() - start:.0f} s; load average at the end: {load()}."]
    if not args.no_write:
        write_section("Performance (make bench)", "\n".join(parts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
