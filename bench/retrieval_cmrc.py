"""Retrieval quality on CMRC 2018 trial: dense only, BM25 only, plain RRF and the default fusion.

Data: ../shared/data/cmrc2018_trial.json — the trial split of CMRC 2018 (Cui et al., "A Span-Extraction
Dataset for Chinese Machine Reading Comprehension", EMNLP-IJCNLP 2019, github.com/ymcui/cmrc2018), CC BY-SA
4.0, used unmodified. Each of its 256 paragraphs becomes one Markdown document (its title as the heading) and
goes through the real pipeline: ingest → chunk → sentence vectors + BM25 → index → Retriever. A question's hit
counts when the chunk comes from the question's paragraph.

    .venv/bin/python -m bench.retrieval_cmrc [--chunks 300/450/1 200/300/1 …] [--bm25-libs] [--cold]
                                             [--no-write]

Prints R@1, R@5, MRR@10 per method, the fusion weight on two halves of the questions, build time and mean
query latency, and appends them to bench/RESULTS.md. Figures only; nothing here passes or fails.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from rag.config import ROOT, AnswerSettings, ChunkSettings, RetrieveSettings, Settings, offline_environment
from rag.retrieve.query import clean, prepare
from rag.types import Query

DATA = ROOT.parent / "shared" / "data" / "cmrc2018_trial.json"
WORK = ROOT / "embeddings" / "cache" / "bench-cmrc"  # git-ignored; keeps the sentence-embedding cache
RESULTS = ROOT / "bench" / "RESULTS.md"
METHODS = {
    "dense only (best sentence)": RetrieveSettings(fusion="dense"),
    "BM25 only (jieba + bigrams)": RetrieveSettings(fusion="lexical"),
    "plain RRF (k=60)": RetrieveSettings(fusion="rrf", rrf_k=60),
    "default: z-score + coverage·BM25": RetrieveSettings(),
}


BOOK = "cmrc2018"  # the sub-folder of the corpus folder: all paragraphs are one book (one collection)


def write_corpus(folder: Path) -> list[tuple[str, str]]:
    """One Markdown file per paragraph, all in one book (`folder/cmrc2018/`: a file directly in a corpus folder
    would be a book of its own, and each book is ranked on its own); returns (question, source of its
    paragraph). Paragraph files of the earlier one-book-per-file layout are removed."""
    data = json.loads(DATA.read_text(encoding="utf-8"))["data"]
    (folder / BOOK).mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.md"):
        old.unlink()
    questions = []
    for article in data:
        for para in article["paragraphs"]:
            name = f"{BOOK}/{para['id']}.md"
            text = f"# {article['title']}\n\n{para['context']}\n"
            if not (folder / name).is_file() or (folder / name).read_text(encoding="utf-8") != text:
                (folder / name).write_text(text, encoding="utf-8")
            questions += [(qa["question"], name) for qa in para["qas"]]
    return questions


def metrics(ranks: list[int | None]) -> tuple[float, float, float]:
    n = len(ranks)
    return (sum(r == 1 for r in ranks) / n, sum(r is not None and r <= 5 for r in ranks) / n,
            sum(1 / r for r in ranks if r is not None and r <= 10) / n)


def question_text(retriever, question: str) -> str:
    """The question as the retriever searches it; "" for the two empty CMRC questions (counted as misses)."""
    return prepare(question, AnswerSettings.max_question_chars).text if clean(question) else ""


def gold_rank(retriever, arrays, gold: str, settings: RetrieveSettings) -> int | None:
    """Rank (≤ 10) of the first hit from the gold paragraph, given (dense, BM25, coverage) of the question."""
    from rag.retrieve.retriever import fuse

    if arrays is None:
        return None
    dense, lexical, coverage = arrays
    hits = retriever.hits(fuse(dense, lexical, coverage, settings), dense, lexical, 10)
    return next((h.rank for h in hits if h.chunk.source == gold), None)


def run_config(chunk: ChunkSettings, questions, embedder) -> dict:
    """Build the CMRC index with these chunk settings, then score every method on every question."""
    from rag.build import build as build_index
    from rag.store.index import Index
    from rag.retrieve.retriever import Retriever

    tag = f"{chunk.target_chars}-{chunk.max_chars}-{chunk.overlap_sentences}"
    settings = replace(Settings.from_env({}), corpus=(WORK / "corpus",), index_dir=WORK / f"index-{tag}",
                       chunk=chunk)
    start = time.perf_counter()
    report = build_index(settings, embedder=embedder, force=True)  # timed: never the up-to-date skip
    build_s = time.perf_counter() - start
    index = Index.load(settings.index_dir, settings, embedder)
    retriever = Retriever(index, embedder, settings.retrieve)
    texts = [question_text(retriever, q) for q, _ in questions]
    start = time.perf_counter()
    for text in filter(None, texts):  # the full query path of the default: encode, dense, BM25, fusion, hits
        retriever.search(Query(text=text, original=text), k=5)
    latency_ms = (time.perf_counter() - start) / len(list(filter(None, texts))) * 1000
    qvecs = embedder.encode_queries([t or "?" for t in texts])
    depth = settings.retrieve
    arrays = [(index.dense(v, depth.dense_depth), *index.lexical(t, depth.lexical_depth)) if t else None
              for v, t in zip(qvecs, texts)]
    ranks = {name: [gold_rank(retriever, a, g, s) for a, (_, g) in zip(arrays, questions)]
             for name, s in METHODS.items()}
    tokens = [embedder.count_tokens(c.text) for c in index.chunks]
    return {"tag": tag, "chunk": chunk, "report": report, "build_s": build_s, "latency_ms": latency_ms,
            "ranks": ranks, "arrays": arrays, "retriever": retriever,
            "chars": [len(c.text) for c in index.chunks], "tokens": tokens}


def scale_sweep(result: dict, questions) -> list[str]:
    """The default's lexical_scale on the even and the odd half of the questions (chosen on the even half)."""
    lines = ["| lexical_scale | even half R@1 / R@5 / MRR@10 | odd half R@1 / R@5 / MRR@10 |",
             "|---|---|---|"]
    for scale in (1.0, 2.0, 3.0, 4.0, 6.0):
        s = RetrieveSettings(lexical_scale=scale)
        ranks = [gold_rank(result["retriever"], a, g, s) for a, (_, g) in zip(result["arrays"], questions)]
        halves = [metrics(ranks[i::2]) for i in (0, 1)]
        lines.append(f"| {scale:g} | " + " | ".join(" / ".join(f"{x:.3f}" for x in h) for h in halves) + " |")
    return lines


