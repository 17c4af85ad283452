"""Scale-out (issue 16): the Ray build against the local build, and Milvus serving against FAISS in-process.

    .venv/bin/python -m bench.scale_out [--paragraphs 90] [--sizes 100000 [1000000]] [--queries 200]
        [--depths 1000 200 50] [--insert-rows 10000] [--no-build | --no-serving] [--no-write]

Build: the shipped book plus the first P CMRC 2018 trial paragraphs (one Markdown file each), built three times
in this one run, each with an empty embedding cache: the local build (one process, ONNX int8 with 2 threads,
the model loaded beforehand), then `build_ray` on a local Ray cluster of one node and of two nodes
(ray.cluster_utils.Cluster, 1 CPU each, 127.0.0.1; one encoder actor per CPU, each loading its own model:
that time counts). Sentences/s = distinct sentences encoded / build time (cluster start excluded).

Serving: N synthetic chunks (one model-shaped 384-d vector each, bench/perf_scale.py; BM25 text made of halves
of two CMRC paragraphs' real terms), queries = synthetic vectors + CMRC questions, loaded once per size and
then queried at each candidate depth d of --depths. Hybrid = the dense and BM25 candidates (depth d each) fused
as locally (rag.retrieve.retriever.fuse, z-score default). Milvus = milvus-lite server on a loopback port
through pymilvus (HNSW M=32, ef=max(128, d); BM25 on the server; --insert-rows rows per insert call);
in-process = FAISS HNSW (same M, ef 128) + bm25s. recall@10 against exact search: dense top 10 against numpy
brute force, hybrid top 10 against the fusion of exact dense and bm25s candidates at depth 1000 (the shipped
RetrieveSettings), so what a smaller depth loses shows. --no-build / --no-serving run one part; the section
written then keeps the other part as RESULTS.md has it (when it is there under its ### heading)."""

from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from bench.common import ROOT, load, machine, pct, stamp, write_section

TITLE = "Scale-out (issue 16)"
DEPTHS = (1000, 200, 50)  # candidates per query measured by default
REFERENCE_DEPTH = 1000  # the exact reference: RetrieveSettings.dense_depth / lexical_depth as shipped
INSERT_BATCH = 10_000  # rows per milvus-lite insert call (rag.store.milvus.INSERT_ROWS is 2,000)


# --- build throughput --------------------------------------------------------------------------------------

def library(folder: Path, paragraphs: int) -> tuple[Path, Path]:
    from bench.retrieval_cmrc import BOOK, WORK, write_corpus

    write_corpus(WORK / "corpus")
    cmrc = folder / "cmrc"
    cmrc.mkdir(parents=True)
    for path in sorted((WORK / "corpus" / BOOK).glob("*.md"))[:paragraphs]:
        shutil.copy(path, cmrc / path.name)
    return ROOT / "corpus", cmrc


def build_rows(paragraphs: int) -> list[dict]:
    from rag.build import build
    from rag.config import Settings
    from rag.model.embed import load_embedder
    from rag.scale.ray_build import build_ray, local_cluster

    base = Settings.from_env({})
    embedder = load_embedder(base.model)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        corpus = library(Path(tmp), paragraphs)
        for name, nodes in (("local (1 process, 2 threads)", 0), ("Ray, 1 node × 1 CPU", 1),
                            ("Ray, 2 nodes × 1 CPU", 2)):
            s = replace(base, corpus=corpus, index_dir=Path(tmp) / f"run{nodes}" / "index")
            start = time.perf_counter()
            window: tuple[float, int] | None = None
            if nodes == 0:
                report, nodes_used = build(s, embedder=embedder, force=True), 1
            else:
                with local_cluster(nodes):
                    start = time.perf_counter()
                    result = build_ray(s, embedder=embedder, force=True)
                report, nodes_used = result.report, len(result.nodes["encode"])
                window = result.encode_window_s, result.encode_window_rows
            seconds = time.perf_counter() - start
            encode = report.timings.get("embed", report.timings.get("embed+lexical", seconds))
            rows.append({"name": name, "seconds": seconds, "sentences": report.embedded, "encode_s": encode,
                         "nodes": nodes_used, "per_s": report.embedded / seconds,
                         "window_s": window[0] if window else None,
                         "window_per_s": window[1] / window[0] if window and window[0] > 0 else None,
                         "stages": {k: round(v, 2) for k, v in report.timings.items()}})
            print(rows[-1], flush=True)
    return rows


