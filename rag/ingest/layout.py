"""Lines of a book → one reading-order text with pages and blocks (headings, paragraphs, captions, footnotes).

The Document text is *re-laid*, not a copy of the file: a sentence split by a page break, a photo or a
footnote is joined back together, and what interrupted it (caption, photo credit, image description,
footnote) is moved to the end of its section as a block of its own kind, remembering the page it was printed
on. Running headers/footers, page-number lines, page markers and repeated title pages are dropped. So every
body chunk is one contiguous slice of the text, and a citation's span is exact.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Sequence

from rag.ingest.front import AFTERWORD_RE, PREFACE_RE, Zone, anchor_page, find_front_matter, parse_toc
from rag.text.numerals import CHAPTER_RE, SECTION_RE
from rag.ingest.pages import ROMAN, PageTable, RawPage, strip_running_lines
from rag.text.fold import is_cjk, squeeze
from rag.text.sentences import CLAUSE_END, ends_sentence
from rag.types import Block, Kind, Page

_MD_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
_BULLET_HEADING = re.compile(r"^[◇◆□■●○]\s*(\S.*)$")
_CN_ITEM = re.compile(r"^[一二三四五六七八九十]+、")
_CN_PAREN = re.compile(r"^[（(][一二三四五六七八九十]+[）)]")
_CAPTION = re.compile(r"^[▲△]|^图\s*\d+([-—.．]\d+)?\s")
_CREDIT = re.compile(r"^[（(][^（()）]{1,40}(/|／)?(摄|供图|绘)[）)]$")
_FOOTNOTE = re.compile(r"^\^[①-⑳]|^[①-⑳]\s*(《|\S.*(出版社|\d{4}\s*年\s*版|第\s*\d+\s*页))|^注\s*[:：]")
_PAGE_NUMBER = re.compile(rf"^[-—–\s]*(\d{{1,4}}|{ROMAN})[-—–\s]*$", re.I)
_LIST_ITEM = re.compile(r"^([-*•·]\s|\d+[.、)）]|[（(]\d+[）)]|[①-⑳])")
SHORT = 40  # a heading line is at most this long


@dataclass(frozen=True)
class Layout:
    original: str
    pages: tuple[Page, ...]
    blocks: tuple[Block, ...]
    toc_text: str = ""
    copyright_text: str = ""


@dataclass
class _Line:
    text: str
    page: int  # index into the PageTable, -1 when unknown
    kind: str = "body"  # blank, body, heading, cont, caption, credit, footnote, skip
    level: int = 0
    label: str = ""


@dataclass
class _Writer:
    """Appends text and records blocks and the offsets where each page's text begins."""

    table: PageTable
    parts: list[str] = field(default_factory=list)
    pos: int = 0
    blocks: list[Block] = field(default_factory=list)
    marks: list[tuple[int, int]] = field(default_factory=list)
    para: tuple[int, tuple[str, ...]] | None = None
    para_open: bool = False
    deferred: list[tuple[str, str, int]] = field(default_factory=list)

    def write(self, s: str, page: int = -1) -> None:
        if page >= 0 and (not self.marks or self.marks[-1][1] != page):
            self.marks.append((self.pos, page))
        self.parts.append(s)
        self.pos += len(s)

    def newline(self) -> None:
        if self.pos and not self.parts[-1].endswith("\n"):
            self.write("\n")

    def block(self, kind: Kind, section: tuple[str, ...], text: str, page: int,
              heading: bool = False) -> None:
        self.close()
        self.newline()
        start = self.pos
        self.write(text, page)
        self.blocks.append(Block(kind, section, start, self.pos, is_heading=heading))

    def body(self, text: str, page: int, section: tuple[str, ...]) -> None:
        """A body line: continues the open paragraph when that one stopped mid-sentence, else starts one."""
        if self.para and self.para_open and self.para[1] == section and not _LIST_ITEM.match(text):
            last = self.parts[-1][-1]
            self.write(" " if _ascii_word(last) and _ascii_word(text[0]) else "", -1)
            self.write(text, page)
        else:
            self.close()
            self.newline()
            self.para = (self.pos, section)
            self.write(text, page)
        self.para_open = not ends_sentence(text, CLAUSE_END)

    def close(self) -> None:
        if self.para:
            self.blocks.append(Block("body", self.para[1], self.para[0], self.pos))
        self.para, self.para_open = None, False

    def flush(self, section: tuple[str, ...]) -> None:
        """Captions, credits and footnotes held back from the section's flow, each as its own block."""
        self.close()
        for kind, text, page in self.deferred:
            self.newline()
            start = self.pos
            self.write(text)  # no page mark: the text flow's pages stay as they are
            label, source = self.table.entry(page)
            self.blocks.append(Block(kind, section, start, self.pos, page=label,  # type: ignore[arg-type]
                                     page_estimated=source == "estimated"))
        self.deferred.clear()


