"""Reading questions about the book's structure: chapter/section numbers, page numbers, 目录 topic matching.

Kept apart from rag/answer/direct.py (which composes the cited answers) so each stays short. Everything here is
rule-based and cheap: it runs on every question before retrieval.
"""

from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal, Sequence

from rag.text.numerals import CHAPTER_REF, PAGE_REF, SECTION_REF, chapter_at, cn_int
from rag.text.fold import bigrams, spaceless as squeeze
from rag.types import Chunk, TocEntry

_THIS_CHAPTER = re.compile(r"这一章|这章|本章|该章|此章|同一章|这一部分")
_THIS_SECTION = re.compile(r"这一节|这节|本节|该节|此节|它|其")
_NEXT = re.compile(r"下一(章|节)")
_LAST = re.compile(r"最后一(章|节)")
_PREV = re.compile(r"上一(章|节)")
_ASK_PAGE = re.compile(r"第几页|哪一?页|多少页|几页|页码|从第?几|起始页|始于|开始于|页数")
_COUNT_CHAPTERS = re.compile(r"(几|多少)个?章|章数")
_COUNT_SECTIONS = re.compile(r"(几|多少)个?节|节数")
_LIST_CHAPTERS = re.compile(r"(哪几|哪些|各|所有|每一?)章|目录|章节结构|篇章结构")
# 「这本书讲了哪些内容」「全书的主要内容」: the whole book's content, which its 目录 lists chapter by chapter
_BOOK_CONTENT = re.compile(r"(这本书|本书|全书|该书|这本教材|本教材|教材)(主要)?(讲|写|介绍|包括|包含|涉及|谈)(了|的是)?(哪些|什么|些什么)"
                           r"|(这本书|本书|全书|该书|这本教材|本教材|教材)的?(主要)?内容")
_PART = re.compile(r"第([一二三四五六七八九十\d]+)个?(?:部分|小节|问题|方面)")  # 「第一节的第三部分」
_NTH_PART = re.compile(r"第[一二三四五六七八九十\d]+个?部分")
_BOOK_PAGES = re.compile(r"(一共|总共|共有?|全书|整本书?|这本书|本书|该书|教材)(有)?(多少|几)页|总页数|多厚")
_WHICH_PART = re.compile(r"哪一?[章节]|哪个章节|哪个?部分|第几[章节]|什么章节|在哪里讲|哪里讲")
_QUOTED = re.compile(r"[“\"「『‘']([^”\"」』’']{2,30})[”\"」』’']")
_ASK_WORDS = re.compile(
    r"第几页|哪一?页|多少页|几页|页码|页数|请问|讲的是什么|讲了什么|讲什么|讲些什么|主要内容|内容是什么|标题|题目|叫什么|名称|是什么|关于什么|"
    r"谈什么|写了什么|哪几节|哪些节|包括|包含|分为|由哪些|介绍一下|介绍|概括|说说|谈谈|讲|的|了|是|什么|"
    r"哪些|哪一?[章节]|哪个章节|哪个?部分|第几[章节]|在哪里|哪里|怎么做|怎样|如何|怎么|为什么|有|呢|吗|啊|中|里|在|"
    r"这本书|本书|全书|书|教材|目录|一下|请|都|分别|分成|分|具体|各|每|一共|总共|共|几个|多少|几|个|哪|"
    r"起始|开始|始于|从|起|章|节"
)
_PUNCT = re.compile(r"[\s\W_]+")

LAST = -1  # 「最后一章」「第七章最后一节」: the last chapter, or the last section of the chapter
RouteKind = Literal[
    "count_chapters", "list_chapters", "count_sections", "afterword", "page", "topic", "start_page", "content",
    "book_pages"
]


@dataclass(frozen=True)
class Chapter:
    entry: TocEntry
    no: int
    sections: tuple[TocEntry, ...]


def chapters_of(toc: Sequence[TocEntry]) -> tuple[Chapter, ...]:
    """The 章 of the 目录 with their 节, in book order (后记 and other unnumbered rows are left out)."""
    out: list[Chapter] = []
    for e in toc:
        m = CHAPTER_REF.fullmatch(e.number) if e.level == 1 else None
        if m and cn_int(m.group(1)) is not None:
            out.append(Chapter(e, cn_int(m.group(1)) or 0, ()))
        elif e.level == 2 and out:
            out[-1] = Chapter(out[-1].entry, out[-1].no, out[-1].sections + (e,))
    return tuple(out)


