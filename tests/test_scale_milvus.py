"""The Milvus backend (milvus-lite on a loopback port) against the in-process FAISS + bm25s stores.

Oracles: the FAISS pipeline's top 5 on the book's question set (identical lists) and on CMRC 2018 trial
(R@5 within 0.005, at least 99 % of the lists identical), and bm25s's BM25 top 10 (overlap ≥ 0.95). Also: publishing is idempotent, the alias
names the build's collection, and a folder whose build is not in Milvus refuses to load.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pymilvus")
pytestmark = pytest.mark.milvus

ROOT = Path(__file__).resolve().parent.parent
CMRC = ROOT.parent / "shared" / "data" / "cmrc2018_trial.json"
CMRC_WORK = ROOT / "embeddings" / "cache" / "bench-cmrc"  # shared with bench/retrieval_cmrc.py: its cache


@pytest.fixture(scope="module")
def milvus_uri(tmp_path_factory):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data = tmp_path_factory.mktemp("milvus")
    server = subprocess.Popen([str(Path(sys.executable).parent / "milvus-lite"), "server", "--data-dir", str(data),
                               "--host", "127.0.0.1", "--port", str(port)],
                              stdout=(data / "server.log").open("w"), stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError((data / "server.log").read_text()[-2000:])
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()


def _milvus(settings, uri: str, alias: str):
    return replace(settings, scale=replace(settings.scale, vector_backend="milvus", milvus_uri=uri,
                                           milvus_collection=alias))


def _top(pipeline, query, qvec, k=5) -> list[str]:
    return [h.chunk.id for h in pipeline.retriever.search(query, qvec=qvec, k=k).hits]


def _bm25_overlap(faiss_index, milvus_index, texts) -> float:
    shares = []
    for text in texts:
        expected = faiss_index.lexical_store.search(text, 10)[0].tolist()
        if expected:
            got = milvus_index.lexical_store.search(text, 10)[0].tolist()
            shares.append(len(set(got) & set(expected)) / len(expected))
    return float(np.mean(shares))


def test_book_questions_same_top5_as_faiss(milvus_uri, built, embedder, pipeline):
    from rag.errors import IndexMismatchError
    from rag.eval.questions import load_questions
    from rag.eval.retrieval import relevant_rank
    from rag.pipeline import Pipeline
    from rag.store.milvus import client, publish

    settings = _milvus(built, milvus_uri, "book")
    with pytest.raises(IndexMismatchError):  # not published yet: the page says what to run
        Pipeline.load(settings, embedder=embedder)
    first = publish(settings)
    assert publish(settings) == {**first, "previous": None}  # idempotent: same build, same collections
    assert client(milvus_uri).describe_alias("book")["collection_name"] == first["chunks"]
    served = Pipeline.load(settings, embedder=embedder)
    assert served.index.vectors.describe()["type"] == "milvus"

    questions = load_questions(ROOT / "tests" / "data" / "questions.jsonl")
    same, ranks = 0, {"faiss": [], "milvus": []}
    for q in questions:
        query = pipeline.prepare(q.question, q.history)
        qvec = embedder.encode_queries([query.text])[0]
        a, b = _top(pipeline, query, qvec), _top(served, query, qvec)
        same += a == b
        if q.answerable:
            for name, p in (("faiss", pipeline), ("milvus", served)):
                ranks[name].append(relevant_rank(p.retriever.search(query, qvec=qvec, k=5).hits, q.evidence))
    assert same == len(questions)
    r5 = {n: np.mean([r is not None for r in rs]) for n, rs in ranks.items()}
    assert abs(r5["faiss"] - r5["milvus"]) <= 0.005
    assert _bm25_overlap(pipeline.index, served.index, [q.question for q in questions]) >= 0.95
    # the sentence vectors a chunk's answer is scored with come back bit for bit
    chunk = pipeline.index.chunks[3].id
    assert served.index.sentence_vectors(chunk)[1].tobytes() == pipeline.index.sentence_vectors(chunk)[1].tobytes()


@pytest.mark.skipif(not CMRC.is_file(), reason=f"CMRC 2018 trial set not found at {CMRC} (shared/ beside the clone)")
def test_cmrc_recall_and_bm25_match_faiss(milvus_uri, settings, embedder):
    from bench.retrieval_cmrc import write_corpus
    from rag.build import build
    from rag.errors import InputError
    from rag.pipeline import Pipeline
    from rag.store.milvus import publish

    questions = write_corpus(CMRC_WORK / "corpus")
    local = replace(settings, corpus=(CMRC_WORK / "corpus",), index_dir=CMRC_WORK / "index-milvus-test")
    build(local, embedder=embedder)  # sentences come from the shared cache after the first run
    served_settings = _milvus(local, milvus_uri, "cmrc")
    publish(served_settings)
    faiss_p = Pipeline.load(local, embedder=embedder)
    milvus_p = Pipeline.load(served_settings, embedder=embedder)

    hits = {"faiss": 0, "milvus": 0}
    same, asked = 0, []
    for question, gold in questions:
        try:
            query = faiss_p.prepare(question)
        except InputError:
            continue  # the two empty CMRC questions: misses for both
        asked.append(query.text)
        qvec = embedder.encode_queries([query.text])[0]
        tops = {n: [h.chunk for h in p.retriever.search(query, qvec=qvec, k=5).hits]
                for n, p in (("faiss", faiss_p), ("milvus", milvus_p))}
        same += [c.id for c in tops["faiss"]] == [c.id for c in tops["milvus"]]
        for name, top in tops.items():
            hits[name] += any(c.source == gold for c in top)
    n = len(questions)
    assert abs(hits["faiss"] - hits["milvus"]) / n <= 0.005, (hits, same, n)
    # Both stores give the top 1000 sentences (FLAT: exact), so the fused lists are the same but for ties
    # and the last bits of the scores
    assert same / len(asked) >= 0.99, (same, len(asked))
    assert _bm25_overlap(faiss_p.index, milvus_p.index, asked) >= 0.95
