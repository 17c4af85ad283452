"""Direct answers about the book itself, read from the parsed 版权页 fields and 目录 rows, cited to those pages.

Questions such as 「主编是谁」「共几章」「第三章讲什么」「后记在第几页」「讲“最后一公里”的是哪一节」 have one exact
answer in the front matter; retrieving passages for them would only paraphrase it. So do 「第三条是什么」「一共几条」
in a 章/节/条 text (its article lines) and 「书中引用了哪些书」 (its footnotes). `BookFacts.answer` returns None for
any other question, so the caller falls through to retrieval.
"""

from __future__ import annotations

import re
from typing import Sequence

from rag.answer.booknav import (LAST, Chapter, Topic, ask_residual, chapters_of, loaded_parts, novel_match,
                                number_of, pairs, route, topic_match)
from rag.answer.cite import entry_span, heading_cites, line_span, make_citation
from rag.answer.extract import LIST_QUESTION
from rag.answer.facts import Cited as _Cited, FrontMatter, marks as _marks, renumber
from rag.text.fold import spaceless
from rag.text.numerals import ARTICLE_RE, CHAPTER_REF, CN_NUM, SECTION_REF, chapter_at, cn_int, int_cn
from rag.text.sentences import split_sentences
from rag.types import Answer, Book, Chunk, Citation, TocEntry

POINTER_MATCH = 0.3  # balanced 目录 match needed to point a refused question at a chapter/section
# A question shares at least this many character bigrams with the title of a 目录 row whose text is not
# loaded, bigrams the loaded text never uses (「源头治理」: 源头, 头治): it is about that row. On the tune split
# no answerable question shares more than one such bigram with any title.
NOVEL_PAIRS = 2
NOT_LOADED = "该{what}的正文不在已载入的语料中，以上仅为目录信息。"
# An article question says little besides the article (「第三条是什么」「第三条规定了什么」): at most this many
# characters of other words (those of a book title named are gone already)
ARTICLE_WORDS = 2
_FOLD = re.compile(r"1\s*/\s*(\d{1,3})")  # 开本 「710 毫米 × 1000 毫米 1/16」: 16 pages to a 印张
_NUMBER = re.compile(r"\d{1,4}(\.\d{1,2})?")

