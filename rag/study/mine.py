"""The book's own structure, read from its chunks: sentences, headings, lists (一、二、三 / （一）（二）,
第一…第四, 首先…最后), definitions (「X，是指……」) and the terms worth asking about.

Everything found is a `Span` of one chunk (offsets into `chunk.text`), so whatever an item asks can cite the
exact passage. Chunks overlap by a sentence: a sentence is kept once, in the first chunk that has it.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Iterable, Sequence

from rag.render import chunk_page_label
from rag.text.fold import squeeze
from rag.text.numerals import CHAPTER_RE, CN_DIGITS, HEADING_NUMBER, SECTION_RE, chapter_at
from rag.text.sentences import split_sentences
from rag.types import Chunk

MIN_SENTENCE = 10  # shorter "sentences" are lead-ins ("具体来说：") or fragments
ORDINAL = re.compile(rf"^第([{CN_DIGITS}]+)[，、,]")
SEQUENCE = ("首先", "其次", "再次", "最后")
_QUOTED = re.compile(r"“([^“”\s，。；：]{2,10})”")
# 「其根本目的是推动发展，实质是密切党群关系，核心是正确处理人民内部矛盾」: what a thing's role is
ROLES = ("根本目的", "根本任务", "第一要务", "首要问题", "实质", "核心", "关键", "基础", "宗旨")
_ROLE = re.compile(rf"({'|'.join(ROLES)})是([^，。；：、“”\s]{{2,14}}?)(?=[，。；]|$)")
_DEFINITION = re.compile(r"^(?:[^，。]{0,12}，)?([^，。；“”]{2,16})，?是指(.+?)[。；]?$")
_MARK = re.compile(r"^[◇◆●■□△▲]\s*")


@dataclass(frozen=True)
class Span:
    """A verbatim span of one chunk: `chunk.text[start:end]`."""

    chunk: Chunk
    start: int
    end: int

    @property
    def text(self) -> str:
        return self.chunk.text[self.start:self.end]

    @property
    def page(self) -> str:
        return chunk_page_label(self.chunk)

    def sub(self, start: int, end: int) -> Span:
        """The part [start, end) of this span's own text."""
        return Span(self.chunk, self.start + start, self.start + end)

    def find(self, text: str) -> Span | None:
        i = self.text.find(text)
        return None if i < 0 else self.sub(i, i + len(text))


@dataclass(frozen=True)
class Term:
    text: str
    sentence: Span
    kind: str  # "quoted" (a 提法 in quotation marks), "role" (what follows 实质是/核心是 …), "lexicon"


@dataclass(frozen=True)
class Listing:
    """Items the book lists under one topic: child headings, 第一…第四 paragraphs, or a definition's clauses."""

    kind: str  # "headings", "ordinal", "sequence", "definition", "roles"
    topic: str  # what the list is about (a heading's topic, or the term defined)
    items: tuple[Span, ...]


@dataclass
class Structure:
    """One book's (or one scope's) mined structure."""

    sentences: list[Span]
    headings: list[Span]
    terms: list[Term]
    listings: list[Listing]
    text: str  # the whole text of the book (all its chunks), squeezed: what an altered sentence must not be


def topic(heading: str) -> str:
    """「◇ 一、党的群众工作的基本概念和内涵」 → 「党的群众工作的基本概念和内涵」."""
    return squeeze(HEADING_NUMBER.sub("", _MARK.sub("", heading.strip())))


def is_chapter_text(c: Chunk) -> bool:
    return c.kind == "body" and chapter_at(c.section) is not None


def scope_chunks(chunks: Sequence[Chunk], book: str | None = None, section: str | None = None) -> list[Chunk]:
    """Body text under a 章 of the book (a book without 章 headings: all its body text), in book order,
    optionally only the chunks whose section path names `section` (「第一节」, 「第一章」, a heading's words)."""
    body = [c for c in chunks if c.kind == "body" and (book is None or c.book == book)]
    chapters = [c for c in body if is_chapter_text(c)]
    wanted = chapters or body
    if section:
        key = squeeze(section)
        wanted = [c for c in wanted if any(key in squeeze(s) for s in c.section)]
    return sorted(wanted, key=lambda c: (c.book, c.source, c.ordinal))


def mine(chunks: Sequence[Chunk], book_text: str, lexicon: Iterable[str] = ()) -> Structure:
    """The structure of these chunks (one book, in order); `book_text` is the book's whole text, `lexicon`
    its terms (the index's jieba user dictionary)."""
    sentences, headings = _sentences(chunks)
    return Structure(sentences, headings, _terms(sentences, lexicon), _listings(sentences, headings),
                     squeeze(book_text))


