"""rag.store.vectors: the store kind follows the vector count (flat for a book, HNSW from HNSW_FROM up), is
recorded in the manifest, and HNSW keeps recall@10 ≥ 0.95 against exact search on model-shaped vectors."""

from __future__ import annotations

import json

import faiss
import numpy as np

from rag.store import vectors as ann
from rag.store.manifest import MANIFEST


def test_kind_follows_the_count_and_is_described() -> None:
    assert ann.kind_for(ann.HNSW_FROM - 1) == "flat" and ann.kind_for(ann.HNSW_FROM) == "hnsw"
    flat, hnsw = ann.make_vector_store(384, 10), ann.make_vector_store(384, ann.HNSW_FROM)
    assert flat.kind == "flat" and hnsw.kind == "hnsw" and len(flat) == len(hnsw) == 0
    assert flat.describe() == {"type": "flat", "hnsw_from": ann.HNSW_FROM}
    assert hnsw.describe()["type"] == "hnsw" and hnsw.describe()["ef_search"] == ann.EF_SEARCH


def test_book_index_is_flat_and_says_so_in_its_manifest(built) -> None:
    manifest = json.loads((built.index_dir / MANIFEST).read_text(encoding="utf-8"))
    assert manifest["vector_index"] == {"type": "flat", "hnsw_from": ann.HNSW_FROM}
    index = faiss.read_index(str(built.index_dir / ann.FILE))
    assert isinstance(index, faiss.IndexFlatIP)


def test_flat_store_search_equals_numpy_and_returns_its_vectors(pipeline) -> None:
    store = pipeline.index.vectors
    data = store.vectors(range(len(store)))
    q = data[3] * 0.5 + data[7] * 0.5
    q /= np.linalg.norm(q)
    sims, rows = store.search(q, 10)
    exact = data @ q  # overlapping chunks embed some sentences twice: equal scores, either row may come first
    assert np.allclose(sims, np.sort(exact)[::-1][:10], atol=1e-5)
    assert np.allclose(exact[rows], sims, atol=1e-5) and len(set(rows.tolist())) == 10
    assert np.array_equal(store.vectors([7, 3]), data[[7, 3]])
    assert len(store.search(q, 10_000)[1]) == len(store)  # never more rows than stored


def test_large_hnsw_store_keeps_recall_after_save_and_load(pipeline, tmp_path) -> None:
    """20k vectors shaped like the model's (the book's real sentence vectors plus noise, cosine ≈ 0.86 to
    their seed), in the store chosen for HNSW_FROM vectors; written and read back as the index folder does."""
    seeds = pipeline.index.vectors.vectors(range(len(pipeline.index.vectors)))
    rng = np.random.default_rng(7)
    data = seeds[rng.integers(0, len(seeds), 20_000)] + rng.normal(0, 0.03, (20_000, seeds.shape[1]))
    queries = seeds[rng.integers(0, len(seeds), 100)] + rng.normal(0, 0.03, (100, seeds.shape[1]))
    data, queries = (np.ascontiguousarray(x / np.linalg.norm(x, axis=1, keepdims=True), dtype=np.float32)
                     for x in (data, queries))
    hnsw = ann.make_vector_store(seeds.shape[1], ann.HNSW_FROM)
    hnsw.add(data)
    hnsw.save(tmp_path)
    loaded = ann.load_vector_store(tmp_path, hnsw.describe())
    assert loaded.describe() == hnsw.describe() and loaded.kind == "hnsw"
    exact = faiss.IndexFlatIP(seeds.shape[1])
    exact.add(data)
    _, want = exact.search(queries, 10)
    recall = np.mean([len(set(loaded.search(q, 10)[1]) & set(w)) / 10 for q, w in zip(queries, want)])
    assert recall >= 0.95, recall