def _ascii_word(ch: str) -> bool:
    return ch.isascii() and ch.isalnum()


def lay_out(raw_pages: Sequence[RawPage], markdown: bool = False) -> Layout:
    """Re-lay the pages of one file; see the module docstring for what moves where."""
    raw_pages = strip_running_lines(list(raw_pages))
    table = PageTable.from_raw(raw_pages)
    lines = [_Line(t, k if table.explicit else -1)
             for k, rp in enumerate(raw_pages) for t in rp.text.split("\n")]
    zones, body_start = find_front_matter([ln.text for ln in lines])
    cjk = _mostly_cjk("".join(ln.text for ln in lines))
    for i in range(len(lines)):
        _classify(lines, i, markdown, cjk)
    toc = parse_toc(_zone_text(lines, zones, "目录"))
    if not table.explicit:
        first = next((ln.label for ln in lines[body_start:] if ln.kind == "heading"), "")
        _infer_pages(lines, zones, body_start, table, anchor_page(toc, first))
    w = _Writer(table)
    for zone in zones:
        _emit_zone(w, lines, zone)
    _emit_flow(w, lines[body_start:], ())
    original = "".join(w.parts)
    return Layout(original, table.pages(w.marks, len(original)), tuple(w.blocks),
                  _zone_text(lines, zones, "目录"), _zone_text(lines, zones, "版权页"))


def _zone_text(lines: list[_Line], zones: list[Zone], name: str) -> str:
    zone = next((z for z in zones if z.name == name), None)
    return "\n".join(ln.text for ln in lines[zone.start:zone.end]) if zone else ""


def _mostly_cjk(text: str) -> bool:
    letters = [ch for ch in text if ch.isalpha()]
    return bool(letters) and sum(map(is_cjk, letters)) > 0.3 * len(letters)


def _classify(lines: list[_Line], i: int, markdown: bool, cjk: bool) -> None:
    """Set kind/level/label of line i (front-matter zones are re-labelled by their emitter)."""
    ln = lines[i]
    t = ln.text.strip()
    if ln.kind == "cont":
        return
    if not t:
        ln.kind = "blank"
    elif _heading(lines, i, markdown):
        ln.kind = "heading"
    elif _CAPTION.match(t) or (cjk and _image_description(t)):
        ln.kind = "caption"
    elif _CREDIT.match(t):
        ln.kind = "credit"
    elif _FOOTNOTE.match(t):
        ln.kind = "footnote"
    elif _PAGE_NUMBER.match(t):
        ln.kind = "skip"


def _image_description(t: str) -> bool:
    """An English sentence inside a Chinese book: PDF extraction's description of a picture or signature."""
    latin = sum(ch.isascii() and ch.isalpha() for ch in t)
    return len(t) >= 30 and latin > 0.6 * len(t.replace(" ", "")) and " " in t


def _heading(lines: list[_Line], i: int, markdown: bool) -> bool:
    ln, t = lines[i], lines[i].text.strip()
    m = _MD_HEADING.match(t) if markdown else None
    if m:
        ln.level, ln.label = len(m.group(1)), squeeze(m.group(2))
        return True
    for level, rx in ((1, CHAPTER_RE), (2, SECTION_RE)):
        m = rx.match(t)
        if m and len(t) <= 60 and not ends_sentence(t):
            title = m.group(2) or _take_title(lines, i)
            ln.level, ln.label = level, f"{squeeze(m.group(1))} {squeeze(title)}".strip()
            return True
    if AFTERWORD_RE.match(t) or PREFACE_RE.match(t):
        ln.level, ln.label = 1, squeeze(t)
        return True
    if len(t) > SHORT or ends_sentence(t, CLAUSE_END):
        return False
    m = _BULLET_HEADING.match(t)
    if m and (_CN_ITEM.match(m.group(1)) or _CN_PAREN.match(m.group(1))):
        t = m.group(1)
    if _CN_ITEM.match(t) or _CN_PAREN.match(t):
        ln.level, ln.label = (3 if _CN_ITEM.match(t) else 4), squeeze(t)
        return True
    return False


