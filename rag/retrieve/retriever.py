"""Question (+ history) → ranked Hits: dense and BM25 candidates fused, overlaps merged, top-k.

In a library each book is fused on its own candidates (Index.dense_books / lexical_books), so other books
never change how a book ranks its passages; `merge_books` then interleaves the books' lists, each in order.
Only the books whose best possible merged score can reach the hits are fused (Retriever.library_hits).

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
# merged-score units a book's ceiling is raised by, for rounding: fuse's z-scores are float32 (relative error
# ≈ 1e-7 of values of a few units) against the float64 ceiling; not a tuned constant, any margin ≥ 1e-4 gives
# the same hits
CEILING_SLACK = 1e-3


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


def merge_books(fused_by: dict[str, list[tuple[int, float]]], dense_by: dict[str, dict[int, float]],
                units: LibraryUnits | None = None) -> list[tuple[int, float]]:
    """One best-first list from each book's own fused list, each book's order kept.

    A book's fused score is in units of its own dense spread (z-scores over its chunks). It is re-expressed
    in the library's units — (score · σ_book + μ_book − μ) / σ, μ and σ of all books' dense candidates —
    which turns its dense part into the library-wide z-score of the cosine (comparable between books:
    the same model's cosines) and scales its BM25 part by the same factor, so its ranking is unchanged.
    No constant is involved. Measured on the tune split (bench/RESULTS.md, "A library of books"): moving
    each book down by τ × (best book's best merged score − its own), a soft choice of the question's book,
    gave no stable gain for τ from 0.25 to 2 (single questions flip either way), and placing the books one
    after another (τ = ∞) lost questions about the other books.

    μ and σ are always those of every book in `dense_by`; `fused_by` may hold only some of them (the books
    `Retriever` has fused so far): their entries come out exactly as in the list of all books. `units`:
    LibraryUnits(dense_by), when the caller has it.
    """
    units = LibraryUnits(dense_by) if units is None else units
    books = list(fused_by)
    number = [units.number[b] for b in books]
    sizes = [len(fused_by[b]) for b in books]
    pairs = np.asarray([pair for b in books for pair in fused_by[b]], dtype=np.float64).reshape(-1, 2)
    rows, score = pairs[:, 0].astype(np.int64), pairs[:, 1]  # rows are exact in float64
    book = np.repeat(np.asarray(number, dtype=np.int64), sizes)
    merged = (score * units.spread_b[book] + units.mean_b[book] - units.mean) / units.spread
    order = np.lexsort((rows, -score, -merged))  # a tie in the library's units keeps the book's order
    return list(zip(rows[order].tolist(), merged[order].tolist()))


class LibraryUnits:
    """μ and σ of all books' dense candidates, and each book's own μ_book and σ_book (see merge_books)."""

    def __init__(self, dense_by: dict[str, dict[int, float]]) -> None:
        books = list(dense_by)
        self.number = {b: i for i, b in enumerate(books)}
        counts = np.fromiter((len(dense_by[b]) for b in books), np.int64, len(books))
        dense = np.fromiter((v for b in books for v in dense_by[b].values()), np.float64, int(counts.sum()))
        n = counts.astype(np.float64)
        owner = np.repeat(np.arange(len(books)), counts)
        self.mean, self.spread = (float(dense.mean()), max(float(dense.std()), 1e-6)) if len(dense) else (0.0, 1.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean_b = np.bincount(owner, dense, len(books)) / n
            spread_b = np.sqrt(np.maximum(np.bincount(owner, dense * dense, len(books)) / n - mean_b ** 2, 0.0))
        self.mean_b = np.where(n > 0, mean_b, 0.0)
        self.spread_b = np.where(n > 0, np.maximum(spread_b, 1e-6), 1.0)
        # the best dense z-score a book's fuse can give (dense_z, here in float64); 0 for a book without any
        best = np.full(len(books), -np.inf)
        np.maximum.at(best, owner, dense)
        self.best_z = np.where(n > 0, (best - self.mean_b) / self.spread_b, 0.0)
        # what each book's best dense chunk alone is worth merged (BM25 only adds): a floor of its best hit
        self.floor = np.where(n > 0, (best - self.mean) / self.spread - CEILING_SLACK, -np.inf)

    def ceilings(self, coverages: np.ndarray, s: RetrieveSettings) -> np.ndarray:
        """An upper bound of the merged score of any chunk of each book (the zscore fusion): its best dense
        z-score plus the most BM25 can add (lexical_scale · coverage), in the library's units, plus a
        margin for float32 rounding in fuse."""
        top = self.best_z + s.lexical_scale * np.maximum(coverages, 0.0)
        return (top * self.spread_b + self.mean_b - self.mean) / self.spread + CEILING_SLACK


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
        dense = {r: v for b in books for r, v in dense_by[b].items()}
        lexical = {r: v for b in books for r, v in lexical_by[b][0].items()}
        if len(books) == 1:
            return Retrieved(query, tuple(self.hits(fuse(dense_by[books[0]], *lexical_by[books[0]], s),
                                                    dense, lexical, k)))
        return Retrieved(query, tuple(self.library_hits(books, dense_by, lexical_by, dense, lexical, k)))

    def library_hits(self, books: list[str], dense_by: dict[str, dict[int, float]],
                     lexical_by: dict[str, tuple[dict[int, float], float]], dense: dict[int, float],
                     lexical: dict[int, float], k: int) -> list[Hit]:
        """The hits of merge_books over every book, fusing only the books that can reach them: books are fused
        best ceiling first (LibraryUnits.ceilings), twice as many each round, and the merged list is read
        only above the ceiling of the books not fused yet, so the hits are those of fusing them all
        (tests/test_library.py). Fusing every book was what a question cost in a library: 257 one-paragraph
        books 18.7 ms a search (the query vector given), one book 0.7 ms; now 5.1 ms, 5–6 books fused
        (bench/RESULTS.md, "A library of books")."""
        s = self.settings
        units = LibraryUnits(dense_by)
        if s.fusion in ("dense", "lexical", "rrf"):  # no ceiling: every book is fused
            ceilings = np.full(len(books), np.inf)
        else:
            ceilings = units.ceilings(np.asarray([lexical_by[b][1] for b in books], dtype=np.float64), s)
        order = np.lexsort((np.arange(len(books)), -ceilings)).tolist()
        fused_by: dict[str, list[tuple[int, float]]] = {}
        # first round: every book whose ceiling reaches the k-th best floor (without repeated passages the k
        # hits all score at least that, so each of these books has to be fused); then twice as many a round
        kth = np.sort(units.floor)[::-1][min(k, len(books)) - 1]
        done, step = 0, max(1, int((ceilings >= kth).sum())) if np.isfinite(ceilings).all() else len(books)
        while True:
            for i in order[done:done + step]:
                fused_by[books[i]] = fuse(dense_by[books[i]], *lexical_by[books[i]], s)
            done, step = min(done + step, len(order)), step * 2
            rest = ceilings[order[done]] if done < len(order) else -np.inf
            merged = merge_books(fused_by, dense_by, units)
            hits = self.hits([(r, v) for r, v in merged if v > rest], dense, lexical, k)
            if len(hits) == k or done == len(order):
                return hits

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
