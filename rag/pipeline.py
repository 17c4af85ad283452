"""Serving: one read-only object with the model, the index, the retriever and the answerer, shared by the CLI,
the page and the API — the one path every question takes.

A question is prepared once (`prepare`: cleaned, Simplified, its follow-up filled in) and that Query goes down
to retrieval and the answer stage. Thread-safe: after `load` nothing is mutated except the lazily built
answer stage (search needs none of it), guarded by a lock.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Iterator, Sequence

from rag.answer.answerer import Answerer
from rag.answer.library import Library
from rag.answer.llm import LLMClient, Verifier
from rag.config import Settings
from rag.model.embed import load_embedder
from rag.retrieve.query import resolve
from rag.retrieve.retriever import Retriever
from rag.store.index import Index
from rag.errors import InputError, RagError
from rag.store.manifest import corpus_stale, manifest_stamp, rebuild_command
from rag.types import Answer, Book, Query, QueryParams, Retrieved

__all__ = ["Answer", "Book", "IndexStatus", "InputError", "Pipeline", "Query", "QueryParams", "RagError",
           "Retrieved"]  # what the page, the CLI and the API need of the question path, from one module

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
        self._answerer: Answerer | None = None
        self._lock = threading.Lock()

    @classmethod
    def load(cls, settings: Settings, embedder=None) -> Pipeline:
        """Load the model (unless given) and the index; raises IndexMissing/Mismatch/CorruptError."""
        embedder = embedder or load_embedder(settings.model)
        opener = None
        if settings.scale.vector_backend == "milvus":  # the same folder, its two stores served by Milvus
            from rag.store.milvus import open_index as opener
        index = Index.load(settings.index_dir, settings, embedder, opener)
        return cls(settings, index, embedder, Retriever(index, embedder, settings.retrieve))

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

    @staticmethod
    def stamp(settings: Settings) -> tuple[int, int, int] | None:
        """The identity of the index build on disk (it changes with every rebuild), for caching by it."""
        return manifest_stamp(settings.index_dir)

    @staticmethod
    def rebuild_command(settings: Settings) -> str:
        """The exact command that rebuilds the index these settings point at."""
        return rebuild_command(settings)

    @property
    def books(self) -> tuple[Book, ...]:
        return self.index.books

    @property
    def answerer(self) -> Answerer:
        """The answer stage with its collaborators (the books' facts, the LLM client, the verifier), built on
        first use: search works without it."""
        with self._lock:
            if self._answerer is None:
                llm = LLMClient(self.settings.llm) if self.settings.llm.enabled else None
                facts = Library(self.index.books, self.index.chunks)
                self._answerer = Answerer(self.settings, self.index, self.retriever, self.embedder, facts,
                                          llm, Verifier(self.embedder))
            return self._answerer

    # --- the question path ----------------------------------------------------------------------------

    def prepare(self, question: str, history: Sequence[str] = ()) -> Query:
        """The question as every stage sees it; InputError when nothing usable is left."""
        return resolve(question, history, self.settings.answer.max_question_chars)

    def search(self, question: str, history: Sequence[str] = (),
               params: QueryParams = QueryParams()) -> Retrieved:
        return self.retrieve(self.prepare(question, history), params)

    def retrieve(self, query: Query, params: QueryParams = QueryParams()) -> Retrieved:
        return self.retriever.search(query, k=params.k, book=params.book)

    def ask(self, question: str, history: Sequence[str] = (), params: QueryParams = QueryParams()) -> Answer:
        return self.answer(self.prepare(question, history), params)

    def ask_stream(self, question: str, history: Sequence[str] = (),
                   params: QueryParams = QueryParams()) -> Iterator[str | Answer]:
        return self.answer_stream(self.prepare(question, history), params)

    def answer(self, query: Query, params: QueryParams = QueryParams()) -> Answer:
        return self.answerer.answer(query, params)

    def answer_stream(self, query: Query, params: QueryParams = QueryParams()) -> Iterator[str | Answer]:
        """Text pieces in LLM mode, always ending with the Answer."""
        return self.answerer.answer_stream(query, params)

    def status(self) -> IndexStatus:
        m = self.index.manifest
        reason = corpus_stale(self.settings, m)
        return IndexStatus(model=m.get("model", {}).get("name", ""), chunks=len(self.index),
                           built_at=m.get("built_at", ""),
                           corpus_checksum=m.get("corpus", {}).get("checksum", ""),
                           stale=reason is not None, stale_reason=reason)
