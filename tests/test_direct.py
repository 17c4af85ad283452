"""Direct answers from the parsed 版权页 and 目录 of the real index: exact, cited verbatim, honest about gaps."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from rag.answer.booknav import route
from rag.text.numerals import cn_int, int_cn
from rag.answer.direct import BookFacts

QUESTION_FILE = Path(__file__).parent / "data" / "questions.jsonl"
QUESTIONS = [json.loads(line) for line in QUESTION_FILE.open(encoding="utf-8") if line.strip()]
FRONT = [q for q in QUESTIONS if q["type"] in ("toc", "copyright")]


def squeeze(s: str) -> str:
    return re.sub(r"\s", "", s)


@pytest.fixture(scope="module")
def facts(pipeline) -> BookFacts:
    (book,) = pipeline.index.books
    return BookFacts(book, [c for c in pipeline.index.chunks if c.book == book.id])


@pytest.mark.parametrize("q", FRONT, ids=[q["id"] for q in FRONT])
def test_front_matter_questions_are_answered_exactly_from_their_page(pipeline, q) -> None:
    a = pipeline.ask(q["question"], q["history"])
    assert a.mode == "direct" and not a.refused
    for phrase in q["answer_phrases"]:
        assert squeeze(phrase) in squeeze(a.text), (phrase, a.text)
    assert a.citations
    kind = "toc" if q["type"] == "toc" else "front"
    for c in a.citations:
        assert c.quote in c.chunk.text and c.chunk.kind == kind
        assert c.chunk.page == ("目录" if kind == "toc" else "版权页")
        assert f"[{c.n}]" in a.text
    # the question set's evidence line is what the reader is shown
    assert any(squeeze(e) in squeeze(c.quote) or squeeze(c.quote) in squeeze(e)
               for e in q["evidence"] for c in a.citations)


def test_a_chapter_whose_text_is_missing_is_said_to_be_missing(facts: BookFacts) -> None:
    a = facts.answer("第五章讲什么？")
    assert a is not None and "做好信访工作是群众工作的重要环节" in a.text and "第99页" in a.text
    assert "不在已载入的语料中" in a.text
    loaded = facts.answer("第一章讲什么？")
    assert loaded is not None and "不在已载入的语料中" not in loaded.text  # 第一章's text is in the corpus
    assert "党的群众工作的地位与作用" in loaded.text


def test_pages_beyond_the_book_and_chapters_that_do_not_exist(facts: BookFacts) -> None:
    a = facts.answer("第999页讲了什么？")
    assert a is not None and "没有第999页" in a.text and "207" in a.text
    none = facts.answer("第十章讲什么？")
    assert none is not None and "没有第十章" in none.text and "八章" in none.text
    inside = facts.answer("第30页讲的是什么？")
    assert inside is not None and "群众工作的新形势" in inside.text and "第28页起" in inside.text


def test_structure_follow_ups_take_their_chapter_from_the_history(facts: BookFacts) -> None:
    a = facts.answer("这一章的第二节讲什么？", ["第三章讲什么？"])
    assert a is not None and "在法治中国建设中推进改革发展稳定中的群众工作" in a.text
    nxt = facts.answer("下一章呢？", ["第三章讲什么？"])
    assert nxt is not None and "第四章" in nxt.text
    page = facts.answer("它从第几页开始？", ["讲“最后一公里”的是哪一节？"])
    assert page is not None and "第67页" in page.text


def test_content_questions_are_not_taken_for_structure_questions(facts: BookFacts) -> None:
    for q in ("什么是党的群众工作？", "群众工作的历史地位是什么？", "第一章第一节中群众工作的基本概念是什么？",
              "毛泽东什么时候进入安源煤矿？", "今天天气怎么样？"):
        assert facts.answer(q) is None, q


def test_the_preface_date_and_all_chapters(facts: BookFacts) -> None:
    a = facts.answer("这本书的序言落款日期是哪天？")
    assert a is not None and "2015年1月18日" in a.text and a.citations[0].chunk.section == ("序言",)
    a = facts.answer("序言写于哪一年？")  # the 序言's date, not the 版权页's 出版时间 (「哪一年」)
    assert a is not None and "2015年1月18日" in a.text and a.citations[0].chunk.section == ("序言",)
    listing = facts.answer("这本书有哪几章？")
    assert listing is not None and all(c.entry.title in listing.text for c in facts.chapters)


def test_who_signed_the_preface_is_said_as_the_text_shows_it(pipeline) -> None:
    # the shipped excerpt's signature is a picture: its extracted description is all the text has
    for q in ("序言是谁写的？", "序言末尾的签名是谁", "谁作的序？"):
        a = pipeline.ask(q)
        assert a.mode == "direct" and not a.refused and "2015年1月18日" in a.text, (q, a.text)
        picture, date = a.citations
        assert picture.chunk.kind == "caption" and picture.chunk.section == ("序言",)
        assert "signature" in picture.quote and picture.quote in a.text and "图片" in a.text
        assert date.quote == "2015年1月18日" and date.quote in date.chunk.text
    # a question about a sentence of the 序言 is not a question about who signed it
    assert "署名" not in pipeline.ask("序言里说，谁要有本领不够的危机感？").text
    assert "组织编写" in pipeline.ask("这本书是谁编写的？").text  # the 版权页's 编写, as before


def test_a_reason_is_never_a_copyright_field(pipeline) -> None:
    a = pipeline.ask("作者为什么说要好学？")
    assert a.mode != "direct" and "好学才能上进" in a.text and "组织编写" not in a.text


def test_a_loaded_section_is_described_by_its_own_headings(facts: BookFacts) -> None:
    a = facts.answer("第一章第一节讲了几个问题？")
    assert a is not None and "党的群众工作的地位与作用" in a.text and "已载入的正文分为三部分" in a.text
    heads = [c for c in a.citations if c.chunk.kind == "body"]
    assert [squeeze(c.quote).lstrip("◇") for c in heads] == ["一、党的群众工作的基本概念和内涵",
                                                            "二、群众工作的历史地位", "三、群众工作的作用"]
    assert all(c.quote in c.chunk.text and f"[{c.n}]" in a.text for c in a.citations)
    # a section whose text is not loaded has only its 目录 row
    other = facts.answer("第一章第二节讲什么？")
    assert other is not None and "已载入的正文分为" not in other.text and "不在已载入的语料中" in other.text


def test_a_part_of_a_loaded_section_by_its_number(facts: BookFacts) -> None:
    a = facts.answer("第一章第一节的第三部分讲什么？")
    assert a is not None and a.text.startswith("第一章第一节的第三部分是“三、群众工作的作用”"), a.text
    head, first = a.citations
    assert "三、群众工作的作用" in head.quote and first.quote.startswith("党的群众工作的作用")
    assert all(c.quote in c.chunk.text for c in a.citations)
    follow = facts.answer("它的第二部分呢？", ["第一章第一节讲什么？"])
    assert follow is not None and "二、群众工作的历史地位" in follow.text
    beyond = facts.answer("第一章第一节的第五部分讲什么？")  # there are three: the section's parts are listed
    assert beyond is not None and "已载入的正文分为三部分" in beyond.text


def test_a_word_holding_a_field_name_is_not_that_field(facts: BookFacts) -> None:
    assert facts.answer("党的群众工作者是谁？") is None  # 工作者, not the book's 作者
    a = facts.answer("这本书的作者是谁？")
    assert a is not None and "组织编写" in a.text


def test_the_whole_books_content_and_length_come_from_its_toc_and_copyright_page(facts: BookFacts) -> None:
    for q in ("这本书讲了哪些内容？", "全书的主要内容是什么"):
        a = facts.answer(q)
        assert a is not None and all(c.entry.title in a.text for c in facts.chapters), q
    assert facts.answer("这本书讲了哪些群众工作的方法？") is None  # a content question, for retrieval
    a = facts.answer("这本书一共多少页？")
    assert a is not None and "第207页" in a.text and "约224页" in a.text  # 印张 14 × 16 (开本 1/16)
    assert [c.chunk.kind for c in a.citations] == ["toc", "front"] and "印张：14" in a.citations[1].quote


def test_a_signature_line_above_the_date_is_the_signer() -> None:
    from rag.answer.facts import FrontMatter
    from rag.types import Chunk

    text = "要把学习作为一种责任。\n王某某\n2020年5月1日"
    chunk = Chunk("x", "b.txt", "body", ("序言",), text, 0, len(text), "序言", "序言", False)
    a = FrontMatter(None, [], [chunk]).answer("序言的作者是谁？")
    assert a is not None and a.text == "序言末尾署名“王某某”[1]，落款日期是2020年5月1日[2]。"
    assert [c.quote for c in a.citations] == ["王某某", "2020年5月1日"]
    # a sentence above the date is no signature, and there is no picture: not answered from here
    text = "要把学习作为一种责任。\n2020年5月1日"
    chunk = Chunk("y", "b.txt", "body", ("序言",), text, 0, len(text), "序言", "序言", False)
    assert FrontMatter(None, [], [chunk]).answer("序言的作者是谁？") is None


def test_refusal_pointer_names_the_chapter_or_section(facts: BookFacts) -> None:
    for q in QUESTIONS:
        if q.get("pointer"):
            assert squeeze(q["pointer"]) in squeeze(facts.pointer(q["question"]) or ""), q["id"]
    assert facts.pointer("明天北京的天气怎么样？") is None


def test_chinese_numbers_and_routes() -> None:
    assert [cn_int(s) for s in ("三", "十", "十二", "二十", "一百零五", "7", "x")] == [3, 10, 12, 20, 105, 7, None]
    assert [int_cn(n) for n in (1, 8, 10, 12, 20, 35)] == ["一", "八", "十", "十二", "二十", "三十五"]
    assert route("全书共几章？").kind == "count_chapters"
    assert route("第2章第3节从哪页开始").kind == "start_page"
    assert route("第三章讲的是什么").chapter == 3
    assert route("党的群众工作是什么") is None


def test_every_parsed_copyright_field_is_answered_by_its_name(facts: BookFacts) -> None:
    info = facts.info
    assert info is not None and len(info.fields) >= 20
    for name, value in info.fields.items():
        a = facts.answer(f"这本书的{name}是什么？")
        assert a is not None and a.citations, name
        if name != "电话":  # 「电话」 alone is ambiguous: the 邮购 number is the one readers ask for
            assert squeeze(value) in squeeze(a.text), (name, a.text)


def test_copyright_fields_in_a_readers_words(facts: BookFacts) -> None:
    for question, value in (("书要是缺页了，打哪个电话调换？", "58587660"), ("这本书是哪家厂印的？", "北京尚唐"),
                            ("这本书是什么时候印刷的？", "2015 年 2 月"), ("在哪儿能买到这本书？", "新华书店"),
                            ("向谁邮购这本书？", "人民东方图书销售中心")):
        a = facts.answer(question)
        assert a is not None and value in a.text, (question, a and a.text)
    assert "65250042" not in facts.answer("书要是缺页了，打哪个电话调换？").text  # 「电话」 asks for that line's number


def test_a_title_named_in_words_the_loaded_text_never_uses(facts: BookFacts) -> None:
    source = facts.unloaded_by_words("信访工作怎样抓好源头治理？")
    assert source is not None and source.title == "重要环节要抓好源头治理"
    newest = facts.unloaded_by_words("新形势下群众工作有哪些新特点？")
    assert newest is not None and newest.level == 2 and newest.title == "群众工作的新特点"  # the 节, not its 章
    for question in ("群众工作的核心是什么？", "群众工作文化在书中是怎么提的？", "什么是党的群众工作？"):
        assert facts.unloaded_by_words(question) is None, question


def test_a_topic_asked_by_its_chapter_names_the_chapter(pipeline) -> None:
    """「讲网络群工的那一章从哪页开始？」 asks for the 章 (第125页), not the 节 whose title matched best (第132页);
    the answer names both. 「……是哪一节」 still names the 节."""
    chapter = pipeline.ask("讲网络群工的那一章从哪页开始？")
    assert chapter.mode == "direct" and "第六章" in chapter.text and "第125页起" in chapter.text, chapter.text
    assert chapter.text.index("第125页") < chapter.text.index("第二节")
    section = pipeline.ask("讲网络群工的是哪一节？")
    assert "第二节 开辟“网络群工”新领域（第132页起）" in section.text and "其中" not in section.text


def test_the_works_the_footnotes_name(pipeline) -> None:
    """「书中引用了哪些书？」 lists what the loaded text's footnotes name, each cited on its page (it was refused);
    a question about one quotation (「书中引用了习近平的哪些话」) is still answered from the text."""
    a = pipeline.ask("书中引用了哪些书？")
    assert a.mode == "direct" and "《习近平谈治国理政》" in a.text and "第7页" in a.text, a.text
    assert [c.chunk.kind for c in a.citations] == ["footnote"]
    words = pipeline.ask("书中引用了习近平的哪些话？")
    assert words.mode != "direct" and any(c.chunk.kind == "body" for c in words.citations), words.text


def test_a_part_begins_with_its_first_statement(pipeline) -> None:
    """The first part of 第一章第一节 opens with the question the book asks itself (「什么是党的群众工作？」) and
    a lead ending in 「：」: the answer skips the question and gives the lead with the definition it introduces."""
    a = pipeline.ask("第一章第一节的第一部分讲什么？")
    quotes = [c.quote for c in a.citations]
    assert not any(q.rstrip().endswith("？") for q in quotes), a.text
    assert quotes[2].startswith("党的群众工作，是指以全体共产党员为工作者"), a.text