def bm25_libraries(result: dict, questions) -> list[str]:
    """bm25s against rank-bm25 on the same terms (times include jieba); rank-bm25 only if importable."""
    from rag.store.index import passage_text
    from rag.store.lexical import Lexical, terms

    retriever = result["retriever"]
    index, tokenizer = retriever.index, retriever.index.tokenizer
    docs = [passage_text(c) for c in index.chunks]
    sources = [c.source for c in index.chunks]
    queries = [question_text(retriever, q) for q, _ in questions]
    libs: dict[str, tuple] = {}
    start = time.perf_counter()
    lex = Lexical.build(docs, tokenizer)
    libs["bm25s 0.3.16"] = (time.perf_counter() - start, lex.scores)
    try:
        from rank_bm25 import BM25Okapi
    except ImportError:
        BM25Okapi = None
    if BM25Okapi is not None:
        start = time.perf_counter()
        okapi = BM25Okapi([terms(tokenizer, d) for d in docs], k1=1.5, b=0.75)
        libs["rank-bm25 0.2.2 (BM25Okapi)"] = (time.perf_counter() - start,
                                               lambda text: okapi.get_scores(terms(tokenizer, text)))
    lines = ["| library | R@1 | R@5 | MRR@10 | build (ms) | ms/query |", "|---|---|---|---|---|---|"]
    for name, (build_s, score) in libs.items():
        start = time.perf_counter()
        all_scores = [np.asarray(score(q)) for q in queries]
        per_query = (time.perf_counter() - start) / len(queries) * 1000
        ranks = []
        for scores, (_, gold) in zip(all_scores, questions):
            order = np.lexsort((np.arange(len(scores)), -scores))[:10]
            ranks.append(next((i + 1 for i, r in enumerate(order) if sources[r] == gold), None))
        r1, r5, mrr = metrics(ranks)
        lines.append(f"| {name} | {r1:.3f} | {r5:.3f} | {mrr:.3f} | {build_s * 1000:.0f} | {per_query:.3f} |")
    if BM25Okapi is None:
        lines.append("rank-bm25 not importable: `pip install --target /tmp/rb rank-bm25==0.2.2` and run with "
                     "PYTHONPATH=/tmp/rb to compare.")
    return lines


