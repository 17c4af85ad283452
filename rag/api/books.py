"""The library as JSON, shared by the HTTP API and the MCP server: books, a book's 目录, a section's text."""

from __future__ import annotations

import re
from typing import Any, Sequence

from rag.errors import InputError
from rag.render import book_facts, reading_text, section_chunks
from rag.schema import citation_json
from rag.types import Answer, Book, Chunk, TocEntry

_SPACE = re.compile(r"[\s\u3000]+")
# 「第一章 › 第一节」, 「第一章/第一节」, 「第一章第一节」: a chapter, then a 节 in it
_PATH = re.compile(r"\s*[›>/|]\s*|(?<=章)(?=\s*第.{1,4}节)")


class UnknownBookError(InputError):
    """A book id (or model name) that is not loaded; the message lists the ones that are."""


def find_book(books: Sequence[Book], book_id: str) -> Book:
    for b in books:
        if b.id == book_id:
            return b
    known = "、".join(b.id for b in books) or "（无）"
    raise UnknownBookError(f"没有编号为「{book_id[:80]}」的教材。已载入的教材：{known}。")


def book_json(book: Book) -> dict[str, Any]:
    return {"id": book.id, "title": book.title, "files": list(book.files),
            "info": dict(book_facts(book.info)), "toc_entries": len(book.toc)}


def toc_entry_json(e: TocEntry) -> dict[str, Any]:
    return {"level": e.level, "number": e.number, "title": e.title, "heading": e.heading, "page": e.page,
            "parent": e.parent}


def toc_json(book: Book) -> dict[str, Any]:
    return {"book": book.id, "title": book.title, "toc": [toc_entry_json(e) for e in book.toc]}


def cited_json(answer: Answer) -> list[dict[str, Any]]:
    """The answer's citations as rag/schema.py gives them, plus the id of the book each comes from."""
    return [citation_json(c) for c in answer.citations]  # rag/schema.py carries the book id


def _squash(s: str) -> str:
    return _SPACE.sub("", s)


def _named(name: str, heading: str, number: str, title: str) -> bool:
    """`name` (squashed) is the entry's number, title or heading, or the start of its title or heading."""
    return bool(name) and (name == _squash(number) or any(
        x == name or x.startswith(name) for x in (_squash(heading), _squash(title)) if x))


def find_section(book: Book, section: str) -> TocEntry:
    """The 目录 entry named by `section`: its heading (「第一章 …」), its title, its number when that is unique
    (「第二章」), or 「第一章 › 第一节」 for a 节 whose number repeats in every chapter."""
    parts = [_squash(x) for x in _PATH.split(section) if _squash(x)]
    if not parts or len(parts) > 2:
        raise InputError("请给出目录中的章节名称，如「第一章」或「第一章 › 第一节」。")
    *chapter, name = parts
    found = [e for e in book.toc if _named(name, e.heading, e.number, e.title)
             and (not chapter or (e.parent and _named(chapter[0], e.parent, e.parent.split()[0], e.parent)))]
    exact = [e for e in found if name in (_squash(e.heading), _squash(e.title), _squash(e.number))]
    found = exact if len(exact) == 1 else found
    if len(found) == 1:
        return found[0]
    if found:
        options = "；".join(f"{e.parent.split()[0]} › {e.heading}" if e.parent else e.heading
                           for e in found[:6])
        raise InputError(f"「{section[:80]}」对应多个章节：{options}。请写明所在的章，如「第一章 › 第一节」。")
    raise InputError(f"《{book.title}》的目录中没有「{section[:80]}」。可用 read_toc 查看目录。")


def section_json(book: Book, entry: TocEntry, chunks: Sequence[Chunk]) -> dict[str, Any]:
    """A 目录 section's body text as continuous reading, with the passages (and pages) it is made of."""
    parts = reading_text(section_chunks([c for c in chunks if c.book == book.id], entry))
    return {"book": book.id, "section": entry.heading, "parent": entry.parent, "page": entry.page,
            "text": "\n".join(text for _, text in parts),
            "passages": [{"chunk_id": c.id, "section": c.section_path, "page": c.page, "page_end": c.page_end,
                          "page_estimated": c.page_estimated, "text": text} for c, text in parts],
            "loaded": bool(parts)}
