"""A library of books (issue 14): 20 copies of the shipped excerpt under different titles, built and searched.

`python -m bench.library [--copies 20] [--write]`: each copy is a folder of its own under a scratch corpus (one
book each, its 书名 changed), built into a scratch index with the shipped model; the one-book index of the
shipped corpus is built and searched in the same run as the baseline. Prints build seconds, chunks, and search
p50/p95 over the project's question set; --write puts them into bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import re
import shutil
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from bench.common import ROOT, load, machine, pct, questions, stamp, write_section

SOURCE = ROOT / "corpus" / "qunzhong-gongzuo-excerpt.txt"
TITLE = re.compile(r"^(做好新形势下的群众工作)(\s*/)", re.M)


def write_library(folder: Path, copies: int) -> None:
    text = SOURCE.read_text(encoding="utf-8")
    for i in range(1, copies + 1):
        book = folder / f"book-{i:02d}"
        book.mkdir(parents=True)
        (book / "excerpt.txt").write_text(TITLE.sub(rf"\1（第{i}册）\2", text, count=1), encoding="utf-8")


def measure(settings, embedder, label: str) -> dict:
    from rag.build import build
    from rag.pipeline import Pipeline
    from rag.types import QueryParams

    start = time.perf_counter()
    report = build(settings, embedder=embedder, force=True)
    build_s = time.perf_counter() - start
    pipeline = Pipeline.load(settings, embedder=embedder)
    qs = questions()
    for q, h in qs[:5]:
        pipeline.search(q, h)
    times = []
    for _ in range(2):
        for q, h in qs:
            t = time.perf_counter()
            pipeline.search(q, h, QueryParams(k=5))
            times.append((time.perf_counter() - t) * 1000)
    p50, p95 = pct(times)
    return {"label": label, "books": len(pipeline.books), "chunks": report.chunks, "sentences": report.sentences,
            "encoded": report.embedded, "build_s": build_s, "p50": p50, "p95": p95}


def main() -> None:
    from rag.config import Settings, offline_environment

    offline_environment()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=20)
    parser.add_argument("--write", action="store_true", help="write the figures into bench/RESULTS.md")
    args = parser.parse_args()
    from rag.model.embed import load_embedder

    base = Settings.from_env({})
    embedder = load_embedder(base.model)
    scratch = Path(tempfile.mkdtemp(prefix="rag-library-"))
    try:
        write_library(scratch / "corpus", args.copies)
        one = measure(replace(base, index_dir=scratch / "one-index"), embedder, "shipped book")
        many = measure(replace(base, corpus=(scratch / "corpus",), index_dir=scratch / "library-index"),
                       embedder, f"{args.copies} copies")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    rows = ["| index | books | chunks | sentence vectors | encoded now | build s | search p50 / p95 ms |",
            "|---|---|---|---|---|---|---|"]
    for r in (one, many):
        rows.append(f"| {r['label']} | {r['books']} | {r['chunks']} | {r['sentences']} | {r['encoded']} | "
                    f"{r['build_s']:.1f} | {r['p50']:.1f} / {r['p95']:.1f} |")
    body = (f"`python -m bench.library --copies {args.copies}` ({stamp()}; load {load()}; {machine()}). Each copy "
            "is a book of its own (a folder, its 书名 changed); the sentences are the same, so the embedding "
            "cache serves them and the build time is chunking, BM25 and the vector store. Search: the 82 "
            "questions of tests/data/questions.jsonl × 2, one at a time.\n\n" + "\n".join(rows)
            + f"\n\nsearch p50 library / one book: {many['p50'] / one['p50']:.2f}")
    print(body)
    if args.write:
        write_section("A library of books (issue 14)", body)


if __name__ == "__main__":
    main()
