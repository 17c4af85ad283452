"""rag.store.vectors: the FAISS index type follows the vector count (flat for a book, HNSW from HNSW_FROM up), is
recorded in the manifest, and HNSW keeps recall@10 ≥ 0.95 against exact search on model-shaped vectors."""

from __future__ import annotations

import json

import faiss
import numpy as np

from rag.store import vectors as ann
from rag.store.index import MANIFEST


def test_kind_follows_the_count_and_is_described() -> None:
    assert ann.kind_for(ann.HNSW_FROM - 1) == "flat" and ann.kind_for(ann.HNSW_FROM) == "hnsw"
    flat, hnsw = ann.make_vector_index(384, 10), ann.make_vector_index(384, ann.HNSW_FROM)
    assert isinstance(flat, faiss.IndexFlatIP) and isinstance(hnsw, faiss.IndexHNSWFlat)
    assert hnsw.metric_type == faiss.METRIC_INNER_PRODUCT
    assert ann.describe(flat) == {"type": "flat", "hnsw_from": ann.HNSW_FROM}
    assert ann.describe(hnsw)["type"] == "hnsw" and ann.describe(hnsw)["ef_search"] == ann.EF_SEARCH


def test_book_index_is_flat_and_says_so_in_its_manifest(built) -> None:
    manifest = json.loads((built.index_dir / MANIFEST).read_text(encoding="utf-8"))
    assert manifest["vector_index"] == {"type": "flat", "hnsw_from": ann.HNSW_FROM}
    index = faiss.read_index(str(built.index_dir / "vectors.faiss"))
    assert isinstance(index, faiss.IndexFlatIP) and ann.search_depth(index) == index.ntotal


def test_large_hnsw_index_keeps_recall_after_save_and_load(pipeline, tmp_path) -> None:
    """20k vectors shaped like the model's (the book's real sentence vectors plus noise, cosine ≈ 0.86 to
    their seed), in the index chosen for HNSW_FROM vectors; written and read back as the index folder does."""
    seeds = pipeline.index.vector_index.reconstruct_n(0, pipeline.index.vector_index.ntotal)
    rng = np.random.default_rng(7)
    data = seeds[rng.integers(0, len(seeds), 20_000)] + rng.normal(0, 0.03, (20_000, seeds.shape[1]))
    queries = seeds[rng.integers(0, len(seeds), 100)] + rng.normal(0, 0.03, (100, seeds.shape[1]))
    data, queries = (np.ascontiguousarray(x / np.linalg.norm(x, axis=1, keepdims=True), dtype=np.float32)
                     for x in (data, queries))
    hnsw = ann.make_vector_index(seeds.shape[1], ann.HNSW_FROM)
    hnsw.add(data)
    faiss.write_index(hnsw, str(tmp_path / "vectors.faiss"))
    loaded = faiss.read_index(str(tmp_path / "vectors.faiss"))
    assert ann.describe(loaded)["type"] == "hnsw" and loaded.hnsw.efSearch == ann.EF_SEARCH
    assert ann.search_depth(loaded) == ann.HNSW_DEPTH
    exact = faiss.IndexFlatIP(seeds.shape[1])
    exact.add(data)
    _, want = exact.search(queries, 10)
    _, got = loaded.search(queries, 10)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(got, want)])
    assert recall >= 0.95, recall
