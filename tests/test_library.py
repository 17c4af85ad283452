"""A library of four books (issue 14): the shipped excerpt, a Markdown text with 章/节/条 structure, a PDF made
by LibreOffice (tests/data/pdf/book.pdf: printed page numbers, running header, a scanned page) and a Markdown
text on the shipped book's own topic (bench/library.py writes them). Each question cites its own book,
book-level questions are answered for the right book, a question about a book that is not loaded is refused,
`rag books` and `rag build` describe them, and a book ranks its own passages as it would alone."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace

import pytest

from bench.library import write_other_books
from rag import render
from rag.build import BuildReport, build
from rag.commands.books import describe
from rag.commands.build import book_line
from rag.commands.eval import QUESTIONS
from rag.config import ROOT
from rag.eval.questions import load_questions
from rag.pipeline import Pipeline
from rag.retrieve.retriever import Retriever, fuse, merge_books
from rag.types import QueryParams


@pytest.fixture(scope="module")
def library_build(built, embedder, tmp_path_factory: pytest.TempPathFactory):
    """(settings, the build's report) of the four-book library."""
    corpus = write_other_books(tmp_path_factory.mktemp("library"))
    settings = replace(built, corpus=(*built.corpus, corpus), index_dir=corpus.parent / "library4-index")
    return settings, build(settings, embedder=embedder)


@pytest.fixture(scope="module")
def library(library_build, embedder) -> Pipeline:
    return Pipeline.load(library_build[0], embedder=embedder)


@pytest.fixture(scope="module")
def alone(built, embedder, library: Pipeline, tmp_path_factory: pytest.TempPathFactory) -> Pipeline:
    """The shipped book by itself, with the library's word list for jieba (the one thing the books of an
    index share: a term of one book changes how jieba cuts the same characters in another)."""
    words = tmp_path_factory.mktemp("words")
    (words / "lexicon.txt").write_text("".join(f"{w}\n" for w in library.index.lexicon), encoding="utf-8")
    settings = replace(built, corpus=(*built.corpus, words), index_dir=words.parent / "alone-index")
    build(settings, embedder=embedder)
    return Pipeline.load(settings, embedder=embedder)


def test_four_books_with_their_titles(library: Pipeline) -> None:
    ids = {b.id: b.title for b in library.books}
    assert ids["rules"] == "社区议事规则" and ids["duben"] == "群众工作学习读本"  # `#` heading; metadata file
    assert ids["jiceng"] == "基层群众工作方法十讲"
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


def test_a_sentence_that_announces_a_list_brings_the_list(library: Pipeline) -> None:
    """「……有什么特点？」 asks for no list in words, but the book's answer is 「基层群众工作有三个突出的特点。」
    and the three: the announcement alone answers nothing. 「第二个……」 then takes the second of them."""
    picked = QueryParams(book="jiceng")
    a = library.ask("基层群众工作有什么特点？", params=picked)
    assert [c.quote[:3] for c in a.citations] == ["基层群", "一是直", "二是具", "三是综"], a.text
    second = library.ask("第二个是什么意思？", ("基层群众工作有什么特点？",), params=picked)
    assert [c.quote[:3] for c in second.citations] == ["二是具"], second.text


def test_a_picked_book_is_the_only_book_cited(library: Pipeline) -> None:
    """With a book picked, every citation is from it — also the sentences the answer stage adds beyond the
    retrieved passages (its lexical sentence pool looked at every book: 「第1页讲什么？」 with 社区议事规则
    picked cited the shipped book's footnote 「……第4页」) and the list of the section whose heading a list
    question names (「……历史地位有哪几点？」 with another book picked got the shipped book's 第一…第四)."""
    for book in ("rules", "duben", "jiceng"):
        for question in ("第1页讲什么？", "群众工作的核心是什么？", "党的群众工作的实质是什么？",
                         "群众工作的历史地位有哪几点？"):
            a = library.ask(question, params=QueryParams(book=book))
            assert {c.chunk.book for c in a.citations} <= {book}, (book, question, a.text)


def test_a_verb_of_saying_is_not_a_topic_word(library: Pipeline) -> None:
    """「……写的是什么」 asks what the book says, like 说/讲: 写 is a question word, so another book's 「……写在
    这里」 does not win the answer from the shipped book's definition (it did with the PDF book loaded)."""
    a = library.ask("教材定义里，群众工作的工作内容写的是什么？")
    assert "以贯彻落实党的正确主张为工作内容" in a.text, a.text
    assert "写在这里" not in a.text


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


def test_a_markdown_books_text_counts_as_loaded_under_its_title_heading(library: Pipeline) -> None:
    # 「# 书名」 above 「## 第一章 …」: the 章 is the second heading of its chunks' paths, not the first
    rows = {b["id"]: b for b in describe(library)}
    for book in ("jiceng", "rules"):
        assert rows[book]["toc"] and all(r["has_text"] for r in rows[book]["toc"]), rows[book]["toc"]
    a = library.ask("第一章第一节讲什么？", params=QueryParams(book="jiceng"))
    assert a.mode == "direct" and "基层群众工作的含义" in a.text and "不在已载入的语料中" not in a.text
    # 「一是……二是……三是……」 is a list like 第一、第二
    listed = library.ask("基层群众工作有哪些特点？", params=QueryParams(book="jiceng"))
    assert [c.quote[:3] for c in listed.citations] == ["一是直", "二是具", "三是综"], listed.text
    # a practice round's scopes are its 章 and 节, not the book's title heading
    from rag.study.quiz import sections_with_text

    scopes = sections_with_text(library.index.chunks, "jiceng")
    assert scopes[0] == ("第一章怎样认识基层群众工作", "第一节基层群众工作的含义"), scopes[:2]


def test_book_level_questions_go_to_the_named_book_and_missing_books_are_refused(library: Pipeline) -> None:
    shipped = library.books[0]
    price = library.ask(f"《{shipped.title}》定价多少钱？")
    assert price.mode == "direct" and "33.00" in price.text
    chapter = library.ask("第二章讲的是什么？", params=QueryParams(book="rules"))
    assert chapter.mode == "direct" and "议事程序" in chapter.text  # its 目录 is made from its headings
    assert all(c.chunk.book == "rules" for c in chapter.citations)
    # several books, none named or picked: each book's own fact, titled; a book without one says nothing
    every = library.ask("第二章讲什么？")
    assert every.mode == "direct" and every.text.count("第二章的标题是") == 4, every.text
    assert {c.chunk.book for c in every.citations} == {b.id for b in library.books}
    assert "议事程序" in every.text and "群众工作的新形势新任务新特点" in every.text
    fifth = library.ask("第五章讲什么？")  # two books have a 第五章; the others say nothing of it
    assert {c.chunk.book for c in fifth.citations} == {shipped.id, "jiceng"} and "没有" not in fifth.text
    editor = library.ask("这本书的主编是谁？")  # only the shipped book's 版权页 names one
    assert editor.text.startswith(f"《{shipped.title}》：") and "李景田" in editor.text
    loaded = library.ask("现在载入了哪些书？")  # the library itself (it was refused)
    assert not loaded.refused and all(f"《{b.title}》" in loaded.text for b in library.books), loaded.text
    assert not library.ask("书中引用了哪些书？").text.startswith("已载入")  # about a book's content
    missing = library.ask("《中华人民共和国宪法》的主编是谁？")
    assert missing.refused and "没有《中华人民共和国宪法》" in missing.text
    outside = library.ask("红烧肉怎么做才好吃？")
    assert outside.refused


def test_a_question_about_a_missing_section_is_answered_only_by_a_book_that_says_it(library: Pipeline,
                                                                                  alone: Pipeline) -> None:
    """The shipped book's 第二章 (新形势) is 目录 only; the PDF book says what changed 「新形势下」: the question is
    answered from the PDF book alone, and the reader is told the shipped book's section is not loaded. A
    question the shipped book alone refuses for its missing 第三章第二节 (法治) stays refused with that pointer
    in the library: other books' sentences about 群众工作 in general are a little closer than the shipped
    book's, and they do not answer it (they did, mixed with the shipped book's)."""
    shipped = library.books[0]
    changed = library.ask("新形势下群众的利益诉求有什么变化？")
    assert not changed.refused and {c.chunk.book for c in changed.citations} == {"duben"}, changed.text
    assert any(f"《{shipped.title}》" in n and "第二章" in n for n in changed.notices), changed.notices
    rules = library.ask("议事会多久开一次会？")  # the shipped book does not cover it: no section of it is named
    assert {c.chunk.book for c in rules.citations} == {"rules"} and not rules.notices, rules.notices
    law = "怎样运用法治方式做好群众工作？"
    by_itself, in_library = alone.ask(law), library.ask(law)
    assert by_itself.refused and "法治中国建设" in by_itself.pointer
    assert in_library.refused and in_library.pointer == by_itself.pointer, in_library.text


def test_a_markdown_book_answers_for_a_chapter_it_does_not_have(library: Pipeline) -> None:
    """社区议事规则 has two 章, the second opening with its first 节's heading at once (no chunk of its own):
    「第三章讲什么？」 says there is none, cited at the heading where its last 章 begins (it fell through to
    retrieval: 「第五章」 was answered with 第五条), and each 章 is cited once."""
    rules = QueryParams(book="rules")
    missing = library.ask("第三章讲什么？", params=rules)
    assert missing.mode == "direct" and "没有第三章" in missing.text, missing.text
    assert [c.chunk.section[1] for c in missing.citations] == ["第二章议事程序"]
    fifth = library.ask("第五章讲什么？", params=rules)
    assert "没有第五章" in fifth.text and "第五条" not in fifth.text, fifth.text
    chapters = library.ask("有哪几章？", params=rules)
    assert [c.chunk.section[1] for c in chapters.citations] == ["第一章总则", "第二章议事程序"], chapters.text


def test_an_article_is_answered_by_its_number(library: Pipeline) -> None:
    """A 章/节/条 text is read by article: 「第三条是什么？」 is that article, quoted and cited with its 章 and 节
    (it was answered with 第一条 and 第三条 by retrieval); 「有几条」 counts them; a number past the last is
    said to be missing; a page asked for in a text without pages is said to have none. 「第三条呢？」 right
    after a list question is that list's third item, not an article of another book."""
    named = library.ask("社区议事规则第三条是什么？")
    assert named.mode == "direct" and [c.quote for c in named.citations] == [
        "第三条 议题由十名以上居民联名提出，或者由社区党组织提出。"], named.text
    assert "第二章议事程序 › 第一节议题" in named.text
    rules = QueryParams(book="rules")
    assert "全书共五条（第一条至第五条）" in library.ask("有几条？", params=rules).text
    assert "没有第九条" in library.ask("第九条是什么？", params=rules).text
    assert "本书没有印刷页码" in library.ask("第三条在第几页？", params=rules).text
    item = library.ask("第三条呢？", ("群众工作的历史地位有哪几点？",))
    assert [c.chunk.book for c in item.citations] == [library.books[0].id], item.text
    assert item.citations[0].quote.startswith("第三，"), item.text


def test_a_books_ranking_does_not_depend_on_the_other_books(library: Pipeline, alone: Pipeline) -> None:
    """Each book is fused on its own candidates (its own BM25 statistics, its own dense mean and spread):
    its passages come in the same order, with the same scores, as from the book alone — with the book
    picked, and within the library's list when no book is picked. The merge keeps each book's order."""
    shipped = library.books[0].id
    sample = [q for q in load_questions(QUESTIONS) if q.split == "tune"][:30]
    for q in sample:
        own = alone.search(q.question, q.history, QueryParams(k=10))
        picked = library.search(q.question, q.history, QueryParams(k=10, book=shipped))
        assert [h.chunk.id for h in picked] == [h.chunk.id for h in own], q.id
        assert [h.score for h in picked] == [h.score for h in own], q.id
        everything = library.search(q.question, q.history, QueryParams(k=len(library.index)))
        assert {h.chunk.book for h in everything} > {shipped}, q.id  # the other books compete
        mine = [h.chunk.id for h in everything if h.chunk.book == shipped]
        assert mine[:10] == [h.chunk.id for h in own], q.id


def test_fusing_only_the_books_that_can_reach_the_hits_changes_nothing(library: Pipeline) -> None:
    """Retriever.library_hits fuses books best ceiling first and stops when the hits are settled; its hits
    and scores are those of fusing every book and merging them all, at every k, for each fusion."""
    r = library.retriever
    index, s = r.index, r.settings
    books = list(index.book_rows)
    sample = [q for q in load_questions(QUESTIONS) if q.split == "tune"][:20]
    for fusion in ("zscore", "rrf"):
        settings = replace(s, fusion=fusion)
        for q in sample:
            query = library.prepare(q.question)
            qvec = r.embedder.encode_queries([query.text])[0]
            dense_by = index.dense_books(qvec, s.dense_depth, books)
            lexical_by = index.lexical_books(query.text, s.lexical_depth, books)
            every = merge_books({b: fuse(dense_by[b], *lexical_by[b], settings) for b in books}, dense_by)
            dense = {row: v for b in books for row, v in dense_by[b].items()}
            lexical = {row: v for b in books for row, v in lexical_by[b][0].items()}
            for k in (1, 5, len(index)):
                pruned = Retriever(index, r.embedder, settings).search(query, qvec, k)
                want = r.hits(every, dense, lexical, k)
                assert [(h.chunk.id, h.score) for h in pruned.hits] == [(h.chunk.id, h.score) for h in want], q.id


def test_the_build_reports_each_book(library_build, library: Pipeline) -> None:
    settings, report = library_build
    books = {b.id: b for b in report.books}
    assert list(books) == [b.id for b in library.books]
    assert sum(b.chunks for b in report.books) == report.chunks == len(library.index)
    assert sum(b.sentences for b in report.books) == report.sentences
    rules, duben, shipped = books["rules"], books["duben"], books[library.books[0].id]
    assert (rules.pages, rules.articles, rules.files) == (0, 5, 1)  # 第一条 … 第五条, no page numbers
    assert duben.pages > 0 and duben.articles == 0 and duben.toc == 4
    assert shipped.toc == len(library.books[0].toc) > 0
    assert all(b.encoded + b.reused == b.sentences for b in report.books)
    line = book_line(rules)
    assert line.startswith("  书 rules《社区议事规则》：文件 1 个") and "5 条" in line and "目录 4 项" in line
    again = build(settings)  # nothing changed: the counts come from the manifest, nothing is encoded
    assert isinstance(again, BuildReport) and again.up_to_date
    assert [replace(b, encoded=0) for b in report.books] == list(again.books)


def test_rag_build_prints_a_line_per_book(library_build) -> None:
    settings, _ = library_build
    args = [arg for root in settings.corpus for arg in ("--corpus", str(root))]
    out = subprocess.run([sys.executable, "-m", "rag", "build", "--quiet", "--index", str(settings.index_dir),
                          *args], cwd=ROOT, capture_output=True, text=True, timeout=120, check=True).stdout
    lines = [line for line in out.splitlines() if line.startswith("  书 ")]
    ids = [line.split("《")[0].removeprefix("  书 ") for line in lines]
    assert ids == ["qunzhong-gongzuo-excerpt", "duben", "jiceng", "rules"]
    assert "《社区议事规则》" in lines[-1] and "5 条" in lines[-1]