def _sentences(chunks: Iterable[Chunk]) -> tuple[list[Span], list[Span]]:
    seen: set[tuple[str, str]] = set()
    sentences, headings = [], []
    for c in chunks:
        for start, end in split_sentences(c.text):
            span = Span(c, start, end)
            key = (c.source, squeeze(span.text))
            if key in seen:
                continue
            seen.add(key)
            if _is_heading(span):
                headings.append(span)
            elif len(key[1]) >= MIN_SENTENCE:
                sentences.append(span)
    return sentences, headings


def _is_heading(span: Span) -> bool:
    line = squeeze(span.text)
    heads = {topic(h) for h in span.chunk.section}
    return topic(line) in heads or bool(CHAPTER_RE.match(line) or SECTION_RE.match(line)) and len(line) < 40


def _terms(sentences: Sequence[Span], words: Iterable[str]) -> list[Term]:
    """Terms to blank or swap: 提法 in quotation marks, what a role is (实质是X), rare lexicon words."""
    lexicon = [w for w in words if len(w) >= 3]
    df = Counter(w for s in sentences for w in {w for w in lexicon if w in s.text})
    headings = {topic(s.chunk.section[-1]) for s in sentences}
    rare = {w for w, n in df.items() if n <= max(2, len(sentences) // 12) and w not in headings}
    out: list[Term] = []
    for s in sentences:
        found: dict[str, str] = {}
        for m in _ROLE.finditer(s.text):
            found.setdefault(m.group(2), "role")
        for m in _QUOTED.finditer(s.text):
            found.setdefault(m.group(1), "quoted")
        for w in sorted(rare):
            if w in s.text and not any(w in f or f in w for f in found):
                found[w] = "lexicon"
        out += [Term(t, s, k) for t, k in found.items()]
    return out


def _listings(sentences: Sequence[Span], headings: Sequence[Span]) -> list[Listing]:
    out = _child_headings(headings)
    out += _ordinals(sentences)
    for s in sentences:
        d = _definition(s)
        if d:
            out.append(d)
        roles = list(_ROLE.finditer(s.text))
        if len(roles) >= 2:
            subject = _subject(s.text[: roles[0].start()])
            if subject:
                out.append(Listing("roles", subject, tuple(s.sub(m.start(), m.end()) for m in roles)))
    return out


def _subject(lead: str) -> str:
    """「党的群众工作，是党的事业……的基础，其」 → 「党的群众工作」: the words before the first comma."""
    head = lead.split("，", 1)[0]
    return head if 2 <= len(head) <= 12 and "是" not in head else ""


def _child_headings(headings: Sequence[Span]) -> list[Listing]:
    """Headings one level under the same parent (一、二、三 under a 节; （一）（二） under 三、)."""
    groups: dict[tuple[str, ...], list[Span]] = {}
    for h in headings:
        path = h.chunk.section
        if len(path) >= 2 and topic(h.text) == topic(path[-1]):
            groups.setdefault(path[:-1], []).append(h)
    return [Listing("headings", topic(parent[-1]), tuple(items))
            for parent, items in groups.items() if len(items) >= 2]


def _ordinals(sentences: Sequence[Span]) -> list[Listing]:
    """Paragraphs numbered 第一，第二，… (or 首先，其次，再次，最后) in one section, in order."""
    out: list[Listing] = []
    runs: dict[tuple[str, tuple[str, ...], str], list[Span]] = {}
    for s in sentences:
        m = ORDINAL.match(s.text)
        kind = "ordinal" if m else next(("sequence" for w in SEQUENCE if s.text.startswith(w + "，")), None)
        if kind is None:
            continue
        run = runs.setdefault((s.chunk.source, s.chunk.section, kind), [])
        lead = m.end() if m else s.text.index("，") + 1
        run.append(s.sub(lead, len(s.text)))
    for (_, section, kind), items in runs.items():
        if len(items) >= 2:
            out.append(Listing(kind, topic(section[-1]), tuple(items)))
    return out


def _definition(s: Span) -> Listing | None:
    """「X，是指A，B，……的工作。」 → X defined by its clauses A, B, …"""
    m = _DEFINITION.match(s.text)
    if not m:
        return None
    body_start = m.start(2)
    clauses = []
    for part in re.finditer(r"[^，；]+", m.group(2)):
        if len(part.group()) >= 4:
            clauses.append(s.sub(body_start + part.start(), body_start + part.end()))
    return Listing("definition", m.group(1), tuple(clauses)) if len(clauses) >= 2 else None
