"""How search cost grows with the corpus: exact FAISS (flat) against HNSW, and BM25, at 1k … 1M chunks.

    .venv/bin/python -m bench.perf_scale [--sizes 1000 10000 100000 1000000] [--lexical-max 100000] [--json]

Vectors: synthetic but shaped like the model's: each lies between two real passage vectors of the model (the
CMRC sentence cache of bench/retrieval_cmrc.py, else the book's sentences), a random share λ ≤ 0.5 of the way,
plus Gaussian noise (σ = 0.02 per dimension), L2-normalised, 384-d; queries are made the same way.
Recall@10 of HNSW is measured against the exact top 10 of the flat index. Memory = the serialised index size.
BM25: real text — the CMRC chunks tokenised once with the project's terms (jieba + bigrams); a synthetic
document joins halves of two random chunks, so term statistics stay those of real Chinese paragraphs;
queries are the CMRC questions, scored through rag.store.lexical.Lexical.query (tokenising included).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

from bench.common import ROOT, load, pct

DIM, SIGMA, QUERIES, K = 384, 0.02, 200, 10
CACHE = ROOT / "embeddings" / "cache" / "bench-cmrc" / "cache" / "embeddings"


def base_vectors() -> np.ndarray:
    """Real passage vectors of the model, the seeds of the synthetic ones."""
    from rag.store.embedding_cache import EmbeddingCache

    samples = []
    for folder in sorted(CACHE.glob("*")):  # one model's vectors (no near-twins): the folder with the most
        with EmbeddingCache(folder, DIM) as cache:
            samples.append(cache.first(5000))
    rows = max(samples, key=len, default={})
    if len(rows) >= 500:
        return np.stack(list(rows.values())).astype(np.float32)
    from rag.config import ModelSettings
    from rag.model.embed import load_embedder

    from bench.perf_encoders import book_units

    return load_embedder(ModelSettings()).encode_passages(book_units())


def synthetic(base: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Points between two real vectors (a random share λ ≤ 0.5 of the way) plus noise: a continuum like a
    real corpus, not hundreds of equidistant copies of each seed (whose exact top 10 no index could tell)."""
    out = np.empty((n, DIM), dtype=np.float32)
    for lo in range(0, n, 100_000):
        m = min(n, lo + 100_000) - lo
        a, b = base[rng.integers(0, len(base), m)], base[rng.integers(0, len(base), m)]
        lam = rng.uniform(0, 0.5, (m, 1)).astype(np.float32)
        block = a + lam * (b - a) + rng.normal(0, SIGMA, (m, DIM)).astype(np.float32)
        out[lo:lo + m] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def timed_search(index, queries: np.ndarray, k: int) -> tuple[np.ndarray, tuple[float, float]]:
    rows, times = [], []
    for q in queries:
        t = time.perf_counter()
        _, found = index.search(q.reshape(1, -1), k)
        times.append((time.perf_counter() - t) * 1000)
        rows.append(found[0])
    return np.stack(rows), pct(times)


def dense_row(n: int, base: np.ndarray, queries: np.ndarray, rng, hnsw_max: int) -> dict:
    import faiss

    from rag.store.vectors import make_vector_store

    vectors = synthetic(base, n, rng)
    flat = faiss.IndexFlatIP(DIM)
    flat.add(vectors)
    exact, flat_ms = timed_search(flat, queries, K)
    row = {"n": n, "flat_ms": flat_ms, "flat_mb": faiss.serialize_index(flat).nbytes / 2**20}
    if n <= 100_000:  # what scoring every vector for fusion would cost (retrieval asks the store for 1000)
        _, row["flat_all_ms"] = timed_search(flat, queries[:20], n)
    if n > hnsw_max:
        return row
    faiss.omp_set_num_threads(len(os.sched_getaffinity(0)))  # building: batch work, both cores
    start = time.perf_counter()
    hnsw = make_vector_store(DIM, n, force="hnsw").faiss_index  # timed bare
    hnsw.add(vectors)
    row["hnsw_build_s"] = time.perf_counter() - start
    row["hnsw_mb"] = faiss.serialize_index(hnsw).nbytes / 2**20
    faiss.omp_set_num_threads(1)
    for ef in (32, 64, 128):
        hnsw.hnsw.efSearch = ef
        found, ms = timed_search(hnsw, queries, K)
        recall = np.mean([len(set(a) & set(b)) / K for a, b in zip(found, exact)])
        row[f"hnsw_ef{ef}"] = {"ms": ms, "recall": float(recall)}
    return row