def _take_title(lines: list[_Line], i: int) -> str:
    """"第一章" alone on its line: its title is the next short line within a few blank lines."""
    for j in range(i + 1, min(i + 6, len(lines))):
        t = lines[j].text.strip()
        if not t:
            continue
        if len(t) <= SHORT and not ends_sentence(t, CLAUSE_END) and not CHAPTER_RE.match(t):
            lines[j].kind = "cont"
            return t
        break
    return ""


def _infer_pages(lines: list[_Line], zones: list[Zone], body_start: int, table: PageTable,
                 anchor: str | None) -> None:
    """No page breaks in the file: name the front matter, count body pages where a blank line splits a
    sentence, starting from the 目录's page for the first chapter. No 目录 → no page labels at all."""
    for zone in zones:
        page = table.add(zone.name, "named")
        for ln in lines[zone.start:zone.end]:
            ln.page = page
    if anchor is None and not zones:
        return
    number = int(anchor) if anchor and anchor.isdigit() else 1
    page = table.add(str(number), "estimated")
    open_, gap, blank = False, [], False
    for ln in lines[body_start:]:
        if ln.kind == "blank":
            blank = True
            continue
        if ln.kind in ("caption", "credit", "footnote", "skip"):
            gap.append(ln)
            continue
        if ln.kind == "body" and open_ and blank:
            number += 1
            new = table.add(str(number), "estimated")
            last_note = max((k for k, g in enumerate(gap) if g.kind == "footnote"), default=-1)
            for k, g in enumerate(gap):
                g.page = page if k <= last_note else new
            gap, page = [], new
        for g in gap:
            g.page = page
        ln.page, gap, blank = page, [], False
        open_ = ln.kind == "body" and not ends_sentence(ln.text, CLAUSE_END)
    for g in gap:
        g.page = page


def _emit_zone(w: _Writer, lines: list[_Line], zone: Zone) -> None:
    """Front matter kept line by line: 版权页 and 封面 by blank-line groups, the 目录 by chapter."""
    part = lines[zone.start:zone.end]
    if zone.kind == "skip":
        return
    if zone.kind == "body":
        _emit_flow(w, part, (zone.name,))
        return
    kind: Kind = "toc" if zone.kind == "toc" else "front"
    group: list[_Line] = []
    end = _Line("", -1, "blank")
    for ln in part + [end]:
        t = ln.text.strip()
        new_chapter = kind == "toc" and (CHAPTER_RE.match(t) or AFTERWORD_RE.match(t.split("·")[0]))
        if group and ((not t and kind == "front") or new_chapter or ln is end):
            w.block(kind, (zone.name,), "\n".join(g.text.strip() for g in group), group[0].page)
            group = []
        if t:
            group.append(ln)


def _emit_flow(w: _Writer, part: list[_Line], root: tuple[str, ...]) -> None:
    """Headings, paragraphs and held-back captions/footnotes of running text under the section path `root`."""
    stack: list[tuple[int, str]] = []
    section = root
    last = ""
    for i, ln in enumerate(part):
        t = ln.text.strip()
        if ln.kind == "heading":
            w.flush(section)
            stack = [s for s in stack if s[0] < ln.level] + [(ln.level, ln.label)]
            section = _section(root, stack)
            w.block("body", section, _heading_text(part, i), ln.page, heading=True)
        elif ln.kind == "body":
            w.body(t, ln.page, section)
        elif ln.kind == "credit" and last == "caption" and w.deferred:
            kind, text, page = w.deferred[-1]
            w.deferred[-1] = (kind, f"{text}\n{t}", page)
        elif ln.kind in ("caption", "footnote", "credit"):
            w.deferred.append(("footnote" if ln.kind == "footnote" else "caption", t, ln.page))
        if ln.kind != "blank":
            last = ln.kind
    w.flush(section)


def _section(root: tuple[str, ...], stack: list[tuple[int, str]]) -> tuple[str, ...]:
    labels = tuple(label for _, label in stack)
    if root and labels and labels[0] == root[0]:
        return labels
    return root + labels


def _heading_text(part: list[_Line], i: int) -> str:
    """The heading as printed; a chapter number alone on its line gets its title line appended."""
    t = part[i].text.strip()
    for x in part[i + 1:i + 6]:
        if x.kind == "cont":
            return f"{t} {x.text.strip()}"
        if x.kind != "blank":
            break
    return t
