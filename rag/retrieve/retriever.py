"""Question (+ history) → ranked Hits: dense and BM25 candidates fused, overlaps merged, top-k.

In a library each book is fused on its own candidates (Index.dense_books / lexical_books), so other books
never change how a book ranks its passages; `merge_books` then interleaves the books' lists, each in order.

Every kind of chunk (body, caption, 目录, front matter) competes on the same scores; the kind stays on the chunk
so the answerer and the UI can label it.
"""

from __future__ import annotations

import re
from typing import Sequence

import numpy as np

from rag.config import RetrieveSettings
from rag.types import Chunk, Hit, Query, Retrieved

FOOTNOTE_MARK = re.compile(r"\^?[①-⑳]|\^\d+")  # "^①" in the text and at the start of its footnote
DUPLICATE = 0.8  # a hit whose text is this much shown by a better hit is left out


def rrf(rankings: Sequence[Sequence[int]], weights: Sequence[float], k: int) -> dict[int, float]:
    """Weighted reciprocal rank fusion: sum of weight / (k + rank) over the rankings a row appears in."""
    fused: dict[int, float] = {}
    for rows, w in zip(rankings, weights):
        for rank, row in enumerate(rows, start=1):
            fused[row] = fused.get(row, 0.0) + w / (k + rank)
    return fused


NO_DENSE = -1.0  # dense score of a chunk none of whose sentences was among the dense candidates


def fuse(dense: dict[int, float], lexical: dict[int, float], coverage: float,
         s: RetrieveSettings) -> list[tuple[int, float]]:
    """(row, fused score) best first, over the union of the top `candidates` of each ranker.

    `dense` and `lexical` are the stores' candidates (chunk row → score, float32 as the stores give them).
    Default "zscore": z-score of the dense scores + lexical_scale · coverage · BM25 / max. The dense z-score
    says how far a chunk stands out from the rest of the book for this question; BM25 is scaled to [0, 1] and
    trusted in proportion to how much of the question's wording occurs in the book at all. Measured on CMRC
    and the book's questions (bench/RESULTS.md) against RRF: better R@1 and MRR@10 on both, same or better
    R@5; lexical_scale 3 was chosen on half of CMRC and confirmed on the other half.

    The candidates are one book's (Retriever fuses each book on its own). When every chunk has a dense
    candidate (a book: all its sentence vectors are searched), mean and spread are those of all its chunks;
    otherwise (HNSW, a very large book) they are taken over the candidates, and a chunk without a dense score
    gets the lowest of their z-scores: dense alone never lifts it above a candidate, BM25 still counts.
    """
    if s.fusion not in ("dense", "lexical", "rrf"):  # "zscore", the default
        z, floor = dense_z(dense)
        top = float(max(lexical.values(), default=0.0))
        boost = s.lexical_scale * coverage / top if top > 0 else 0.0
        rows = _top_set(dense, s.candidates) | _top_set(lexical, s.candidates)
        scores = {r: float(z.get(r, floor) + boost * lexical.get(r, 0.0)) for r in rows}
    else:
        dense_top, lexical_top = _best(dense, s.candidates), _best(lexical, s.candidates)
        if s.fusion == "dense":
            scores = {r: dense[r] for r in dense_top}
        elif s.fusion == "lexical":
            scores = {r: lexical[r] for r in lexical_top}
        else:
            scores = rrf([dense_top, lexical_top], [s.dense_weight, s.lexical_weight], s.rrf_k)
    return sorted(scores.items(), key=lambda item: (-item[1], item[0]))


def _best(scores: dict[int, float], n: int) -> list[int]:
    """The n best rows, ties by row (results never depend on dict order)."""
    return [r for r, _ in sorted(scores.items(), key=lambda item: (-item[1], item[0]))[:n]]


def _top_set(scores: dict[int, float], n: int) -> set[int]:
    """The rows of `_best(scores, n)`, without sorting when all of them are."""
    return set(scores) if len(scores) <= n else set(_best(scores, n))


def dense_z(dense: dict[int, float]) -> tuple[dict[int, float], float]:
    """z-scores of the dense candidates (float32, summed in row order so a score never depends on the order
    the store returned them in), and the z-score given to a chunk that is not one: the lowest."""
    if not dense:
        return {}, 0.0
    rows = sorted(dense)
    values = np.asarray([dense[r] for r in rows], dtype=np.float32)
    z = (values - values.mean()) / max(float(values.std()), 1e-6)
    return dict(zip(rows, z)), z.min()