class BookFacts:
    """The 版权页 and 目录 of one book, with its chunks they are cited from."""

    def __init__(self, book: Book, chunks: Sequence[Chunk]) -> None:
        self.book = book
        self.toc = tuple(book.toc)
        self.info = book.info
        info = book.info
        self.chapters = chapters_of(self.toc)
        self.back = tuple(e for e in self.toc if e.level == 1 and not e.number)  # 后记
        self.toc_chunks = tuple(c for c in chunks if c.kind == "toc")
        self.front_chunks = tuple(c for c in chunks if c.kind == "front")
        self.body = tuple(c for c in chunks if c.kind == "body")
        self.loaded = loaded_parts(self.body)
        self.front = FrontMatter(info, self.front_chunks + self.toc_chunks, chunks)
        self._novel: tuple[frozenset[str], tuple[tuple[TocEntry, frozenset[str]], ...]] | None = None
        self.articles = _articles(self.body)
        self.body_notes = tuple(c for c in chunks if c.kind == "footnote")

    # --- public ---------------------------------------------------------------------------------------------

    def answer(self, question: str, history: Sequence[str] = ()) -> Answer | None:
        """A direct, cited answer when the question is about the book's front matter; None otherwise."""
        found = (self.front.answer(question) or self._article(question, history) or self._sources(question)
                 or self._structure(question, history))
        if found is None or not found.citations:
            return None
        return Answer(question=question, text=found.text, citations=found.citations, mode="direct")

    def pointer(self, question: str) -> str | None:
        """The 目录 entry a question seems to be about, for a refusal: 「目录：第五章 …（第99页起）」."""
        hit = topic_match(question, self.toc, min_score=POINTER_MATCH, chapter_first=True, balanced=True)
        return self.pointer_to(hit.entry) if hit is not None else None

    def pointer_to(self, entry: TocEntry, note: bool = True) -> str:
        """「目录：第二章 …（第28页起）」, with 「（该部分正文不在已载入的语料中）」 when its text is not loaded
        (and `note`)."""
        where = self._path(entry)
        missing = "" if self._is_loaded(entry) or not note else "（该部分正文不在已载入的语料中）"
        return f"目录：{where}（第{entry.page}页起）{missing}" if entry.page else f"目录：{where}{missing}"

    def numbered_unloaded(self, question: str) -> TocEntry | None:
        """The 章 or 节 a question names by number (「第四章第二节」) when its text is not loaded."""
        ch_no = number_of(CHAPTER_REF, question)
        if ch_no is None:
            return None
        r = route(question)
        chapter = next((c for c in self.chapters if c.no == ch_no), None)
        if chapter is None:
            return None
        sec_no = number_of(SECTION_REF, question)
        entry = next((e for e in chapter.sections if cn_int(e.number[1:-1]) == sec_no), None) \
            if sec_no is not None else chapter.entry
        return entry if entry is not None and r is None and not self._is_loaded(entry) else None

    def unloaded_by_words(self, question: str) -> TocEntry | None:
        """The 目录 row whose text is not loaded that the question names in words the loaded text never uses."""
        if self._novel is None:  # the loaded text's bigrams, read once (only when some row is not loaded)
            rows = tuple((e, pairs(e.title)) for e in self.toc if e.title and not self._is_loaded(e))
            known = frozenset().union(*(pairs(c.text) for c in self.body)) if rows else frozenset()
            self._novel = (known, rows)
        known, rows = self._novel
        return novel_match(question, rows, known, NOVEL_PAIRS) if rows else None

    def is_loaded(self, entry: TocEntry) -> bool:
        return self._is_loaded(entry)

    def names_unloaded_part(self, question: str, min_score: float) -> bool:
        """The question matches a 目录 row whose text is not loaded, better than any row whose text is."""
        hit = topic_match(question, self.toc, min_score=min_score, chapter_first=True, balanced=True)
        return hit is not None and not self._is_loaded(hit.entry)

    # --- 脚注 ---------------------------------------------------------------------------------------------

    def _sources(self, question: str) -> _Cited | None:
        """「书中引用了哪些书？」: the works the loaded text's footnotes name, each cited on its page."""
        if not _CITED_WORKS.search(spaceless(question)[0]):
            return None
        notes = [c for c in self.body_notes if c.text.strip()]
        if not notes:
            return None
        cites = [c for i, n in enumerate(notes, 1) if (c := make_citation(i, n, n.text.strip(), 1.0))]
        rows = "；".join(f"{_MARK.sub('', c.quote).strip().rstrip('。')}{_marks([c])}"
                        + (f"（第{c.chunk.page}页的脚注）" if c.chunk.page else "") for c in cites)
        return _Cited(f"已载入的正文中，脚注注明出处的引文共{int_cn(len(cites))}处：{rows}。", tuple(cites))

    # --- 条 (a 章/节/条 text) ------------------------------------------------------------------------------

    def _article(self, question: str, history: Sequence[str] = ()) -> _Cited | None:
        """「第三条是什么」: that article, cited where it is printed, with its 章/节 (and page, or that the book
        has none); 「共有几条」: how many. None for a book without articles, and for 「第三条呢？」 right after a
        list question: there it is an item of that list."""
        if not self.articles:
            return None
        q = spaceless(question)[0]
        if history and LIST_QUESTION.search(history[-1]) and len(q) <= 8:
            return None
        m = _ARTICLE_Q.search(q)
        if m is not None and len(ask_residual(_ARTICLE_Q.sub("", q))) > ARTICLE_WORDS:
            return None  # 「第三条措施的要求是什么」: more than the article is asked
        if m is None:
            if not _COUNT_ARTICLES.search(q) or len(ask_residual(q).replace("条", "")) > ARTICLE_WORDS:
                return None  # 「……最起码要做到哪几条？」 asks for a list, not for the count of articles
            (first, fc, fa, fb), (last, lc, la, lb) = self.articles[0], self.articles[-1]
            cites = [c for c in (make_citation(1, fc, fc.text[fa:fb], 1.0),
                                 make_citation(2, lc, lc.text[la:lb], 1.0)) if c]
            text = f"全书共{int_cn(len(self.articles))}条（第{int_cn(first)}条至第{int_cn(last)}条）{_marks(cites)}。"
            return _Cited(text, tuple(cites))
        no = cn_int(m.group(1))
        found = next(((c, a, b) for n, c, a, b in self.articles if n == no), None)
        if found is None:
            last, lc, la, lb = self.articles[-1]
            cite = make_citation(1, lc, lc.text[la:lb], 1.0)
            if cite is None:
                return None
            return _Cited(f"全书共{int_cn(len(self.articles))}条，最后一条是第{int_cn(last)}条，"
                          f"没有第{int_cn(no)}条{_marks([cite])}。", (cite,))
        chunk, a, b = found
        cite = make_citation(1, chunk, chunk.text[a:b], 1.0)
        if cite is None:
            return None
        at = chapter_at(chunk.section)
        where = " › ".join(chunk.section[at:]) if at is not None else ""
        page = f"第{chunk.page}页" if chunk.page else ("本书没有印刷页码" if "页" in q else "")
        place = "，".join(x for x in (where, page) if x)
        line = chunk.text[a:b].strip().rstrip("。；;")
        return _Cited(f"{line}{_marks([cite])}。" + (f"（{place}）" if place else ""), (cite,))

    # --- 目录 ----------------------------------------------------------------------------------------------

    def _structure(self, question: str, history: Sequence[str]) -> _Cited | None:
        if not self.chapters:
            return None
        r = route(question, self.context(history))
        if r is None:
            return None
        simple = {"count_chapters": self._count_chapters, "list_chapters": self._list_chapters,
                  "afterword": self._afterword, "book_pages": self._book_pages}
        if r.kind in simple:
            return simple[r.kind]()
        if r.kind == "page" and r.page is not None:
            return self._page(r.page)
        if r.kind == "topic":
            return self._topic(question)
        chapter = self.chapters[-1] if r.chapter == LAST else next((c for c in self.chapters if c.no == r.chapter),
                                                                                   None)
        if chapter is None:
            return self._no_such_chapter(r.chapter) if r.chapter is not None else None
        if r.section is not None and r.part is not None:
            return self._part(chapter, r.section, r.part)
        if r.section is not None:
            return self._section(chapter, r.section, r.kind == "start_page")
        return self._chapter(chapter, start_page=r.kind == "start_page")

    def context(self, history: Sequence[str]) -> tuple[int | None, int | None]:
        """The (chapter, section) the latest earlier turn was about, for follow-ups like 「这一章的第二节」."""
        for i in range(len(history) - 1, -1, -1):
            r = route(history[i], self.context(history[:i]))
            if r is not None and r.chapter is not None:
                return r.chapter, r.section
            if r is not None and r.kind == "topic":
                hit = topic_match(history[i], self.toc, min_score=0.6)
                if hit is not None:
                    return self._numbers(hit.entry)
        return None, None

    def _numbers(self, entry: TocEntry) -> tuple[int | None, int | None]:
        for ch in self.chapters:
            if entry == ch.entry:
                return ch.no, None
            if entry in ch.sections:
                return ch.no, cn_int(entry.number[1:-1])
        return None, None

    def _no_such_chapter(self, no: int) -> _Cited | None:
        last = self.chapters[-1]
        cites = self._cite_entries([last.entry])
        text = (f"据目录，全书共{int_cn(len(self.chapters))}章，最后一章是{last.entry.heading}"
                f"{_since(last.entry)}，没有第{int_cn(no)}章{_marks(cites)}。")
        return _Cited(text, cites)

    def _count_chapters(self) -> _Cited | None:
        last = self.chapters[-1]
        cites = self._cite_entries([self.chapters[0].entry, last.entry])
        extra = "，另有后记" if self.back else ""
        n = len(self.chapters)
        span = f"{self.chapters[0].entry.number}至{last.entry.number}"
        text = f"据目录，全书共{int_cn(n)}章（{span}）{extra}{_marks(cites)}。"
        return _Cited(text, cites)

    def _list_chapters(self) -> _Cited | None:
        rows = "；".join(f"{c.entry.heading}{_at(c.entry)}" for c in self.chapters)
        cites = self._cite_entries([c.entry for c in self.chapters])
        return _Cited(f"据目录，全书共{int_cn(len(self.chapters))}章：{rows}{_marks(cites)}。", cites)

    def _book_pages(self) -> _Cited | None:
        """How long the book is: the 目录's last numbered row, and the page count the 版权页's 印张 and 开本 give
        (pages = 印张 × the 开本's fold, the trade's own reckoning), each cited."""
        numbered = [e for e in self.toc if e.page and e.page.isdigit()]
        if not numbered:
            return None
        last = numbered[-1]
        cites = list(self._cite_entries([last]))
        text = f"据目录，最后一项{last.heading}从第{last.page}页开始{_marks(cites)}"
        fields = self.info.fields if self.info else {}
        sheets, size = fields.get("印张", ""), fields.get("开本", "")
        fold = _FOLD.search(size)
        if _NUMBER.fullmatch(sheets) and fold:
            # one line showing both (cite_value splits on 、), else a line for each
            found = renumber(self.front.cite_value(f"{size}、{sheets}"), cites)
            if found:
                cites += [c for c in found if c not in cites]
                pages = round(float(sheets) * int(fold.group(1)))
                text += (f"；版权页标明印张{sheets}、开本{size}{_marks(found)}，按印张乘开数计，"
                         f"全书约{pages}页（含前面的序言、目录等）")
        return _Cited(text + "。", tuple(cites))

    def _afterword(self) -> _Cited | None:
        if not self.back:
            return None
        entry = self.back[-1]
        cites = self._cite_entries([entry])
        return _Cited(f"据目录，{entry.title}从第{entry.page}页开始{_marks(cites)}。", cites)

    def _chapter(self, ch: Chapter, start_page: bool = False) -> _Cited | None:
        e = ch.entry
        if start_page and not e.page:
            return None  # a text without page numbers: its chapters have none
        if start_page:
            cites = self._cite_entries([e])
            end = self._end_page(e)
            span = f"（至第{end}页）" if end else ""
            text = f"据目录，{e.heading}从第{e.page}页开始{span}{_marks(cites)}。"
        else:
            cites = self._cite_entries([e, *ch.sections])
            secs = "；".join(f"{s.heading}{_at(s)}" for s in ch.sections)
            head = f"据目录，{e.number}的标题是{_q(e.title)}{_since(e)}"
            body = f"，共{int_cn(len(ch.sections))}节：{secs}" if ch.sections else ""
            text = f"{head}{body}{_marks(cites)}。"
        if not self._is_loaded(e):
            text += NOT_LOADED.format(what="章")
        return _Cited(text, cites)

    def _section(self, ch: Chapter, no: int, start_page: bool) -> _Cited | None:
        sec = (ch.sections[-1] if ch.sections else None) if no == LAST else next(
            (s for s in ch.sections if cn_int(s.number[1:-1]) == no), None)
        if sec is None:
            return None
        if start_page and not sec.page:
            return None
        cites = self._cite_entries([sec])
        if start_page:
            end = self._end_page(sec)
            span = f"（至第{end}页）" if end else ""
            text = f"据目录，{ch.entry.number}{sec.heading}从第{sec.page}页开始{span}{_marks(cites)}。"
        else:
            text = (f"据目录，{ch.entry.number}{sec.number}的标题是{_q(sec.title)}{_since(sec)}，"
                    f"属于{ch.entry.heading}{_marks(cites)}。")
            parts = self._parts(ch.entry, sec)
            if len(parts) >= 2:  # the loaded text's own headings say what the 节 is made of
                heads = [make_citation(len(cites) + i, c, line, 1.0) for i, (line, c) in enumerate(parts, 1)]
                if all(heads):
                    rows = "；".join(f"{_bare(h.quote)}{_page_of(h.chunk)}{_marks([h])}" for h in heads)
                    text += f"已载入的正文分为{int_cn(len(heads))}部分：{rows}。"
                    cites = (*cites, *heads)
        if not self._is_loaded(sec):
            text += NOT_LOADED.format(what="节")
        return _Cited(text, cites)

    def _part(self, ch: Chapter, no: int, part: int) -> _Cited | None:
        """「第一章第一节的第三部分讲什么」: that part's heading in the loaded text and its first sentence."""
        sec = next((s for s in ch.sections if cn_int(s.number[1:-1]) == no), None)
        parts = self._parts(ch.entry, sec) if sec is not None else []
        if sec is None or not 0 < part <= len(parts):
            return self._section(ch, no, False) if sec is not None else None
        line, chunk = parts[part - 1]
        head = make_citation(1, chunk, line, 1.0)
        body = chunk.text[chunk.text.find(line) + len(line):]
        # its first statement: not a question the book asks itself (「什么是党的群众工作？」), and with the
        # sentence after a lead that ends in 「：」 (「……基本可以这样界定：」 and the definition)
        spans = [(a, b) for a, b in split_sentences(body) if not body[a:b].rstrip().endswith(("？", "?"))]
        first = spans[:2] if spans and body[spans[0][0]:spans[0][1]].rstrip().endswith(("：", ":")) else spans[:1]
        said = [c for i, (a, b) in enumerate(first, 2) if (c := make_citation(i, chunk, body[a:b], 1.0))]
        if head is None:
            return None
        text = f"{ch.entry.number}{sec.number}的第{int_cn(part)}部分是{_q(_bare(line))}{_page_of(chunk)}[1]"
        if not said:
            return _Cited(text + "。", (head,))
        quoted = "".join(f"{c.quote.strip().rstrip('。：:')}[{c.n}]" + ("：" if c.quote.rstrip().endswith(("：", ":"))
                                                                        else "。") for c in said)
        return _Cited(f"{text}，开头说：{quoted}", (head, *said))

    def _topic(self, question: str) -> _Cited | None:
        hit: Topic | None = topic_match(question, self.toc, min_score=0.6)
        if hit is None:
            return None
        if _ASKS_CHAPTER.search(question) and "节" not in question:  # 「讲……的那一章从哪页开始」: the 章
            chapter = next((c.entry for c in self.chapters if hit.entry in c.sections), None)
            if chapter is not None:
                return self._topic_row(chapter, hit.term, within=hit.entry)
        return self._topic_row(hit.entry, hit.term)

    def _topic_row(self, entry: TocEntry, term: str = "", within: TocEntry | None = None) -> _Cited | None:
        """「据目录，讲……的是<row>（第N页起）」; `within`: the 节 of that 章 that names it."""
        cites = self._cite_entries([entry] if within is None else [entry, within])
        what = f"“{term}”" if term else "这一内容"
        where = f"，其中的{within.heading}{_since(within)}" if within is not None else ""
        text = f"据目录，讲{what}的是{self._path(entry)}{_since(entry)}{where}{_marks(cites)}。"
        if not self._is_loaded(entry):
            text += NOT_LOADED.format(what="部分")
        return _Cited(text, cites)

    def topic_rows(self, question: str, history: Sequence[str] = ()) -> tuple[TocEntry, ...]:
        """The 目录 rows a 「讲……的是哪一节 / 从哪页开始」 question chooses among — the sections of the chapter it
        names, else every row — or () when it is no such question."""
        r = route(question, self.context(history)) if self.chapters else None
        if r is None or r.kind != "topic":
            return ()
        no = number_of(CHAPTER_REF, question)
        chapter = next((c for c in self.chapters if c.no == no), None)
        return chapter.sections if chapter else tuple(e for e in self.toc if e.title)

    def topic_answer(self, question: str, entry: TocEntry) -> Answer | None:
        """The direct answer naming `entry` (found by the caller, e.g. by meaning) for a 目录 topic question."""
        found = self._topic_row(entry)
        if found is None or not found.citations:
            return None
        return Answer(question=question, text=found.text, citations=found.citations, mode="direct")

    def _page(self, page: int) -> _Cited | None:
        numbered = [e for e in self.toc if e.page and e.page.isdigit()]
        if not numbered:
            return None
        last = numbered[-1]
        if page > int(last.page) + 16 or page < 1:
            cites = self._cite_entries([last])
            text = (f"本书没有第{page}页的内容：据目录，最后一项{last.heading}从第{last.page}页开始，"
                    f"全书到此为止{_marks(cites)}。")
            return _Cited(text, cites)
        entry = [e for e in numbered if int(e.page) <= page][-1:] or numbered[:1]
        cites = self._cite_entries(entry)
        text = f"据目录，第{page}页属于{self._path(entry[0])}（第{entry[0].page}页起）{_marks(cites)}。"
        if not self._is_loaded(entry[0]):
            text += NOT_LOADED.format(what="部分")
        return _Cited(text, cites)

    # --- helpers --------------------------------------------------------------------------------------------

    def _parts(self, chapter: TocEntry, sec: TocEntry) -> list[tuple[str, Chunk]]:
        """The headings one level below a 节 in its loaded text (「一、党的群众工作的基本概念和内涵」 …), each
        with the line it is printed on and the first chunk under it, in book order."""
        out: list[tuple[str, Chunk]] = []
        seen: set[str] = set()
        for c in self.body:
            at = chapter_at(c.section)
            path = c.section[at:] if at is not None else ()
            if (len(path) < 3 or path[2] in seen or not _flat(path[0]).startswith(_flat(chapter.number))
                    or not _flat(path[1]).startswith(_flat(sec.number))):
                continue
            seen.add(path[2])
            line = next((ln.strip() for ln in c.text.splitlines() if _flat(path[2]) in _flat(ln)), None)
            if line is None:  # the chunk does not print its heading (a later part of a long subsection)
                return []
            out.append((line, c))
        return out

    def _path(self, entry: TocEntry) -> str:
        return f"{entry.parent} › {entry.heading}" if entry.parent else entry.heading

    def _end_page(self, entry: TocEntry) -> str | None:
        """The page before the next entry of the same or a higher level (None when unknown)."""
        rows = list(self.toc)
        i = rows.index(entry)
        for nxt in rows[i + 1:]:
            numbered = bool(nxt.page and nxt.page.isdigit() and entry.page and entry.page.isdigit())
            if nxt.level <= entry.level and numbered:
                return str(max(int(entry.page), int(nxt.page) - 1))
        return None

    def _cite_headings(self, entries: Sequence[TocEntry]) -> tuple[Citation, ...]:
        return heading_cites(self.body, entries)

    def _is_loaded(self, entry: TocEntry) -> bool:
        if entry.level == 1:
            return (entry.number or entry.title) in self.loaded
        chapter = entry.parent.split()[0] if entry.parent else ""
        return f"{chapter}{entry.number}" in self.loaded

    def _cite_entries(self, entries: Sequence[TocEntry]) -> tuple[Citation, ...]:
        """One citation per 目录 chunk: the verbatim rows from the first to the last entry found in it; a book
        whose 目录 was made from its headings cites each heading line where its text begins."""
        if not self.toc_chunks:
            return self._cite_headings(entries)
        cites: list[Citation] = []
        for chunk in self.toc_chunks:
            spans = [s for s in (entry_span(chunk, e) for e in entries) if s]
            if not spans:
                continue
            start, end = line_span(chunk.text, min(s[0] for s in spans), max(s[1] for s in spans))
            cite = make_citation(len(cites) + 1, chunk, chunk.text[start:end], 1.0)
            cites += [cite] if cite else []
        return tuple(cites)