# --- serving: Milvus against FAISS in-process ------------------------------------------------------------

@contextmanager
def milvus_server():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data = Path(tempfile.mkdtemp(prefix="milvus-bench-"))
    server = subprocess.Popen([str(Path(sys.executable).parent / "milvus-lite"), "server", "--data-dir",
                               str(data), "--host", "127.0.0.1", "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}", server.pid
    finally:
        server.terminate()
        server.wait(30)
        shutil.rmtree(data, ignore_errors=True)


def corpus_terms(rng, n: int):
    import json

    from bench.retrieval_cmrc import DATA
    from rag.store.lexical import terms
    from rag.text.tokenizer import Tokenizer

    data = json.loads(DATA.read_text(encoding="utf-8"))["data"]
    paragraphs = [p["context"] for a in data for p in a["paragraphs"]]
    asked = [qa["question"] for a in data for p in a["paragraphs"] for qa in p["qas"] if qa["question"].strip()]
    tokenizer = Tokenizer([])
    pieces = [terms(tokenizer, p) for p in paragraphs]
    a, b = rng.integers(0, len(pieces), n), rng.integers(0, len(pieces), n)
    docs = [pieces[i][: len(pieces[i]) // 2] + pieces[j][len(pieces[j]) // 2:] for i, j in zip(a, b)]
    return docs, asked, tokenizer


def _top10(fused) -> list[int]:
    return [r for r, _ in fused[:10]]


@dataclass
class Reference:
    """One query's exact answers: the dense top 10 by brute force and the top 10 of the exact fusion."""

    dense10: set[int]
    hybrid10: set[int]


def references(vectors: np.ndarray, lexical, qvecs: np.ndarray, texts: list[str], s) -> list[Reference]:
    """Exact dense candidates (numpy, every vector) and bm25s candidates, REFERENCE_DEPTH each, fused."""
    from rag.retrieve.retriever import fuse

    out = []
    for qvec, text in zip(qvecs, texts):
        sims = vectors @ qvec
        top = np.argpartition(-sims, REFERENCE_DEPTH)[:REFERENCE_DEPTH]
        top = top[np.lexsort((top, -sims[top]))]
        lex_rows, lex_scores, coverage = lexical.search(text, REFERENCE_DEPTH)
        fused = fuse({int(r): sims[r] for r in top}, dict(zip(lex_rows.tolist(), lex_scores)), coverage, s)
        out.append(Reference(set(top[:10].tolist()), set(_top10(fused))))
    return out


def _insert_all(milvus, name: str, n: int, batch: int, rows) -> None:
    """Insert rows(lo, hi) for every batch; the next batch is built while the server takes the one before
    (the server's time dominates: it tokenises the terms for BM25 and indexes)."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        pending = None
        for lo in range(0, n, batch):
            data = rows(lo, min(n, lo + batch))
            if pending is not None:
                pending.result()
            pending = pool.submit(milvus.insert, name, data)
        if pending is not None:
            pending.result()


def load_milvus(milvus, sentences: str, chunks: str, vectors: np.ndarray, docs: list[list[str]],
                vocab: dict[str, int], batch: int) -> dict[str, float]:
    """The bench's chunks into the two collections of rag.store.milvus (one sentence per chunk), `batch` rows
    per insert call; seconds of each stage."""
    from rag.store import milvus as mv

    n = len(vectors)
    times = {}
    t = time.perf_counter()
    mv._create(milvus, sentences, chunks, vectors.shape[1], n)
    _insert_all(milvus, sentences, n, batch, lambda lo, hi: [
        {"id": i, "chunk": i, "vector": v} for i, v in zip(range(lo, hi), vectors[lo:hi].tolist())])
    times["insert_vectors_s"] = time.perf_counter() - t
    t = time.perf_counter()
    names = {w: mv.token(i) for w, i in vocab.items()}  # each term's stored name, made once
    _insert_all(milvus, chunks, n, batch, lambda lo, hi: [
        {"id": i, "terms": " ".join(map(names.__getitem__, docs[i]))} for i in range(lo, hi)])
    times["insert_terms_s"] = time.perf_counter() - t
    t = time.perf_counter()
    for name in (sentences, chunks):
        milvus.flush(name)
        milvus.load_collection(name)
    times["flush_load_s"] = time.perf_counter() - t
    return times


def depth_row(depth: int, stores: dict[str, tuple], qvecs: np.ndarray, texts: list[str],
              refs: list[Reference], s) -> dict:
    """Each engine's hybrid query with `depth` dense and `depth` BM25 candidates: time (dense search, BM25
    search, fusion) and recall@10 against the exact references."""
    from rag.retrieve.retriever import fuse

    row: dict = {"depth": depth}
    for name, (vstore, lstore) in stores.items():
        total, dense_ms, lexical_ms, dense_recall, hybrid_recall = [], [], [], [], []
        for qvec, text, ref in zip(qvecs, texts, refs):
            t0 = time.perf_counter()
            sc, rows = vstore.search(qvec, depth)
            t1 = time.perf_counter()
            lr, ls, cov = lstore.search(text, depth)
            t2 = time.perf_counter()
            fused = _top10(fuse({int(r): v for r, v in zip(rows, sc) if r >= 0}, dict(zip(lr.tolist(), ls)),
                                cov, s))
            total.append((time.perf_counter() - t0) * 1000)
            dense_ms.append((t1 - t0) * 1000)
            lexical_ms.append((t2 - t1) * 1000)
            dense_recall.append(len(ref.dense10 & set(rows[:10].tolist())) / 10)
            hybrid_recall.append(len(ref.hybrid10 & set(fused)) / 10)
        row |= {f"{name}_ms": pct(total), f"{name}_dense_p50": pct(dense_ms)[0],
                f"{name}_lexical_p50": pct(lexical_ms)[0], name: float(np.mean(dense_recall)),
                f"{name}_hybrid": float(np.mean(hybrid_recall))}
    row["load"] = load()
    return row


def serving_row(n: int, queries: int, depths: list[int], uri: str, server_pid: int,
                batch: int = INSERT_BATCH) -> dict:
    """n synthetic chunks: FAISS HNSW + bm25s loaded and queried at every depth first, then freed (only the
    vectors, the terms and BM25's statistics kept), then milvus-lite loaded and queried at every depth, so
    the two engines never hold the corpus at the same time (at 1M both together did not fit in 24 GB)."""
    import gc

    from bench.common import rss_mb
    from bench.perf_scale import base_vectors, synthetic
    from rag.config import RetrieveSettings
    from rag.store import milvus as mv
    from rag.store.lexical import Lexical
    from rag.store.vectors import make_vector_store

    rng = np.random.default_rng(16)
    base = base_vectors()
    vectors = synthetic(base, n, rng)
    qvecs = synthetic(base, queries, rng)
    docs, asked, tokenizer = corpus_terms(rng, n)
    texts = [asked[i] for i in rng.integers(0, len(asked), queries)]
    s = RetrieveSettings()

    t = time.perf_counter()
    store = make_vector_store(vectors.shape[1], n, force="hnsw")
    store.add(vectors)
    local_hnsw = time.perf_counter() - t
    t = time.perf_counter()
    lexical = Lexical.from_terms(docs, tokenizer)
    local_bm25 = time.perf_counter() - t
    out = {"n": n, "queries": queries, "local_hnsw_s": local_hnsw, "local_bm25_s": local_bm25,
           "local_rss_mb": rss_mb()}
    print(out | {"load": load()}, flush=True)
    refs = references(vectors, lexical, qvecs, texts, s)
    rows = {d: depth_row(d, {"faiss": (store, lexical)}, qvecs, texts, refs, s) for d in depths}
    for d in depths:
        print({"n": n} | rows[d], flush=True)
    vocab = dict(lexical._bm25.vocab_dict)
    df = np.diff(np.asarray(lexical._bm25.scores["indptr"]))
    del store, lexical
    gc.collect()

    milvus = mv.client(uri)
    sentences, chunks = mv.collection_names("bench", str(n))
    for name in (sentences, chunks):
        if milvus.has_collection(name):
            milvus.drop_collection(name)
    milvus_times = load_milvus(milvus, sentences, chunks, vectors, docs, vocab, batch)
    del docs
    gc.collect()
    m_vectors = mv.MilvusVectors(milvus, sentences, vectors.shape[1], n, uri)
    m_lexical = mv.MilvusLexical(milvus, chunks, vocab, df, n, tokenizer)
    out |= {**milvus_times, "milvus_build_s": sum(milvus_times.values()), "insert_batch": batch,
            "milvus_rss_mb": rss_mb(server_pid), "bench_rss_mb": rss_mb()}
    print(out, flush=True)
    out["depths"] = []
    for depth in depths:
        m = depth_row(depth, {"milvus": (m_vectors, m_lexical)}, qvecs, texts, refs, s)
        out["depths"].append(rows[depth] | m | {"load": f"{rows[depth]['load']} / {m['load']}"})
        print({"n": n} | m | {"milvus_rss_mb": rss_mb(server_pid)}, flush=True)
    out["milvus_rss_after_mb"] = rss_mb(server_pid)
    for name in (sentences, chunks):
        milvus.drop_collection(name)
    return out


# --- the report ------------------------------------------------------------------------------------------

BUILD_HEADING = "### Build:"
SERVING_HEADING = "### Serving:"
CLOSING = ("What milvus-lite's figures say: that the Milvus backend returns the same candidates as the "
           "in-process stores (recall against exact search, and the tests' identical top 5 and BM25 top 10), "
           "and what one query costs through pymilvus and gRPC on one machine. What they do not say: how a "
           "Milvus cluster performs. milvus-lite is one process per data folder, with its own index code, "
           "IDF per segment and a subset of the API; a cluster adds the proxy, query nodes and segment "
           "fan-out, other index implementations and network hops, and scales by replicas — measure it "
           "there (docs/scale-out.md) before sizing anything.")


def build_part(builds: list[dict]) -> str:
    one = next(r for r in builds if r["name"].startswith("Ray, 1"))
    two = next(r for r in builds if r["name"].startswith("Ray, 2"))
    lines = [f"{BUILD_HEADING} the shipped book + CMRC paragraphs, {builds[0]['sentences']} distinct sentences, "
             "empty embedding cache each time", "", f"Run {stamp()}, load {load()}.", "",
             "| engine | build s | encode stage s | sentences/s (whole build) | encoding window s | rows/s in "
             "the window | nodes that encoded |", "|---|---|---|---|---|---|---|"]
    cell = lambda v: "—" if v is None else f"{v:.1f}"  # noqa: E731
    lines += [f"| {r['name']} | {r['seconds']:.1f} | {r['encode_s']:.1f} | {r['per_s']:.1f} | "
              f"{cell(r.get('window_s'))} | {cell(r.get('window_per_s'))} | {r['nodes']} |" for r in builds]
    lines += ["", f"2 nodes against 1 node (1 CPU each), whole build: **{two['per_s'] / one['per_s']:.2f}×** "
              f"(target ≥ 1.6×); against the local build (both cores in one process): "
              f"{two['per_s'] / builds[0]['per_s']:.2f}×. The whole build counts the actor pool's start — a "
              "worker process per actor starting (≈ 1.6 s) and loading its own model (≈ 0.7 s), ≈ 3–4 s "
              "here with both at once (the 'ingest+chunk' stage waits for it) — the BM25 terms (≈ 1.5–2 s) "
              "and the embedding cache; the encoding window (first batch "
              "begun → last batch done, rows including the answer stage's passages) is the part that grows "
              "with the corpus: 2 nodes against 1 there: "
              + (f"**{two['window_per_s'] / one['window_per_s']:.2f}×**." if two.get("window_per_s")
                 and one.get("window_per_s") else "not measured.")
              + " The index written equals the local build's (tests/test_scale_ray.py)."]
    return "\n".join(lines)


def serving_part(serving: list[dict], sizes_note: str) -> str:
    depths = [d["depth"] for d in serving[0]["depths"]]
    lines = [f"{SERVING_HEADING} hybrid query (dense + BM25 candidates, depth d each, fused as locally)", "",
             f"Run {stamp()}, {serving[0]['queries']} queries per size and depth; load average while each "
             "depth was queried in the last column. Recall@10 is against exact search: dense = numpy brute "
             f"force; hybrid = the fusion of the exact dense and bm25s candidates at depth {REFERENCE_DEPTH} "
             "(what the shipped settings compute), so a smaller depth's loss shows. Milvus dense / BM25 = "
             "p50 of each of its two searches.", "",
             "| chunks | depth | engine | p50 ms | p95 ms | dense recall@10 | hybrid recall@10 | load |",
             "|---|---|---|---|---|---|---|---|"]
    for r in serving:
        for d in r["depths"]:
            lines.append(f"| {r['n']:,} | {d['depth']} | FAISS HNSW + bm25s, in-process | {d['faiss_ms'][0]:.1f} | "
                         f"{d['faiss_ms'][1]:.1f} | {d['faiss']:.3f} | {d['faiss_hybrid']:.3f} | {d['load']} |")
            lines.append(f"| {r['n']:,} | {d['depth']} | milvus-lite server (gRPC, loopback): dense "
                         f"{d['milvus_dense_p50']:.0f} + BM25 {d['milvus_lexical_p50']:.0f} | "
                         f"{d['milvus_ms'][0]:.1f} | {d['milvus_ms'][1]:.1f} | {d['milvus']:.3f} | "
                         f"{d['milvus_hybrid']:.3f} | {d['load']} |")
    lines += ["", "| chunks | in-process load s (HNSW + bm25s) | milvus-lite load s (vectors + terms inserted, "
              "flush + load) | rows per insert | milvus-lite RSS MB |", "|---|---|---|---|---|"]
    lines += [f"| {r['n']:,} | {r['local_hnsw_s']:.0f} + {r['local_bm25_s']:.0f} | {r['milvus_build_s']:.0f} "
              f"({r['insert_vectors_s']:.0f} + {r['insert_terms_s']:.0f} + {r['flush_load_s']:.0f}) | "
              f"{r['insert_batch']:,} | {r['milvus_rss_after_mb']:.0f} |" for r in serving]
    lines += ["", f"Depths measured: {', '.join(map(str, depths))}. {sizes_note}"]
    return "\n".join(lines)


def kept_part(heading: str) -> str | None:
    """The part of the section now in RESULTS.md that starts at `heading` (up to the next ### or the closing
    paragraph), so a run with --no-build or --no-serving keeps the other part's last figures."""
    import re

    from bench.common import RESULTS

    text = RESULTS.read_text(encoding="utf-8") if RESULTS.exists() else ""
    section = re.search(rf"^## {re.escape(TITLE)}\n(.*?)(?=^## |\Z)", text, re.S | re.M)
    if not section:
        return None
    part = re.search(rf"^{re.escape(heading)}.*?(?=^### |^What milvus-lite|\Z)", section.group(1), re.S | re.M)
    return part.group(0).strip() if part else None


def report(builds: list[dict] | None, serving: list[dict] | None, sizes_note: str, keep: bool = False) -> str:
    """The section; a part not run is taken from RESULTS.md when `keep` (else said to be not run)."""
    parts = [f"{stamp()}; {machine()}; load {load()}"]
    for heading, rows, make in ((BUILD_HEADING, builds, build_part),
                                (SERVING_HEADING, serving, lambda r: serving_part(r, sizes_note))):
        if rows:
            parts.append(make(rows))
        else:
            parts.append((kept_part(heading) if keep else None)
                         or f"{heading} not run here (`--no-build` / `--no-serving`).")
    parts.append(CLOSING)
    return "\n\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    from rag.config import offline_environment

    offline_environment()
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--paragraphs", type=int, default=90)
    p.add_argument("--sizes", type=int, nargs="+", default=[100_000])
    p.add_argument("--queries", type=int, default=200)
    p.add_argument("--depths", type=int, nargs="+", default=list(DEPTHS),
                   help="dense and BM25 candidates per query; each is measured on the same loaded stores")
    p.add_argument("--insert-rows", type=int, default=INSERT_BATCH, help="rows per milvus-lite insert call")
    p.add_argument("--no-build", action="store_true", help="skip the Ray build part")
    p.add_argument("--no-serving", action="store_true", help="skip the Milvus serving part")
    p.add_argument("--no-write", action="store_true")
    args = p.parse_args(argv)
    if args.no_build and args.no_serving:
        p.error("--no-build and --no-serving leave nothing to run")
    if any(d < 1 for d in args.depths) or args.insert_rows < 1 or args.queries < 1:
        p.error("--depths, --insert-rows and --queries must be positive")
    if min(args.sizes) <= REFERENCE_DEPTH:
        p.error(f"--sizes must exceed the reference depth {REFERENCE_DEPTH}")
    builds = None if args.no_build else build_rows(args.paragraphs)
    serving = None
    if not args.no_serving:
        serving = []
        with milvus_server() as (uri, pid):
            for n in args.sizes:
                serving.append(serving_row(n, args.queries, args.depths, uri, pid, args.insert_rows))
    note = ("Sizes: " + ", ".join(f"{n:,}" for n in args.sizes) + " chunks."
            + ("" if 1_000_000 in args.sizes else " 1M was not run here: run `--sizes 100000 1000000` to add it (with the memory: on 2026-12-02 "
               "milvus-lite's server passed 15 GB at 1M during the first queries, beside 8 GB of this "
               "process, and the run was stopped)."))
    body = report(builds, serving, note, keep=not args.no_write)
    print(body)
    if not args.no_write:
        write_section(TITLE, body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
