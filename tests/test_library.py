"""A library of three books (issue 14): the shipped excerpt, a Markdown text with 章/节/条 structure, and a PDF
made by LibreOffice (tests/data/pdf/book.pdf: printed page numbers, running header, a scanned page). Each
question cites its own book, book-level questions are answered for the right book, a question about a book that
is not loaded is refused, and `rag books` describes them."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from rag import render
from rag.build import build
from rag.commands.books import describe
from rag.pipeline import Pipeline
from rag.types import QueryParams

DATA = Path(__file__).resolve().parent / "data"
RULES = """<!-- 测试用的条例文本：此注释不是正文 -->
# 社区议事规则

## 第一章 总则

第一条 为了规范社区居民议事活动，保障居民参与社区治理，制定本规则。

第二条 社区议事会由居民代表组成，每届任期三年。

## 第二章 议事程序

### 第一节 议题

第三条 议题由十名以上居民联名提出，或者由社区党组织提出。

第四条 议事会每季度至少召开一次会议，会议须有三分之二以上代表出席方可举行。

### 第二节 表决

第五条 表决实行少数服从多数，须经全体代表过半数同意方为通过。
"""


@pytest.fixture(scope="module")
def library(built, embedder, tmp_path_factory: pytest.TempPathFactory) -> Pipeline:
    corpus = tmp_path_factory.mktemp("library")
    (corpus / "rules").mkdir()
    (corpus / "rules" / "rules.md").write_text(RULES, encoding="utf-8")
    (corpus / "duben").mkdir()
    shutil.copy(DATA / "pdf" / "book.pdf", corpus / "duben" / "book.pdf")
    (corpus / "duben" / "book.json").write_text('{"title": "群众工作学习读本"}', encoding="utf-8")
    settings = replace(built, corpus=(*built.corpus, corpus), index_dir=corpus.parent / "library3-index")
    build(settings, embedder=embedder)
    return Pipeline.load(settings, embedder=embedder)


def test_three_books_with_their_titles(library: Pipeline) -> None:
    ids = {b.id: b.title for b in library.books}
    assert ids["rules"] == "社区议事规则" and ids["duben"] == "群众工作学习读本"  # `#` heading; metadata file
    rows = {b["id"]: b for b in describe(library)}
    assert rows["duben"]["files"] == ["duben/book.pdf"] and not rows["duben"]["pages_estimated"]
    assert rows["rules"]["pages"] == 0  # a Markdown text without page numbers
    assert not any("注释" in c.text for c in library.index.chunks)  # <!-- … --> is not book text


def test_each_question_cites_its_own_book(library: Pipeline) -> None:
    for question, book in (("议事会每季度至少召开几次会议？", "rules"), ("“枫桥经验”的要义是什么？", "duben"),
                           ("什么是“大群工”？", library.books[0].id)):
        a = library.ask(question)
        assert not a.refused and a.citations, question
        assert {c.chunk.book for c in a.citations} == {book}, (question, a.text)


def test_an_article_is_the_citation_anchor_of_a_text_without_pages(library: Pipeline) -> None:
    a = library.ask("表决须经多少代表同意方为通过？", params=QueryParams(book="rules"))
    (c, *_) = a.citations
    assert "过半数" in c.quote and render.locator(c) == "第五条"
    heading = render.card_heading(c, "社区议事规则")
    assert heading.startswith("**[1]** 《社区议事规则》") and "第二节表决" in heading and "**第五条**" in heading
    assert "页码不详" not in heading


def test_pdf_passages_carry_their_printed_page(library: Pipeline) -> None:
    hits = library.search("做群众工作常用哪四种方法？宣传教育、示范引导", params=QueryParams(k=3, book="duben"))
    chunk = next(h.chunk for h in hits if "示范引导" in h.chunk.text)
    assert chunk.page == "3" and not chunk.page_estimated  # the printed number of the page, not an estimate


def test_book_level_questions_go_to_the_named_book_and_missing_books_are_refused(library: Pipeline) -> None:
    shipped = library.books[0]
    price = library.ask(f"《{shipped.title}》定价多少钱？")
    assert price.mode == "direct" and "33.00" in price.text
    chapter = library.ask("第二章讲的是什么？", params=QueryParams(book="rules"))
    assert chapter.mode == "direct" and "议事程序" in chapter.text  # its 目录 is made from its headings
    assert all(c.chunk.book == "rules" for c in chapter.citations)
    missing = library.ask("《中华人民共和国宪法》的主编是谁？")
    assert missing.refused and "没有《中华人民共和国宪法》" in missing.text
    outside = library.ask("红烧肉怎么做才好吃？")
    assert outside.refused
