"""Which FAISS index holds the sentence vectors: exact (flat) for a book, HNSW from a corpus size up.

Vectors are L2-normalised, so inner product = cosine in both. Measured by bench/perf_scale.py
(bench/RESULTS.md, Performance): exact search costs time linear in the vectors (tens of ms per 100k on
this shared 2-core machine) while HNSW stays around a millisecond with recall@10 ≥ 0.95 against exact
search; below HNSW_FROM exact search is cheap enough, loses nothing and also lets retrieval score every
chunk, so it stays the default there.
The choice is made from the vector count at build time and recorded in the manifest (`describe`).
"""

from __future__ import annotations

from typing import Any, Literal

HNSW_FROM = 100_000  # vectors; below this the exact index is used
HNSW_M = 32  # graph degree: recall/memory/build-time trade-off (+2·M int32 links per vector, base layer)
EF_CONSTRUCTION = 80
EF_SEARCH = 128  # search breadth; saved with the index
HNSW_DEPTH = 1000  # sentence vectors fetched per query from an HNSW index (candidates for fusion)

Kind = Literal["flat", "hnsw"]


def kind_for(count: int) -> Kind:
    return "hnsw" if count >= HNSW_FROM else "flat"


def make_vector_index(dim: int, count: int, force: Kind | None = None):
    """An empty FAISS index for `count` vectors of `dim` dimensions (inner product)."""
    import faiss

    if (force or kind_for(count)) == "flat":
        return faiss.IndexFlatIP(dim)
    index = faiss.IndexHNSWFlat(dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = EF_CONSTRUCTION
    index.hnsw.efSearch = EF_SEARCH
    return index


def describe(index) -> dict[str, Any]:
    """The manifest entry: what kind of index this is and with which parameters."""
    if hasattr(index, "hnsw"):
        return {"type": "hnsw", "m": HNSW_M, "ef_construction": index.hnsw.efConstruction,
                "ef_search": index.hnsw.efSearch, "hnsw_from": HNSW_FROM}
    return {"type": "flat", "hnsw_from": HNSW_FROM}


def search_depth(index) -> int:
    """How many vectors a query asks for: all of them from an exact index (every chunk gets a dense score),
    the best HNSW_DEPTH from HNSW (scoring a million vectors per query is what HNSW is there to avoid)."""
    return index.ntotal if not hasattr(index, "hnsw") else min(index.ntotal, HNSW_DEPTH)