def merge_books(fused_by: dict[str, list[tuple[int, float]]],
                dense_by: dict[str, dict[int, float]]) -> list[tuple[int, float]]:
    """One best-first list from each book's own fused list, each book's order kept.

    A book's fused score is in units of its own dense spread (z-scores over its chunks). It is re-expressed
    in the library's units — (score · σ_book + μ_book − μ) / σ, μ and σ of all books' dense candidates —
    which turns its dense part into the library-wide z-score of the cosine (comparable between books:
    the same model's cosines) and scales its BM25 part by the same factor, so its ranking is unchanged.
    No constant is involved. Measured on the tune split (bench/RESULTS.md, "A library of books"): moving
    each book down by τ × (best book's best merged score − its own), a soft choice of the question's book,
    gave no stable gain for τ from 0.25 to 2 (single questions flip either way), and placing the books one
    after another (τ = ∞) lost questions about the other books.
    """
    books = list(fused_by)
    values = [np.fromiter(dense_by[b].values(), np.float64, len(dense_by[b])) for b in books]
    n = np.asarray([len(v) for v in values], dtype=np.float64)
    dense = np.concatenate(values) if values else np.zeros(0)
    owner = np.repeat(np.arange(len(books)), n.astype(np.int64))
    mean, spread = (float(dense.mean()), max(float(dense.std()), 1e-6)) if len(dense) else (0.0, 1.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_b = np.bincount(owner, dense, len(books)) / n
        spread_b = np.sqrt(np.maximum(np.bincount(owner, dense * dense, len(books)) / n - mean_b ** 2, 0.0))
    mean_b, spread_b = np.where(n > 0, mean_b, 0.0), np.where(n > 0, np.maximum(spread_b, 1e-6), 1.0)
    sizes = [len(fused_by[b]) for b in books]
    pairs = np.asarray([pair for b in books for pair in fused_by[b]], dtype=np.float64).reshape(-1, 2)
    rows, score = pairs[:, 0].astype(np.int64), pairs[:, 1]  # rows are exact in float64
    book = np.repeat(np.arange(len(books)), sizes)
    merged = (score * spread_b[book] + mean_b[book] - mean) / spread
    order = np.lexsort((rows, -score, -merged))  # a tie in the library's units keeps the book's order
    return list(zip(rows[order].tolist(), merged[order].tolist()))


def covered(chunk: Chunk, by: Chunk) -> float:
    """Share of `chunk` that `by` already shows (same document); 1.0 for the same text anywhere."""
    if chunk.text.strip() == by.text.strip():
        return 1.0
    if chunk.source != by.source:
        return 0.0
    shared = min(chunk.end, by.end) - max(chunk.start, by.start)
    return max(0.0, shared / max(1, chunk.end - chunk.start))


def footnote_rows(chunks: Sequence[Chunk]) -> dict[tuple[str, tuple[str, ...], str], list[int]]:
    """Footnote chunks by (source, section, marker), e.g. "^①" → the row of "^① 《习近平谈治国理政》…"."""
    table: dict[tuple[str, tuple[str, ...], str], list[int]] = {}
    for row, c in enumerate(chunks):
        m = FOOTNOTE_MARK.match(c.text.lstrip()) if c.kind == "footnote" else None
        if m:
            table.setdefault((c.source, c.section, m.group()), []).append(row)
    return table


class Retriever:
    """Read-only and thread-safe: all state is the index, the embedder and frozen settings."""

    def __init__(self, index, embedder, settings: RetrieveSettings) -> None:
        self.index = index
        self.embedder = embedder
        self.settings = settings
        self._footnotes = footnote_rows(index.chunks)

    def search(self, query: Query, qvec: np.ndarray | None = None, k: int | None = None,
               book: str | None = None) -> Retrieved:
        """The top-k hits for a prepared question (`qvec`: its vector, when the caller has it), with that
        question; `book` keeps the hits of that book only."""
        k = self.settings.k if k is None else k
        if k <= 0 or not len(self.index):
            return Retrieved(query, ())
        qvec = self.embedder.encode_queries([query.text])[0] if qvec is None else qvec
        books = list(self.index.book_rows) if book is None else [book]
        s = self.settings
        dense_by = self.index.dense_books(qvec, s.dense_depth, books)
        lexical_by = self.index.lexical_books(query.text, s.lexical_depth, books)
        fused_by = {b: fuse(dense_by[b], *lexical_by[b], s) for b in books}
        fused = fused_by[books[0]] if len(books) == 1 else merge_books(fused_by, dense_by)
        dense = {r: v for b in books for r, v in dense_by[b].items()}
        lexical = {r: v for b in books for r, v in lexical_by[b][0].items()}
        return Retrieved(query, tuple(self.hits(fused, dense, lexical, k)))

    def hits(self, fused: list[tuple[int, float]], dense: dict[int, float], lexical: dict[int, float],
             k: int) -> list[Hit]:
        """Best-first hits. A chunk mostly shown by a better hit (overlap, repeated text) is left out; a
        footnote follows the passage that cites it (the passage alone does not say where a quote is from)."""
        rows: list[tuple[int, float]] = []
        for row, score in fused:
            for r in (row, *self._footnotes_of(row)):
                if len(rows) < k and not any(covered(self.index.chunks[r], self.index.chunks[q]) >= DUPLICATE
                                             for q, _ in rows):
                    rows.append((r, score))
            if len(rows) == k:
                break
        return [Hit(self.index.chunks[r], float(sc), n, float(dense.get(r, NO_DENSE)), float(lexical.get(r, 0.0)))
                for n, (r, sc) in enumerate(rows, start=1)]

    def _footnotes_of(self, row: int) -> list[int]:
        c = self.index.chunks[row]
        if c.kind == "footnote":
            return []
        marks = dict.fromkeys(m.group() for m in FOOTNOTE_MARK.finditer(c.text) if m.group().startswith("^"))
        return [r for mark in marks for r in self._footnotes.get((c.source, c.section, mark), [])]