def loaded_parts(body: Sequence[Chunk]) -> frozenset[str]:
    """「第一章」, 「第一章第一节」, 「后记」 … for every part of the book whose text is in the corpus."""
    parts: set[str] = set()
    for c in body:
        heads = [squeeze(h)[0] for h in c.section]
        at = chapter_at(heads)
        if at is not None:
            ch = CHAPTER_REF.match(heads[at])
            parts.add(ch.group(0))
            sec = SECTION_REF.match(heads[at + 1]) if len(heads) > at + 1 else None
            if sec:
                parts.add(ch.group(0) + sec.group(0))
        elif any(h.startswith("后记") for h in heads[:2]):
            parts.add("后记")
    return frozenset(parts)


@dataclass(frozen=True)
class Route:
    kind: RouteKind
    chapter: int | None = None
    section: int | None = None
    page: int | None = None
    part: int | None = None  # 「第一章第一节的第三部分」: a part of a 节 under the loaded text's own headings


def number_of(pattern: re.Pattern[str], text: str) -> int | None:
    """The number a pattern's first group holds in the text (「第四章」 → 4), or None."""
    m = pattern.search(text)
    return cn_int(m.group(1)) if m else None


def ask_residual(text: str) -> str:
    """The question without chapter/section/page references and question words: its remaining topic."""
    for pattern in (CHAPTER_REF, SECTION_REF, PAGE_REF, _THIS_CHAPTER, _THIS_SECTION, _NEXT, _PREV, _LAST):
        text = pattern.sub("", text)
    return _PUNCT.sub("", _ASK_WORDS.sub("", text))


def route(question: str, context: tuple[int | None, int | None] = (None, None)) -> Route | None:
    """What a structure question asks, or None for a question about the book's content.

    `context` is the (chapter, section) the previous turn was about, for 「这一章的第二节」「下一章」.
    """
    q = _PUNCT.sub("", unicodedata.normalize("NFKC", question))
    chapter, section = number_of(CHAPTER_REF, q), number_of(SECTION_REF, q)
    chapter, section = _with_context(q, chapter, section, context)
    small = len(ask_residual(q)) <= 2
    if "后记" in q and (small or _ASK_PAGE.search(q)):
        return Route("afterword")
    page = number_of(PAGE_REF, q)
    if page is not None and chapter is None and section is None:
        return Route("page", page=page)
    last = _LAST.search(q)
    if last and section is None and (chapter is not None or last.group(1) == "节" or "章" in last.group(0)):
        kind: RouteKind = "start_page" if _ASK_PAGE.search(q) else "content"
        if last.group(1) == "章":
            return Route(kind, LAST)
        return Route(kind, chapter if chapter is not None else LAST, LAST)
    if chapter is None:
        if _BOOK_PAGES.search(q) and small:
            return Route("book_pages")
        if (_LIST_CHAPTERS.search(q) or _BOOK_CONTENT.search(q)) and small:
            return Route("list_chapters")
        if _COUNT_CHAPTERS.search(q) and small:
            return Route("count_chapters")
        if (_WHICH_PART.search(q) or _ASK_PAGE.search(q)) and len(ask_residual(q)) >= 2:
            return Route("topic")  # 「讲网络群工的是哪一章」「“群众工作的新特点”这一节从第几页开始」
        return None
    part = number_of(_PART, q) if section is not None else None
    if part is not None and not _ASK_PAGE.search(q) and len(ask_residual(_PART.sub("", q))) <= 2:
        return Route("content", chapter, section, part=part)
    if _ASK_PAGE.search(q) and small:
        return Route("start_page", chapter, section)
    if _ASK_PAGE.search(q) and section is None:
        return Route("topic")  # 「第四章中讲群众权益的那一节从哪页开始」: a section named by its topic
    if section is None and _COUNT_SECTIONS.search(q) and small:
        return Route("count_sections", chapter)
    return Route("content", chapter, section) if small else None


def _with_context(q: str, chapter: int | None, section: int | None,
                  context: tuple[int | None, int | None]) -> tuple[int | None, int | None]:
    """Fill in the chapter (and section) a follow-up leaves implicit from the previous turn's context."""
    ctx_ch, ctx_sec = context
    if chapter is not None or ctx_ch is None:
        return chapter, section
    nxt, prev = _NEXT.search(q), _PREV.search(q)
    if nxt or prev:
        step = 1 if nxt else -1
        if (nxt or prev).group(1) == "章":
            return ctx_ch + step, None
        return ctx_ch, (ctx_sec or 0) + step
    if section is not None or _THIS_CHAPTER.search(q):
        return ctx_ch, section
    if _THIS_SECTION.search(q) or (ctx_sec is not None and _NTH_PART.search(q)):
        return ctx_ch, ctx_sec  # 「第二部分讲什么？」 after a question about a 节: that 节's part (not 「第二个方面」,
        # which follows a list as often)
    return chapter, section