def lexical_rows(sizes: list[int], rng) -> list[dict]:
    import bm25s

    from bench.retrieval_cmrc import DATA
    from rag.store.lexical import Lexical, terms
    from rag.text.tokenizer import Tokenizer

    data = json.loads(DATA.read_text(encoding="utf-8"))["data"]
    paragraphs = [p["context"] for a in data for p in a["paragraphs"]]
    asked = [qa["question"] for a in data for p in a["paragraphs"] for qa in p["qas"]
             if qa["question"].strip()]
    tokenizer = Tokenizer([])
    pieces = [terms(tokenizer, p) for p in paragraphs]
    vocab = {t: i for i, t in enumerate(sorted({t for p in pieces for t in p}))}
    ids = [[vocab[t] for t in p] for p in pieces]
    rows = []
    for n in sizes:
        a, b = rng.integers(0, len(ids), n), rng.integers(0, len(ids), n)
        docs = [ids[i][: len(ids[i]) // 2] + ids[j][len(ids[j]) // 2:] for i, j in zip(a, b)]
        start = time.perf_counter()
        bm25 = bm25s.BM25(k1=1.5, b=0.75)
        bm25.index((docs, vocab), show_progress=False)
        build_s = time.perf_counter() - start
        lexical = Lexical(bm25, tokenizer)
        times = []
        for q in asked[:QUERIES]:
            t = time.perf_counter()
            lexical.query(q)
            times.append((time.perf_counter() - t) * 1000)
        size = sum(np.asarray(bm25.scores[k]).nbytes for k in ("data", "indices", "indptr"))
        rows.append({"n": n, "build_s": build_s, "ms": pct(times), "mb": size / 2**20})
        del docs, bm25, lexical
    return rows


def measure(sizes: list[int], lexical_max: int, hnsw_max: int) -> dict:
    import faiss

    # One query at a time: a second OpenMP thread only adds contention on a shared 2-core machine
    # (measured: flat 100k, 17 ms with one thread, 43–56 ms with two at load ≈ 5).
    faiss.omp_set_num_threads(1)
    rng = np.random.default_rng(0)
    base = base_vectors()
    queries = synthetic(base, QUERIES, rng)
    dense = []
    for n in sizes:
        dense.append(dense_row(n, base, queries, rng, hnsw_max))
        print(f"dense {n}: done", file=sys.stderr)
    lexical = lexical_rows([n for n in sizes if n <= lexical_max], rng)
    return {"dense": dense, "lexical": lexical, "seeds": len(base), "load": load()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10_000, 100_000, 1_000_000])
    parser.add_argument("--lexical-max", type=int, default=100_000)
    parser.add_argument("--hnsw-max", type=int, default=100_000, help="largest size that builds HNSW (slow)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--write", action="store_true", help="write the table to RESULTS.md (long runs)")
    args = parser.parse_args(argv)
    result = measure(args.sizes, args.lexical_max, args.hnsw_max)
    print(json.dumps(result) if args.json else json.dumps(result, indent=1))
    if args.write:
        from bench.common import machine, stamp, write_section
        from bench.run_all import scale_section

        given = argv if argv is not None else sys.argv[1:]
        command = " ".join([".venv/bin/python -m bench.perf_scale", *given])
        write_section("Performance — scaling, long run", "\n".join(
            [f"Run {stamp()}: `{command}`.  ", f"Machine: {machine()}.  ",
             f"Seeds: {result['seeds']} real vectors; load average at the end: {result['load']}.", "",
             *scale_section(result)[2:]]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