def tables(results: list[dict], questions, args) -> str:
    main = results[0]
    rep = main["report"]
    out = [f"Command: `.venv/bin/python -m bench.retrieval_cmrc {' '.join(sys.argv[1:])}`  ",
           f"Load average at the end: {', '.join(f'{x:.1f}' for x in os.getloadavg())} (2 cores shared with "
           "other work; latency and build time grow with load)", "",
           f"Chunks {main['tag']}: {rep.chunks} chunks, {rep.sentences} sentence vectors ({rep.embedded} "
           f"encoded now, {rep.cached} from the cache); build {main['build_s']:.1f} s; mean query latency "
           f"(encode + dense + BM25 + fusion) {main['latency_ms']:.1f} ms",
           "", "| method | R@1 | R@5 | MRR@10 |", "|---|---|---|---|"]
    out += [f"| {name} | " + " | ".join(f"{x:.3f}" for x in metrics(r)) + " |"
            for name, r in main["ranks"].items()]
    out += ["", *scale_sweep(main, questions), "", "Chunk size (default fusion):", "",
            "| target/max/overlap | chunks | chars mean / max | model tokens max | R@1 | R@5 | MRR@10 "
            "| build (s) |",
            "|---|---|---|---|---|---|---|---|"]
    for r in results:
        m = metrics(r["ranks"]["default: z-score + coverage·BM25"])
        out.append(f"| {r['tag'].replace('-', '/')} | {len(r['chars'])} | {np.mean(r['chars']):.0f} / "
                   f"{max(r['chars'])} | {max(r['tokens'])} | " + " | ".join(f"{x:.3f}" for x in m)
                   + f" | {r['build_s']:.1f} |")
    if args.bm25_libs:
        out += ["", "BM25 libraries (same jieba terms, same chunks):", "", *bm25_libraries(main, questions)]
    return "\n".join(out)


def main() -> None:
    offline_environment()
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--chunks", nargs="+", default=["300/450/1"], help="target/max/overlap, first = main")
    parser.add_argument("--bm25-libs", action="store_true", help="also compare bm25s with rank-bm25")
    parser.add_argument("--cold", action="store_true",
                        help="empty the embedding cache first (honest build time)")
    parser.add_argument("--no-write", action="store_true", help="print only; do not append to RESULTS.md")
    args = parser.parse_args()
    from rag.model.embed import load_embedder

    embedder = load_embedder(Settings.from_env({}).model)
    questions = write_corpus(WORK / "corpus")
    if args.cold:
        shutil.rmtree(WORK / "cache", ignore_errors=True)
    results = []
    for spec in args.chunks:
        target, most, overlap = (int(x) for x in spec.split("/"))
        results.append(run_config(ChunkSettings(target, most, overlap), questions, embedder))
        print(f"chunks {spec}: done", file=sys.stderr)
    text = tables(results, questions, args)
    print(text)
    if not args.no_write:
        stamp = dt.datetime.now().strftime("%Y-%m-%d %H:%M")
        with RESULTS.open("a", encoding="utf-8") as fh:
            fh.write(f"\n## Retrieval — CMRC 2018 trial (CC BY-SA 4.0) — {stamp}\n\n{text}\n")


if __name__ == "__main__":
    main()
