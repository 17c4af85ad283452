"""Question (+ history) → ranked Hits: dense and BM25 candidates fused, overlaps merged, top-k.

Every kind of chunk (body, caption, 目录, front matter) competes on the same scores; the kind stays on the chunk
so the answerer and the UI can label it.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Sequence

import numpy as np

from rag.config import AnswerSettings, RetrieveSettings
from rag.store.index import NO_DENSE, top_rows
from rag.retrieve.query import Query, expand_followup, prepare, usable_history
from rag.types import Chunk, Hit

FOOTNOTE_MARK = re.compile(r"\^?[①-⑳]|\^\d+")  # "^①" in the text and at the start of its footnote
DUPLICATE = 0.8  # a hit whose text is this much shown by a better hit is left out


def rrf(rankings: Sequence[Sequence[int]], weights: Sequence[float], k: int) -> dict[int, float]:
    """Weighted reciprocal rank fusion: sum of weight / (k + rank) over the rankings a row appears in."""
    fused: dict[int, float] = {}
    for rows, w in zip(rankings, weights):
        for rank, row in enumerate(rows, start=1):
            fused[row] = fused.get(row, 0.0) + w / (k + rank)
    return fused


def fuse(dense: np.ndarray, lexical: np.ndarray, coverage: float,
         s: RetrieveSettings) -> list[tuple[int, float]]:
    """(row, fused score) best first, over the union of the top `candidates` of each ranker.

    Default "zscore": z-score of the dense scores (over all chunks) + lexical_scale · coverage · BM25 / max.
    The dense z-score says how far a chunk stands out from the rest of the book for this question; BM25 is
    scaled to [0, 1] and trusted in proportion to how much of the question's wording occurs in the book at
    all. Measured on CMRC and the book's questions (bench/RESULTS.md) against RRF: better R@1 and MRR@10 on
    both, same or better R@5; lexical_scale 3 was chosen on half of CMRC and confirmed on the other half.

    `dense` holds NO_DENSE for a chunk that got no dense score (an HNSW index returns only the best
    HNSW_DEPTH sentences, rag/ann.py). Then mean and spread are taken over the chunks that did, and the others
    get the lowest of their z-scores: dense alone never lifts them above a candidate, BM25 still counts.
    """
    dense_top = top_rows(dense, s.candidates, NO_DENSE)
    lexical_top = top_rows(lexical, s.candidates, 0.0)
    if s.fusion == "dense":
        scores = {r: float(dense[r]) for r in dense_top}
    elif s.fusion == "lexical":
        scores = {r: float(lexical[r]) for r in lexical_top}
    elif s.fusion == "rrf":
        scores = rrf([dense_top, lexical_top], [s.dense_weight, s.lexical_weight], s.rrf_k)
    else:
        z = dense_z(dense)
        top = float(lexical.max()) if len(lexical) else 0.0
        boost = s.lexical_scale * coverage / top if top > 0 else 0.0
        scores = {r: float(z[r] + boost * lexical[r]) for r in {*dense_top, *lexical_top}}
    return sorted(scores.items(), key=lambda item: (-item[1], item[0]))


def dense_z(dense: np.ndarray) -> np.ndarray:
    """z-scores of the dense scores over the chunks that have one; the rest get the lowest of them."""
    scored = np.flatnonzero(dense > NO_DENSE)
    if len(scored) in (0, len(dense)):  # exact search scores every chunk (and an empty index none)
        return (dense - dense.mean()) / max(float(dense.std()), 1e-6)
    found = dense[scored]
    found = (found - found.mean()) / max(float(found.std()), 1e-6)
    z = np.full(len(dense), found.min(), dtype=found.dtype)
    z[scored] = found
    return z


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

    def __init__(self, index, embedder, settings: RetrieveSettings,
                 max_chars: int = AnswerSettings.max_question_chars) -> None:
        self.index = index
        self.embedder = embedder
        self.settings = settings
        self.max_chars = max_chars
        self._footnotes = footnote_rows(index.chunks)

    def resolve(self, question: str, history: Sequence[str] = ()) -> Query:
        """The cleaned question, with a follow-up's reference filled in from the previous user turns."""
        query = prepare(question, self.max_chars)
        expanded = expand_followup(query.text, usable_history(history, self.max_chars))
        if expanded == query.text:
            return query
        return replace(query, text=expanded, expanded=True)

    def search(self, question: str, history: Sequence[str] = (), k: int | None = None) -> list[Hit]:
        """Top-k hits for the question (InputError when it is empty after cleaning)."""
        return self.search_query(self.resolve(question, history).text, k)

    def search_query(self, text: str, k: int | None = None, qvec: np.ndarray | None = None) -> list[Hit]:
        """Top-k hits for an already prepared query text (`qvec`: its vector, when the caller has it)."""
        k = self.settings.k if k is None else k
        if k <= 0 or not len(self.index):
            return []
        qvec = self.embedder.encode_queries([text])[0] if qvec is None else qvec
        dense = self.index.dense_scores(qvec)
        lexical, coverage = self.index.lexical_query(text)
        fused = fuse(dense, lexical, coverage, self.settings)
        return self.hits(fused, dense, lexical, k)

    def hits(self, fused: list[tuple[int, float]], dense: np.ndarray, lexical: np.ndarray,
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
        return [Hit(self.index.chunks[r], float(sc), n, float(dense[r]), float(lexical[r]))
                for n, (r, sc) in enumerate(rows, start=1)]

    def _footnotes_of(self, row: int) -> list[int]:
        c = self.index.chunks[row]
        if c.kind == "footnote":
            return []
        marks = dict.fromkeys(m.group() for m in FOOTNOTE_MARK.finditer(c.text) if m.group().startswith("^"))
        return [r for mark in marks for r in self._footnotes.get((c.source, c.section, mark), [])]
