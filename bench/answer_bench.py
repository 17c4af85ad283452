"""Answer-stage timing on the question set: `python -m bench.answer_bench [--index DIR] [--rounds 3]`.

Prints the end-to-end `Pipeline.ask` time per question (p50/p90) and, separately, the answer stage's own
share: the same time minus the one query encoding (the model forward pass that retrieval needs anyway).
Sentence vectors are warmed first, as the chat page does at start-up. No pass/fail: figures go to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

from rag.config import ROOT, Settings, offline_environment
from rag.eval.questions import load_questions


def main() -> None:
    offline_environment()
    ap = argparse.ArgumentParser()
    ap.add_argument("--index", type=Path, default=None)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    from rag.pipeline import Pipeline

    settings = Settings.from_env().with_overrides(index_dir=args.index)
    pipeline = Pipeline.load(settings)
    start = time.perf_counter()
    pipeline.answerer.warm()
    warm = time.perf_counter() - start
    encode: list[float] = []
    original = pipeline.embedder.encode_queries

    def timed(texts):
        t = time.perf_counter()
        out = original(texts)
        encode.append(time.perf_counter() - t)
        return out

    pipeline.embedder.encode_queries = timed  # instance attribute: only this process's embedder is timed
    questions = load_questions(ROOT / "tests" / "data" / "questions.jsonl")
    total, own = [], []
    for _ in range(args.rounds):
        for q in questions:
            encode.clear()
            t = time.perf_counter()
            pipeline.ask(q.question, q.history)
            spent = time.perf_counter() - t
            total.append(spent)
            own.append(spent - sum(encode))
    print(f"questions: {len(questions)} × {args.rounds} rounds; warm-up (sentence vectors) {warm:.2f} s; "
          f"load average {os.getloadavg()[0]:.1f}")
    for name, xs in (("ask, end to end", total), ("answer stage without the query encoding", own)):
        xs = sorted(xs)
        p50, p90 = statistics.median(xs) * 1000, xs[int(len(xs) * 0.9)] * 1000
        print(f"{name}: p50 {p50:.1f} ms, p90 {p90:.1f} ms")


if __name__ == "__main__":
    main()
