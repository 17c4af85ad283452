"""The vector store: one small interface, FAISS exact (flat) and HNSW as its two backends, one factory.

Vectors are L2-normalised, so inner product = cosine in both. Measured by bench/perf_scale.py
(bench/RESULTS.md, Performance): exact search costs time linear in the vectors (tens of ms per 100k on
this shared 2-core machine) while HNSW stays around a millisecond with recall@10 ≥ 0.95 against exact
search; below HNSW_FROM exact search is cheap enough and loses nothing, so it stays the default there.
The choice is made from the vector count at build time and recorded in the manifest (`describe`).

A remote engine (Milvus, …) is a third class with the same methods; nothing above this module calls FAISS.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Protocol, Sequence

import numpy as np

HNSW_FROM = 100_000  # vectors; below this the exact index is used
HNSW_M = 32  # graph degree: recall/memory/build-time trade-off (+2·M int32 links per vector, base layer)
EF_CONSTRUCTION = 80
EF_SEARCH = 128  # search breadth; saved with the index
FILE = "vectors.faiss"

Kind = Literal["flat", "hnsw"]


class VectorStore(Protocol):
    """Rows of L2-normalised float32 vectors, searched by inner product."""

    dim: int

    def __len__(self) -> int: ...

    def add(self, vectors: np.ndarray) -> None: ...

    def search(self, query: np.ndarray, n: int,
               within: tuple[int, int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(scores, rows) of the best n rows for one query vector, best first (fewer when the store is
        smaller; an approximate store may return rows -1 for missing results, which callers skip).
        `within` = (start, end): only rows start <= row < end compete (one book's sentences)."""
        ...

    def vectors(self, rows: Sequence[int]) -> np.ndarray:
        """The stored vectors of these rows, in that order."""
        ...

    def save(self, folder: Path) -> list[Path]: ...

    def describe(self) -> dict[str, Any]:
        """The manifest entry: what kind of store this is and with which parameters."""
        ...


def kind_for(count: int) -> Kind:
    return "hnsw" if count >= HNSW_FROM else "flat"


class FaissStore:
    """A FAISS IndexFlatIP (exact) or IndexHNSWFlat (approximate) in one file of the index folder."""

    def __init__(self, index) -> None:
        self._index = index
        self.dim = int(index.d)

    def __len__(self) -> int:
        return int(self._index.ntotal)

    @property
    def faiss_index(self):
        """The FAISS index itself (benchmarks tune and time it bare)."""
        return self._index

    @property
    def kind(self) -> Kind:
        return "hnsw" if hasattr(self._index, "hnsw") else "flat"

    def add(self, vectors: np.ndarray) -> None:
        self._index.add(np.ascontiguousarray(vectors, dtype=np.float32))

    def search(self, query: np.ndarray, n: int,
               within: tuple[int, int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        x = np.asarray(query, dtype=np.float32).reshape(1, -1)
        if within is None or (within[0] <= 0 and within[1] >= len(self)):
            n = min(n, len(self))
            if n <= 0:
                return np.zeros(0, np.float32), np.zeros(0, np.int64)
            sims, rows = self._index.search(x, n)
            return sims[0], rows[0]
        import faiss

        start, end = max(0, within[0]), min(len(self), within[1])
        n = min(n, end - start)
        if n <= 0:
            return np.zeros(0, np.float32), np.zeros(0, np.int64)
        # A range selector: the flat index scores only those rows; HNSW walks its graph, keeping those rows.
        selector = faiss.IDSelectorRange(start, end)
        params = (faiss.SearchParametersHNSW(sel=selector, efSearch=self._index.hnsw.efSearch)
                  if self.kind == "hnsw" else faiss.SearchParameters(sel=selector))
        sims, rows = self._index.search(x, n, params=params)
        return sims[0], rows[0]

    def vectors(self, rows: Sequence[int]) -> np.ndarray:
        rows = [int(r) for r in rows]
        if not rows:
            return np.zeros((0, self.dim), dtype=np.float32)
        lo, hi = min(rows), max(rows) + 1
        if rows == list(range(lo, hi)):  # a chunk's sentences are consecutive rows: one read
            return self._index.reconstruct_n(lo, hi - lo)
        return np.stack([self._index.reconstruct(r) for r in rows])

    def save(self, folder: Path) -> list[Path]:
        import faiss

        faiss.write_index(self._index, str(folder / FILE))
        return [folder / FILE]

    @classmethod
    def load(cls, folder: Path) -> FaissStore:
        import faiss

        return cls(faiss.read_index(str(folder / FILE)))

    def describe(self) -> dict[str, Any]:
        if self.kind == "hnsw":
            return {"type": "hnsw", "m": HNSW_M, "ef_construction": self._index.hnsw.efConstruction,
                    "ef_search": self._index.hnsw.efSearch, "hnsw_from": HNSW_FROM}
        return {"type": "flat", "hnsw_from": HNSW_FROM}


def make_vector_store(dim: int, count: int, force: Kind | None = None) -> FaissStore:
    """An empty store for `count` vectors of `dim` dimensions: exact below HNSW_FROM, HNSW from there."""
    import faiss

    if (force or kind_for(count)) == "flat":
        return FaissStore(faiss.IndexFlatIP(dim))
    index = faiss.IndexHNSWFlat(dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = EF_CONSTRUCTION
    index.hnsw.efSearch = EF_SEARCH
    return FaissStore(index)


def load_vector_store(folder: Path, described: dict[str, Any]) -> FaissStore:
    """The store an index folder holds, as its manifest describes it."""
    return FaissStore.load(folder)
