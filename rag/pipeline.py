"""Serving: one read-only object with the model, the index and the retriever, shared by the CLI and the app.

Thread-safe: after `load` nothing is mutated except the lazily created answerer, guarded by a lock.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

from rag.config import Settings
from rag.store.index import Index, corpus_stale
from rag.retrieve.retriever import Retriever
from rag.types import Answer, Hit

_shared: dict[tuple, Pipeline] = {}
_shared_lock = threading.Lock()


@dataclass(frozen=True)
class IndexStatus:
    model: str
    chunks: int
    built_at: str
    corpus_checksum: str
    stale: bool
    stale_reason: str | None = None  # what changed in corpus/ since the build, in Chinese


class Pipeline:
    def __init__(self, settings: Settings, index: Index, embedder, retriever: Retriever) -> None:
        self.settings = settings
        self.index = index
        self.embedder = embedder
        self.retriever = retriever
        self._answerer = None
        self._lock = threading.Lock()

    @classmethod
    def load(cls, settings: Settings, embedder=None) -> Pipeline:
        """Load the model (unless given) and the index; raises IndexMissing/Mismatch/CorruptError."""
        if embedder is None:
            from rag.model.embed import load_embedder

            embedder = load_embedder(settings.model)
        index = Index.load(settings.index_dir, settings, embedder)
        retriever = Retriever(index, embedder, settings.retrieve, settings.answer.max_question_chars)
        return cls(settings, index, embedder, retriever)

    @classmethod
    def shared(cls, settings: Settings, stamp: tuple[int, ...] | None) -> Pipeline:
        """The process's warmed Pipeline for these settings and this index build (`stamp`, the manifest's
        identity): loaded by the first caller, while later callers wait for that same load. Only the newest
        build is kept; sessions still holding an older Pipeline finish on it."""
        key = (settings, stamp)
        with _shared_lock:
            if key not in _shared:
                pipeline = cls.load(settings)
                pipeline.answerer.warm()  # the book's sentence vectors, now rather than in the first question
                _shared.clear()
                _shared[key] = pipeline
            return _shared[key]

    def search(self, question: str, history: Sequence[str] = (), k: int | None = None) -> list[Hit]:
        return self.retriever.search(question, history, k)

    @property
    def answerer(self):
        """rag.answer.answerer.Answerer, created on first use (search works without the answer stage)."""
        with self._lock:
            if self._answerer is None:
                from rag.answer.answerer import Answerer

                self._answerer = Answerer(self.index, self.retriever, self.embedder, self.settings)
            return self._answerer

    def ask(self, question: str, history: Sequence[str] = (), **options: Any) -> Answer:
        return self.answerer.ask(question, history, **options)

    def ask_stream(self, question: str, history: Sequence[str] = (),
                   **options: Any) -> Iterator[str | Answer]:
        return self.answerer.ask_stream(question, history, **options)

    def status(self) -> IndexStatus:
        m = self.index.manifest
        reason = corpus_stale(self.settings, m)
        return IndexStatus(model=m.get("model", {}).get("name", ""), chunks=len(self.index),
                           built_at=m.get("built_at", ""),
                           corpus_checksum=m.get("corpus", {}).get("checksum", ""),
                           stale=reason is not None, stale_reason=reason)