# 「书中引用了哪些书」「引了哪些文献」「脚注里有哪些出处」: the works the footnotes name
_CITED_WORKS = re.compile(r"(?:引用|引述|引)了?(?:哪些|什么|哪几本|哪本)(?:书|文献|著作|作品|资料)|脚注|注释.{0,4}出处")
_MARK = re.compile(r"^\^?[①-⑳]\s*")
_ARTICLE_Q = re.compile(rf"第([{CN_NUM}\d]+)条")
_COUNT_ARTICLES = re.compile(r"(?:几|多少)条")


def _articles(body: Sequence[Chunk]) -> list[tuple[int, Chunk, int, int]]:
    """Each article of a 章/节/条 text once, in order: (its number, the chunk, the span of its line)."""
    seen: dict[int, tuple[int, Chunk, int, int]] = {}
    for chunk in sorted(body, key=lambda c: (c.source, c.start)):
        for m in ARTICLE_RE.finditer(chunk.text):
            no = cn_int(m.group(1)[1:-1])
            end = chunk.text.find("\n", m.start(1))
            if no and no not in seen:
                seen[no] = (no, chunk, m.start(1), end if end >= 0 else len(chunk.text))
    return [seen[n] for n in sorted(seen)]


_ASKS_CHAPTER = re.compile(r"[哪那这]一?章|第几章|哪章")


def _since(entry: TocEntry) -> str:
    return f"（第{entry.page}页起）" if entry.page else ""


def _flat(text: str) -> str:
    return spaceless(text)[0]


def _bare(line: str) -> str:
    """A heading line without the list mark some layouts print before it (「◇ 一、……」)."""
    return line.lstrip("◇◆□■○●·•-* 　")


def _page_of(chunk: Chunk) -> str:
    if not chunk.page or not chunk.page.isdigit():
        return ""
    return f"（约第{chunk.page}页）" if chunk.page_estimated else f"（第{chunk.page}页）"


def _at(entry: TocEntry) -> str:
    return f"（第{entry.page}页）" if entry.page else ""


def _q(title: str) -> str:
    """Quote a title: “…”, or 「…」 when the title itself contains “…”."""
    return f"「{title}」" if "“" in title else f"“{title}”"
