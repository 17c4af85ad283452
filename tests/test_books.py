"""An index of two books (issue 12): each book keeps its own title, 目录 and 版权页 facts, and book-level
questions are answered for the book they name or the book picked."""

from __future__ import annotations

from dataclasses import replace

import pytest

from rag import render
from rag.build import build
from rag.pipeline import Pipeline
from rag.types import QueryParams

SECOND = """城市社区治理读本

责任编辑：王晓明
主 编：张建国
定价：20.00 元

城市社区治理读本 / 社区治理读本编写组编写 .

ISBN 978-7-0000-0000-1

目 录

第一章	社区治理的意义 ·····	001
第二章	社区服务的方法 ·····	009

第一章 社区治理的意义

社区是城市治理的基本单元。社区治理的核心是居民参与，居民议事会每月召开一次。

第二章 社区服务的方法

社区服务要做到精准、便捷，网格员每周走访一次独居老人。
"""


@pytest.fixture(scope="module")
def library(built, embedder, tmp_path_factory: pytest.TempPathFactory) -> Pipeline:
    folder = tmp_path_factory.mktemp("second")
    (folder / "community.txt").write_text(SECOND, encoding="utf-8")
    settings = replace(built, corpus=(*built.corpus, folder), index_dir=folder.parent / "library-index")
    build(settings, embedder=embedder)
    return Pipeline.load(settings, embedder=embedder)


def test_each_book_keeps_its_title_toc_and_facts(library: Pipeline) -> None:
    shipped, second = library.books
    assert second.id == "community" and second.title == "城市社区治理读本"
    assert shipped.title != second.title and shipped.info.fields["主编"] == "李景田"
    assert second.info.fields["主编"] == "张建国"
    assert [e.title for e in second.toc] == ["社区治理的意义", "社区服务的方法"]
    assert all(e.book == "community" for e in second.toc) and all(e.book == shipped.id for e in shipped.toc)
    assert {c.book for c in library.index.chunks} == {shipped.id, "community"}
    assert render.library_title(library.books) == f"《{shipped.title}》等 2 本书"


def test_book_questions_are_answered_for_the_named_or_picked_book(library: Pipeline) -> None:
    named = library.ask("《城市社区治理读本》的主编是谁？")
    assert named.mode == "direct" and "张建国" in named.text and "李景田" not in named.text
    picked = library.ask("这本书的主编是谁？", params=QueryParams(book="community"))
    assert "张建国" in picked.text and all(c.chunk.book == "community" for c in picked.citations)
    chapter = library.ask("第二章讲什么？", params=QueryParams(book="community"))
    assert "社区服务的方法" in chapter.text
    either = library.ask("这本书的主编是谁？")  # several books, none named or picked: the answer says which
    assert either.mode == "direct" and "《" in either.text


def test_search_keeps_to_the_picked_book(library: Pipeline) -> None:
    hits = library.search("网格员多久走访一次独居老人？", params=QueryParams(k=3, book="community"))
    assert hits and all(h.chunk.book == "community" for h in hits)
    assert "网格员每周走访一次独居老人" in hits[0].chunk.text
    other = library.search("群众工作的核心是什么？", params=QueryParams(k=3, book=library.books[0].id))
    assert all(h.chunk.book == library.books[0].id for h in other)


def test_rag_books_lists_each_book_with_its_toc_coverage(library: Pipeline) -> None:
    from rag.commands.books import describe

    shipped, second = describe(library)
    assert (second["id"], second["title"], second["files"]) == ("community", "城市社区治理读本", ["community.txt"])
    assert second["chunks"] == sum(c.book == "community" for c in library.index.chunks)
    assert [r["has_text"] for r in second["toc"]] == [True, True]
    assert shipped["pages_estimated"] and shipped["toc"][0]["has_text"] and not shipped["toc"][2]["has_text"]


def test_an_unknown_book_is_refused_by_name(library: Pipeline) -> None:
    import argparse

    from rag.commands.search import book_arg
    from rag.errors import InputError

    with pytest.raises(InputError, match="community"):
        book_arg(library, argparse.Namespace(book="no-such-book"))
    assert book_arg(library, argparse.Namespace(book="community")) == "community"
