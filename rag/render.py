"""Pure rendering helpers for the chat page: page labels, safe Markdown/HTML, Markdown export, feedback log.

Nothing here imports streamlit, so every rule about what the reader sees (「约第3页」, escaped book text, the
exported conversation) is tested without a browser. Book text and user text are only ever turned into escaped
Markdown or escaped HTML here; app.py never interpolates raw text into markup itself.
"""

from __future__ import annotations

import html
import json
import os
import re
import threading
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Iterable, Sequence

from collections import Counter

from rag.errors import REBUILD_COMMAND, IndexError_, ModelError
from rag.text.fold import find_span, spaceless
from rag.text.numerals import HEADING_NUMBER, article_at
from rag.types import Answer, Book, BookInfo, Chunk, Citation, TocEntry

_ROMAN = re.compile(r"^[ivxlcdm]+$", re.IGNORECASE)
# Every ASCII punctuation char may be backslash-escaped in CommonMark; escaping all of those that mean
# something to Markdown or to Streamlit's extensions (:red[..], :emoji:, $math$, ~~, ==) makes text inert.
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$:=^&\"'])")
_SPACE = re.compile(r"\s")
# Never shown: terminal escapes and other control characters, and the bidi controls that can make text read
# in another order than it is stored (a question pasted from anywhere, or a PDF, may carry them).
_INVISIBLE = re.compile("\x1b\\[[0-?]*[ -/]*[@-~]"
                        "|[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_FEEDBACK_LOCK = threading.Lock()
_NAMED_TERM = re.compile(r"(?:即|称为|简称|叫做)“([^“”\s]{2,8})”")  # a term the book defines


@dataclass(frozen=True)
class Turn:
    """One exchange of the conversation: the question as typed, and its Answer or a short error message."""

    question: str
    answer: Answer | None = None
    error: str | None = None


# --- page labels ------------------------------------------------------------------------------------------


def _numbered(label: str) -> bool:
    return label.isdigit() or bool(_ROMAN.match(label))


def page_label(page: str | None, page_end: str | None = None, estimated: bool = False) -> str:
    """「第3页」, 「约第3页」, 「第3–4页」; front matter by its name (「版权页」, 「目录」); 「页码不详」 when unknown."""
    if not page:
        return "页码不详"
    if not _numbered(page):
        if page_end and page_end != page and _numbered(page_end):
            return f"{page}至{'约' if estimated else ''}第{page_end}页"
        return page
    span = page if not page_end or page_end == page else f"{page}–{page_end}"
    return f"{'约' if estimated else ''}第{span}页"


def chunk_page_label(chunk: Chunk) -> str:
    return page_label(chunk.page, chunk.page_end, chunk.page_estimated)


def toc_label(entry: TocEntry) -> str:
    """A 目录 row as the sidebar shows it: heading, then its printed start page."""
    return f"{entry.heading}（第{entry.page}页）" if entry.page else entry.heading


def locator(c: Citation) -> str:
    """Where a citation is within its section: its printed page, or — in a text without page numbers (a
    章/节/条 document) — its article (「第六十条」); 「页码不详」 only when neither is known."""
    if c.chunk.page:
        return chunk_page_label(c.chunk)
    at = c.chunk.text.find(c.quote)
    return article_at(c.chunk.text, max(at, 0)) or chunk_page_label(c.chunk)


def where_of(c: Citation, book_title: str | None = None) -> str:
    """「《书名》 第三章 … › 第一节 …」: the book (when several are loaded) and the section path."""
    path = c.chunk.section_path or c.chunk.source
    return f"《{book_title}》 {path}" if book_title else path


def card_heading(c: Citation, book_title: str | None = None) -> str:
    """Markdown heading of a source card: 「**[n]** section path · **page**」 (the book's title first when
    several are loaded), flagged citations marked."""
    where = where_of(c, book_title)
    page = locator(c)
    head = f"**[{c.n}]** {escape_markdown(where)} · **{escape_markdown(page)}**" if where != page \
        else f"**[{c.n}]** **{escape_markdown(page)}**"
    return head + (" · :orange[:material/warning: 未能核实此引用]" if c.flagged else "")


def format_time(iso: str) -> str:
    """「2026-11-28 23:29 UTC」 from the manifest's ISO time; unparsable values are shown as they are."""
    try:
        t = datetime.fromisoformat(iso)
    except ValueError:
        return iso
    zone = t.tzname() or ""
    return f"{t:%Y-%m-%d %H:%M} {zone}".strip()


# --- safe text ------------------------------------------------------------------------------------------


def escape_markdown(text: str) -> str:
    """Text → Markdown that renders exactly that text: no links, images, HTML, math, code or directives.

    Leading indentation is dropped so an indented book line never becomes a code block, and line breaks are
    kept as hard breaks so paragraphs and verse keep their shape.
    """
    lines = [_MD_SPECIAL.sub(r"\\\1", line.strip()) for line in visible(text).splitlines()]
    return "  \n".join(lines)


def _find_loose(text: str, quote: str) -> tuple[int, int] | None:
    """Span of `quote` in `text`, exact first, then ignoring whitespace and width (a quote may span a
    wrapped line)."""
    if not quote:
        return None
    i = text.find(quote)
    return (i, i + len(quote)) if i >= 0 else find_span(text, quote)


def highlight_html(text: str, quote: str | None) -> str:
    """The passage as escaped HTML with the quoted sentence in <mark>; nothing of `text` can become markup."""
    span = _find_loose(text, quote or "")
    if span is None:
        return f'<div class="rag-passage">{_html_text(text)}</div>'
    a, b = span
    body = f"{_html_text(text[:a])}<mark>{_html_text(text[a:b])}</mark>{_html_text(text[b:])}"
    return f'<div class="rag-passage">{body}</div>'


def _html_text(text: str) -> str:
    return html.escape(visible(text), quote=True).replace("\n", "<br>")


def visible(text: str) -> str:
    """`text` without control characters, terminal escapes and bidi controls (tabs and line breaks kept)."""
    return _INVISIBLE.sub("", text)


# --- the book and its sections ------------------------------------------------------------------------------

BOOK_FIELDS = ("书名", "主编", "出版社", "出版时间", "ISBN")


def book_facts(info: BookInfo | None) -> list[tuple[str, str]]:
    """The copyright-page fields the empty page shows, in a fixed order, only those present."""
    if info is None:
        return []
    return [(name, info.fields[name]) for name in BOOK_FIELDS if info.fields.get(name)]


def _matches(heading: str, wanted: str) -> bool:
    a, b = spaceless(heading)[0], spaceless(wanted)[0]
    return bool(b) and (a == b or a.startswith(b) or b.startswith(a) and len(a) > 3)


def section_chunks(chunks: Sequence[Chunk], entry: TocEntry) -> list[Chunk]:
    """Body chunks under a 目录 entry, in book order. A 节 must also sit under its 章 (every 章 has a 第一节)."""
    found = []
    for c in chunks:
        if c.kind == "toc" or not any(_matches(h, entry.heading) for h in c.section):
            continue
        if entry.parent and not any(_matches(h, entry.parent) for h in c.section):
            continue
        found.append(c)
    return sorted(found, key=lambda c: (c.source, c.ordinal, c.start))


def reading_text(chunks: Sequence[Chunk]) -> list[tuple[Chunk, str]]:
    """Consecutive chunks as continuous reading: each chunk's text without the sentences it repeats from the
    previous chunk of the same document (chunks overlap by a sentence; offsets say exactly by how much)."""
    out: list[tuple[Chunk, str]] = []
    prev: Chunk | None = None
    for c in chunks:
        cut = prev.end - c.start if prev is not None and prev.source == c.source and prev.end > c.start else 0
        text = c.text[cut:].strip()
        if text:
            out.append((c, text))
        prev = c if prev is None or c.source != prev.source or c.end > prev.end else prev
    return out


def context_around(chunk: Chunk, neighbours: Sequence[Chunk]) -> list[tuple[str, Chunk, str]]:
    """(「上文」/「下文」, neighbour, text) around a cited chunk, without the overlap its card already shows."""
    out = []
    for nb in sorted(neighbours, key=lambda c: c.ordinal):
        if nb.source != chunk.source or nb.id == chunk.id:
            continue
        if nb.ordinal < chunk.ordinal:
            role, text = "上文", nb.text[: max(0, chunk.start - nb.start)] if nb.end > chunk.start else nb.text
        else:
            role, text = "下文", nb.text[max(0, chunk.end - nb.start):] if nb.start < chunk.end else nb.text
        if text.strip():
            out.append((role, nb, text.strip()))
    return out


def span_label(chunks: Sequence[Chunk]) -> str:
    """Pages covered by a run of chunks, e.g. 「约第1–13页」."""
    if not chunks:
        return "页码不详"
    first, last = chunks[0], chunks[-1]
    estimated = any(c.page_estimated for c in chunks)
    return page_label(first.page, last.page_end or last.page, estimated)


# --- export and feedback -----------------------------------------------------------------------------------


def citation_line(c: Citation, book_title: str | None = None) -> str:
    flag = "（未能核实）" if c.flagged else ""
    return f"[{c.n}] {where_of(c, book_title)} · {locator(c)}{flag}"


def export_markdown(turns: Iterable[Turn], title: str = "教材问答", now: datetime | None = None) -> str:
    """The conversation with every citation (section, page, quoted sentence) as a Markdown document."""
    now = now or datetime.now()
    out = [f"# {escape_markdown(title)} — 对话记录", "", f"导出时间：{now:%Y-%m-%d %H:%M}", ""]
    for i, turn in enumerate(turns, 1):
        out += [f"## 问题 {i}", "", escape_markdown(turn.question), ""]
        if turn.error or turn.answer is None:
            out += [f"> 出错：{escape_markdown(turn.error or '没有回答')}", ""]
            continue
        a = turn.answer
        out += ["**回答**" + ("（未找到依据）" if a.refused else "") + "：", "", escape_markdown(a.text), ""]
        if a.pointer:
            out += [f"可参阅：{escape_markdown(a.pointer)}", ""]
        if a.citations:
            out += ["**出处**：", ""]
            out += [f"- {escape_markdown(citation_line(c))}：“{escape_markdown(c.quote)}”"
                    for c in a.citations]
            out.append("")
    return "\n".join(out)


def feedback_record(turn: Turn, rating: int | None, now: datetime | None = None) -> dict[str, object]:
    a = turn.answer
    return {
        "timestamp": (now or datetime.now().astimezone()).isoformat(timespec="seconds"),
        "rating": rating,  # st.feedback thumbs: 1 = 👍, 0 = 👎, None = cleared
        "question": turn.question,
        "answer": a.text if a else None,
        "mode": a.mode if a else None,
        "refused": a.refused if a else None,
        "chunk_ids": [c.chunk.id for c in a.citations] if a else [],
    }


def append_feedback(path: Path, record: dict[str, object]) -> None:
    """Append one JSON line and fsync it: a rating survives a crash, and concurrent sessions never interleave
    within a line (one write of a whole line in O_APPEND mode). A write that fails part-way (a full disk) is
    cut back off the file, so the log never keeps half a line; the OSError goes to the caller."""
    path.parent.mkdir(parents=True, exist_ok=True)
    line = (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")
    with _FEEDBACK_LOCK:  # sessions of this process append one at a time, so a cut-back cuts only our bytes
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            _write_line(fd, line)
        finally:
            os.close(fd)


def _write_line(fd: int, line: bytes) -> None:
    done = 0
    try:
        while done < len(line):  # os.write may write less than asked (a signal, a nearly full disk)
            done += os.write(fd, line[done:])
        os.fsync(fd)
    except OSError:
        if 0 < done < len(line):
            end = os.lseek(fd, 0, os.SEEK_CUR)
            if os.fstat(fd).st_size == end:  # nothing appended after our piece
                os.ftruncate(fd, end - done)
        raise


# --- what the page offers for the loaded books --------------------------------------------------------------

def library_title(books: Sequence[Book]) -> str:
    """「《甲》」 for one book, 「《甲》等 N 本书」 for a library, 「教材问答」 with none."""
    titles = [b.title for b in books if b.title]
    if not titles:
        return "教材问答"
    return f"《{titles[0]}》" + (f"等 {len(titles)} 本书" if len(titles) > 1 else "")


def example_questions(books: Sequence[Book], chunks: Sequence[Chunk], limit: int = 6) -> list[str]:
    """Questions the loaded books can answer, made from their own structure: topics of headings whose text is
    loaded, a term the book puts in quotation marks, a 版权页 field and the 目录."""
    topics = dict.fromkeys(
        HEADING_NUMBER.sub("", c.section[-1]).strip() for c in chunks
        if c.kind == "body" and len(c.section) >= 3)
    asks = [f"{t}是什么？" if not t.endswith("作用") else f"{t}有哪些？" for t in topics if 4 <= len(t) <= 16]
    named = [m for c in chunks if c.kind == "body" for m in _NAMED_TERM.findall(c.text)]
    terms = [t for t, _ in Counter(named).most_common(1)]
    book = next(iter(books), None)
    facts = []
    if book and book.info and book.info.fields.get("主编"):
        facts.append("这本书的主编是谁？")
    chapters = [e for e in book.toc if e.level == 1 and e.number] if book else []
    if chapters:
        facts += [f"{chapters[-1].number}从第几页开始？", "全书共有几章？"]
    found = asks[:2] + [f"什么是“{t}”？" for t in terms] + asks[2:3] + facts
    return list(dict.fromkeys(found))[:limit]


def failure_help(exc: Exception, rebuild: str) -> tuple[str, str]:
    """(title, command) the page shows when the pipeline cannot load: an index problem names the rebuild
    command, a model problem the model command."""
    if isinstance(exc, IndexError_):
        return "索引不可用：缺失、损坏或与当前模型/设置不一致。", rebuild
    if isinstance(exc, ModelError):
        return "嵌入模型不可用。", "make model\n# 或：.venv/bin/python -m rag model"
    return "无法加载问答服务。", rebuild


def rebuild_hint(command: str) -> str:
    """The rebuild command as the page shows it (`make index`, with its python -m equivalent)."""
    return f"{command}\n# 或：.venv/bin/python -m rag build" if command == REBUILD_COMMAND else command
