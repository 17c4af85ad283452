"""Whether the loaded text can answer a question, and which 目录 row a question is about, from the 目录 titles.

The refusal rule and the 目录 look-up by meaning share the titles' passage vectors (encoded once). The rules and
their thresholds (chosen on the tune split of tests/data/book_questions.jsonl; bench/RESULTS.md, issue 13):

1. Outside the book: the best sentence is below MIN_DENSE (cosine) and below MIN_COVERAGE (weighted share of
   the question's terms). Out-of-scope questions (weather, recipes, sport) reach cosines of 0.80–0.86 with
   almost none of their terms in the book.
2. A 目录 row whose text is not loaded, named by number (「第四章第二节的内容」), or in words of its title that
   the loaded text never uses (BookFacts.unloaded_by_words: 「源头治理」), or by a balanced title match of at
   least UNLOADED_TOPIC — unless a sentence covers the question nearly completely (FULL_COVERAGE).
3. Closer in meaning to such a row's title than to every sentence of the loaded text of its book, by more
   than TITLE_MARGIN + TITLE_SLOPE × the best coverage among that book's three best sentences (a sentence
   sharing the question's words needs a clearer lead). On tune, answerable questions stay at or below +0.014
   (most below 0), questions about unloaded sections reach +0.01 to +0.10. With several books, another
   book answers instead only when one of its sentences is at least as close as that title, and then from its
   own sentences (the book whose section is missing has nothing closer to say); a sentence of another book
   that is merely a little closer than the book's own does not: more text on the same topic always holds a
   slightly closer sentence, and a question about the missing section is no more answered by it.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace
from typing import Sequence

import numpy as np

from rag.answer.direct import BookFacts
from rag.answer.extract import Scored, encode_passages
from rag.answer.library import Library
from rag.types import Answer, TocEntry

MIN_DENSE = 0.87
MIN_COVERAGE = 0.3
UNLOADED_TOPIC = 0.6
FULL_COVERAGE = 0.9
TITLE_MARGIN, TITLE_SLOPE = 0.008, 0.015
# A 目录 topic question is answered with the title closest in meaning when that cosine is at least this (tune:
# the right title scores 0.88–0.94 for the 目录 questions whose words match no title).
TOC_MEANING = 0.87

Title = tuple[BookFacts, TocEntry, bool, np.ndarray]  # facts, 目录 row, its text is loaded, title vector


@dataclass(frozen=True)
class Unloaded:
    """The 目录 row a question is about whose text is not loaded; `elsewhere`: another book says something at
    least as close to the question, so it is answered from the other books instead of refused."""

    facts: BookFacts
    entry: TocEntry
    elsewhere: bool = False
    title: float = 0.0  # the question's cosine with the row's title (rule 3)

    @property
    def named(self) -> bool:
        """The question is as close to the row's title as a sentence must be to answer it (MIN_DENSE): when
        another book answers, the reader is told this book's section is missing (not for every question
        that book merely does not cover)."""
        return self.title >= MIN_DENSE


class Scope:
    """Read-only after construction and shared by all sessions (the title vectors are made under a lock)."""

    def __init__(self, facts: Library, embedder, stored: dict[str, np.ndarray] | None = None) -> None:
        self.facts = facts
        self.embedder = embedder
        self.stored = stored or {}  # Index.passages: the titles' vectors, stored by the build
        self._vectors: list[Title] | None = None
        self._lock = threading.Lock()

    def titles(self, book: str | None) -> list[Title]:
        """The 目录 titles in scope with their passage vectors (stored in the index, or encoded on first use)."""
        with self._lock:
            if self._vectors is None:
                rows = self.facts.titles_of(None)
                vecs = encode_passages(self.embedder, self.stored, [e.title for _, e, _ in rows])
                self._vectors = [(f, e, loaded, v) for (f, e, loaded), v in zip(rows, vecs)]
        return [r for r in self._vectors if book is None or r[0].book.id == book]

    def outside(self, text: str, ranked: Sequence[Scored], book: str | None) -> bool:
        """Rules 1 and the balanced title match of rule 2."""
        if not ranked:
            return True
        best = ranked[0]
        if best.coverage < MIN_COVERAGE and best.dense < MIN_DENSE:
            return True
        return best.coverage < FULL_COVERAGE and self.facts.names_unloaded_part(text, UNLOADED_TOPIC, book)

    def unloaded_entry(self, own: str, ranked: Sequence[Scored], qvec: np.ndarray,
                       book: str | None) -> Unloaded | None:
        """The 目录 row a question is about when that row's text is not loaded (rules 2 and 3)."""
        for facts in self.facts.scope(own, book):
            entry = facts.numbered_unloaded(own)
            if entry is None and (not ranked or ranked[0].coverage < FULL_COVERAGE):
                entry = facts.unloaded_by_words(own)
            if entry is not None:
                return Unloaded(facts, entry)
        rows = self.titles(book)
        if not rows or not ranked:
            return None
        sims = np.stack([v for _, _, _, v in rows]) @ qvec
        best_unloaded = max(((s, i) for i, s in enumerate(sims) if not rows[i][2]), default=None)
        if best_unloaded is None:
            return None
        title, (facts, entry, _, _) = float(best_unloaded[0]), rows[best_unloaded[1]]
        its = [s for s in ranked if s.sentence.chunk.book == facts.book.id]
        margin = TITLE_MARGIN + TITLE_SLOPE * max((s.coverage for s in its[:3]), default=0.0)
        if its and title - max(s.dense for s in its) <= margin:
            return None
        others = [s.dense for s in ranked if s.sentence.chunk.book != facts.book.id]
        return Unloaded(facts, entry, elsewhere=bool(others) and max(others) >= title, title=title)

    def toc_by_meaning(self, own: str, turns: Sequence[str], qvec: np.ndarray,
                       book: str | None) -> Answer | None:
        """A 目录 topic question (「讲社会保障方面群众工作的是哪一节？」) whose words match no title well: the row
        whose title is closest in meaning (at least TOC_MEANING), among the named chapter's sections if any."""
        scope = self.facts.scope(own, book)
        for facts in scope:
            rows = set(facts.topic_rows(own, turns))
            if not rows:
                continue
            scored = ((float(v @ qvec), e) for f, e, _, v in self.titles(book) if f is facts and e in rows)
            score, entry = max(scored, key=lambda x: x[0], default=(0.0, None))
            found = facts.topic_answer(own, entry) if entry is not None and score >= TOC_MEANING else None
            if found is not None:
                prefix = f"《{facts.book.title}》：" if len(scope) > 1 else ""
                return replace(found, text=prefix + found.text)
        return None