@dataclass(frozen=True)
class Topic:
    entry: TocEntry
    score: float
    term: str  # the topic words as the title has them, for the answer sentence ("" when it has them otherwise)


def topic_match(question: str, toc: Sequence[TocEntry], min_score: float, chapter_first: bool = False,
                balanced: bool = False) -> Topic | None:
    """The 目录 row whose title best covers the question's topic (IDF-weighted char bigrams), if good enough;
    `balanced` also asks the title to be about little else (for refusal pointers)."""
    rows = tuple(e for e in toc if e.title)
    if not rows:
        return None
    for term in _quoted_terms(question, rows):
        hits = [e for e in rows if squeeze(term)[0] in squeeze(e.title)[0]]
        if hits:
            return Topic(_prefer(hits, question, chapter_first), 1.0, term)
    term = ask_residual(unicodedata.normalize("NFKC", question))
    grams = _grams(term)
    if not grams:
        return None
    titles, title_idf = _title_grams(rows)
    unseen = math.log(len(rows) + 1) + 0.1  # the IDF of a bigram no title has
    idf = {**{g: unseen for g in grams}, **title_idf}
    scored = [(_match(grams, t, idf, balanced), e) for t, e in zip(titles, rows)]
    best = max(s for s, _ in scored)
    if best < min_score:
        return None
    entry = _prefer([e for s, e in scored if s >= best - 1e-9], question, chapter_first)
    shown = term if term and squeeze(term)[0] in squeeze(entry.title)[0] else ""  # the title's own words only
    return Topic(entry, best, shown)


def _quoted_terms(question: str, rows: Sequence[TocEntry]) -> list[str]:
    """Terms the question quotes, then the book's own quoted terms (「“网络群工”」) the question uses unquoted."""
    asked = [m.group(1) for m in _QUOTED.finditer(question)]
    flat = squeeze(question)[0]
    named = [m.group(1) for e in rows for m in _QUOTED.finditer(e.title) if squeeze(m.group(1))[0] in flat]
    return asked + named


@lru_cache(maxsize=8)  # one 目录 per book: its bigrams and their IDF are the same for every question
def _title_grams(rows: tuple[TocEntry, ...]) -> tuple[list[set[str]], dict[str, float]]:
    titles = [_grams(e.title) for e in rows]
    n = len(rows) + 1
    return titles, {g: math.log(n / (1 + sum(g in t for t in titles))) + 0.1 for g in set().union(*titles)}


def _grams(text: str) -> set[str]:
    return bigrams(text.replace("的", ""))  # 「的」 only joins words: its bigrams would match by accident


def _match(question: set[str], title: set[str], idf: dict[str, float], balanced: bool) -> float:
    """IDF-weighted share of the question found in the title (recall); with `balanced`, the harmonic mean
    with the share of the title found in the question, so a long title that merely contains the topic
    (「努力提高做好新形势下群众工作的能力」) loses to one that is about it (「群众工作的新特点」)."""
    shared = sum(idf[g] for g in question & title)
    recall = shared / (sum(idf[g] for g in question) or 1)
    if not balanced:
        return recall
    precision = shared / (sum(idf[g] for g in title) or 1)
    return 2 * precision * recall / (precision + recall) if shared else 0.0


def _prefer(entries: Sequence[TocEntry], question: str, chapter_first: bool) -> TocEntry:
    """Among equally good rows: a 章 when the question asks 「哪一章」 (or by default), else the 节 row."""
    want_chapter = bool(re.search(r"哪一?章|第几章", question)) or chapter_first and "节" not in question
    ranked = sorted(entries, key=lambda e: (e.level != 1) if want_chapter else (e.level == 1))
    return ranked[0]


def pairs(text: str) -> frozenset[str]:
    """The character bigrams of a text, none across punctuation, 「的」 left out (it only joins words: its
    bigrams would match by accident)."""
    return frozenset(g for g in bigrams(squeeze(text)[0].replace("的", "")) if len(g) == 2)


def novel_match(question: str, titles: Sequence[tuple[TocEntry, frozenset[str]]], known: frozenset[str],
                least: int) -> TocEntry | None:
    """The 目录 row (of `titles`, with their `pairs`) sharing the most bigrams with the question that the
    loaded text (`known`) never uses — at least `least` of them; a 节 wins a tie with its 章."""
    asked = pairs(question) - known
    if len(asked) < least:
        return None
    score, _, entry = max(((len(asked & grams), e.level, e) for e, grams in titles), key=lambda x: x[:2],
                          default=(0, 0, None))
    return entry if score >= least else None
