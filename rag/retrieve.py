"""Question (+ history) → ranked Hits: dense and BM25 candidates fused, overlaps merged, top-k.

Every kind of chunk (body, caption, 目录, front matter) competes on the same scores; the kind stays on the chunk
so the answerer and the UI can label it.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from rag.config import AnswerSettings, RetrieveSettings
from rag.query import Query, expand_followup, prepare
from rag.types import Chunk, Hit


def rrf(rankings: Sequence[Sequence[int]], weights: Sequence[float], k: int) -> dict[int, float]:
    """Weighted reciprocal rank fusion: sum of weight / (k + rank) over the rankings a row appears in."""
    fused: dict[int, float] = {}
    for rows, w in zip(rankings, weights):
        for rank, row in enumerate(rows, start=1):
            fused[row] = fused.get(row, 0.0) + w / (k + rank)
    return fused


def overlap(a: Chunk, b: Chunk) -> float:
    """Share of the shorter chunk covered by the other (same document only); 1.0 for identical texts."""
    if a.text.strip() == b.text.strip():
        return 1.0
    if a.source != b.source:
        return 0.0
    shared = min(a.end, b.end) - max(a.start, b.start)
    return max(0.0, shared / max(1, min(a.end - a.start, b.end - b.start)))


class Retriever:
    """Read-only and thread-safe: all state is the index, the embedder and frozen settings."""

    def __init__(self, index, embedder, settings: RetrieveSettings,
                 max_chars: int = AnswerSettings.max_question_chars) -> None:
        self.index = index
        self.embedder = embedder
        self.settings = settings
        self.max_chars = max_chars

    def resolve(self, question: str, history: Sequence[str] = ()) -> Query:
        """The cleaned question, with a follow-up's reference filled in from the previous user turns."""
        query = prepare(question, self.max_chars)
        turns = [prepare(h, self.max_chars).text for h in history if h and h.strip()]
        expanded = expand_followup(query.text, turns)
        if expanded == query.text:
            return query
        return Query(expanded, query.original, query.notices, query.converted, query.truncated, expanded=True)

    def search(self, question: str, history: Sequence[str] = (), k: int | None = None) -> list[Hit]:
        """Top-k hits for the question (InputError when it is empty after cleaning)."""
        return self.search_query(self.resolve(question, history).text, k)

    def search_query(self, text: str, k: int | None = None) -> list[Hit]:
        """Top-k hits for an already prepared query text."""
        k = self.settings.k if k is None else k
        if k <= 0 or not len(self.index):
            return []
        qvec = self.embedder.encode_queries([text])[0]
        dense_all = self.index.dense_scores(qvec)
        lexical_all = self.index.lexical_scores(text)
        n = self.settings.candidates
        dense = [row for row, _ in self.index.dense(qvec, n)]
        lexical = [row for row, _ in self.index.lexical(text, n)]
        fused = self.fuse(dense, lexical, dense_all, lexical_all)
        return self._hits(fused, dense_all, lexical_all, k)

    def fuse(self, dense: list[int], lexical: list[int], dense_all: np.ndarray,
             lexical_all: np.ndarray) -> list[tuple[int, float]]:
        s = self.settings
        scores = rrf([dense, lexical], [s.dense_weight, s.lexical_weight], s.rrf_k)
        return sorted(scores.items(), key=lambda item: (-item[1], item[0]))

    def _hits(self, fused: list[tuple[int, float]], dense_all: np.ndarray, lexical_all: np.ndarray,
              k: int) -> list[Hit]:
        """Best-first hits; a chunk mostly covered by a better one (overlap, duplicate text) is folded into it."""
        kept: list[Hit] = []
        for row, score in fused:
            chunk = self.index.chunks[row]
            if any(overlap(chunk, h.chunk) >= 0.5 for h in kept):
                continue
            kept.append(Hit(chunk, float(score), len(kept) + 1, float(dense_all[row]), float(lexical_all[row])))
            if len(kept) == k:
                break
        return kept
