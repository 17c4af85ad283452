"""The loaded books' facts (目录, 版权页) as one object: which book a book-level question is about.

A question is about the book it names (its title, or the title without 《》), else the book picked by the
caller (`book`, the page's picker or `--book`), else — with one book loaded — that book. With several and none
named, each book that has a direct answer gives it, prefixed with its title, so the reader sees which book each
comes from (「第二章讲什么？」: every book's 第二章; 「主编是谁」: the books whose 版权页 names one).
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Sequence

from rag.answer.direct import BookFacts
from rag.answer.facts import renumbered
from rag.text.fold import squeeze
from rag.types import Answer, Book, Chunk, Citation, TocEntry


_TITLED = re.compile(r"《([^《》]{1,40})》")
# 「载入了哪些书」「你能回答哪些书的问题」「书库里有什么」: about the loaded books, not about a book's content
_WHICH_BOOKS = re.compile(r"(?:载入|加载|收录|导入|能问|可以问|能回答|可以回答|能查|可以查).{0,4}(?:哪些|哪几本|几本|多少本|什么)"
                          r"(?:书|教材)|(?:书库|知识库|资料库)里?(?:有|是)")
# A book's direct answer that it has no such thing (「……没有第五章」「本书没有第300页的内容」).
_NONE = re.compile(r"没有第")


class Library:
    def __init__(self, books: Sequence[Book], chunks: Sequence[Chunk]) -> None:
        by_book: dict[str, list[Chunk]] = {b.id: [] for b in books}
        for c in chunks:
            by_book.setdefault(c.book, []).append(c)
        self.books = tuple(books)
        self.facts = {b.id: BookFacts(b, by_book[b.id]) for b in books}

    def titles(self) -> tuple[str, ...]:
        return tuple(b.title for b in self.books)

    def named(self, question: str) -> Book | None:
        """The book whose title the question names (the longest title found, spaces ignored)."""
        flat = squeeze(question)
        found = [b for b in self.books if b.title and squeeze(b.title) in flat]
        return max(found, key=lambda b: len(b.title), default=None)

    @staticmethod
    def without_title(question: str, title: str) -> str:
        """「《甲》的主编是谁」 → 「这本书的主编是谁」: the book is known, its title is no longer the topic."""
        pattern = re.escape(title).replace("\\ ", r"\s*")
        return re.sub(rf"[《〈]?{pattern}[》〉]?", "这本书", question, count=1)

    def scope(self, question: str, book: str | None = None, named: Book | None = None) -> list[BookFacts]:
        """The books a question is about, most likely first (`named`: the book it names, when known)."""
        named = named or self.named(question)
        if named is not None:
            return [self.facts[named.id]]
        if book is not None and book in self.facts:
            return [self.facts[book]]
        return list(self.facts.values())

    def missing(self, question: str) -> str | None:
        """A 《title》 the question names that is no loaded book (nor part of a loaded book's title)."""
        loaded = [squeeze(b.title) for b in self.books if b.title]
        for title in _TITLED.findall(question):
            flat = squeeze(title)
            if flat and not any(flat in t or t in flat for t in loaded):
                return title
        return None

    def answer(self, question: str, history: Sequence[str] = (), book: str | None = None) -> Answer | None:
        if _WHICH_BOOKS.search(squeeze(question)):  # 「现在载入了哪些书？」: the library itself, no page to cite
            names = "、".join(f"《{b.title}》" for b in self.books)
            hint = ("问题里写上书名（如「《书名》第二章讲什么」），或在网页侧栏、命令行 --book 选定一本，"
                    "就只在这本书里找答案。" if len(self.books) > 1 else "")
            return Answer(question=question, mode="direct", citations=(),
                          text=f"已载入{len(self.books)}本书：{names}。{hint}")
        named = self.named(question)
        absent = self.missing(question) if named is None else None
        if absent is not None:  # 「《另一本书》的主编是谁」: a book-level question about a book that is not here
            asked = self.without_title(question, absent)
            if any(f.answer(asked, history) is not None for f in self.facts.values()):
                names = "、".join(f"《{b.title}》" for b in self.books)
                return Answer(question=question, refused=True, mode="direct", citations=(),
                              text=f"已载入的书中没有《{absent}》，无法回答关于它的问题。已载入的书：{names}。")
        scope = self.scope(question, book, named)
        asked = self.without_title(question, named.title) if named else question
        found = [(f, a) for f in scope if (a := f.answer(asked, history)) is not None]
        if len(scope) == 1:
            return replace(found[0][1], question=question) if found else None
        # several books, none named or picked: each book's own fact, titled (those that have it; one that
        # says it has none — 「没有第五章」 — only when no book has it)
        said = [(f, a) for f, a in found if not a.refused and not _NONE.search(a.text)] or found[:1]
        if not said:
            return None
        texts: list[str] = []
        cites: list[Citation] = []
        for facts, a in said:
            text, numbered = renumbered(a.text, a.citations, cites)
            texts.append(f"《{facts.book.title}》：{text}")
            cites += [c for c in numbered if c not in cites]
        return Answer(question=question, text="\n".join(texts), citations=tuple(cites), mode=said[0][1].mode,
                      refused=all(a.refused for _, a in said))

    def pointer(self, question: str, book: str | None = None) -> str | None:
        return next((p for f in self.scope(question, book) if (p := f.pointer(question))), None)

    def titles_of(self, book: str | None = None) -> list[tuple[BookFacts, TocEntry, bool]]:
        """Every titled 目录 row of the books in scope, with its facts and whether its text is loaded."""
        return [(f, e, f.is_loaded(e)) for f in self.scope("", book) for e in f.toc if e.title]

    def names_unloaded_part(self, question: str, min_score: float, book: str | None = None) -> bool:
        return any(f.names_unloaded_part(question, min_score) for f in self.scope(question, book))
