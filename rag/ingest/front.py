"""The book's front matter as data: where 封面/版权页/序言/目录 lie, the 目录 rows and the 版权页 fields.

Direct answers ("这本书的定价是多少？") and the UI's table of contents read these instead of searching prose.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from rag.text.fold import normalize, squeeze
from rag.text.numerals import CHAPTER_RE, SECTION_RE
from rag.types import BookInfo, TocEntry

TOC_TITLE_RE = re.compile(r"^\s*目\s*录\s*$")
PREFACE_RE = re.compile(r"^\s*(序\s*言|前\s*言|序|出版说明|编者的话)\s*$")
AFTERWORD_RE = re.compile(r"^\s*(后\s*记|结\s*束\s*语|附\s*录.*)\s*$")
# A 目录 row ends with its page number, usually after a dot leader: "第一节 ……·····\t001".
_TOC_ROW_RE = re.compile(r"^(?P<body>.*?)[\s·.…．•]*?(?P<page>\d{1,4})\s*$")
_LEADER_RE = re.compile(r"[·.…．•]{2,}\s*$")
_COPYRIGHT_HINT = re.compile(r"责任编辑|图书在版编目|ISBN|CIP|版权所有|定价")


@dataclass(frozen=True)
class Zone:
    """A named stretch of front matter, as line indices [start, end) into the document's lines."""

    name: str  # 封面, 扉页, 版权页, 序言, 目录
    kind: str  # front, toc, body (the 序言 is prose), skip (a repeated title page)
    start: int
    end: int


def find_front_matter(lines: list[str]) -> tuple[list[Zone], int]:
    """Zones of the front matter and the index of the first body line (0 when there is no front matter).

    Recognised layout (the excerpt's, and the usual one of Chinese books): cover, optional repeated title
    page, 版权页 (found by its keywords), 序言/前言, 目录 (a heading followed by rows with page numbers).
    """
    toc = _find_toc(lines)
    head = lines[: toc[0]] if toc else lines
    preface = next((i for i, ln in enumerate(head) if PREFACE_RE.match(ln)), None)
    if toc is None and preface is None:
        return [], 0
    body_start = toc[1] if toc else _next_heading(lines, preface + 1)
    zones: list[Zone] = []
    head_end = min(x for x in (preface, toc[0] if toc else None) if x is not None)
    zones += _cover_and_copyright(lines, 0, head_end)
    if preface is not None:
        zones.append(Zone("序言", "body", preface, toc[0] if toc and toc[0] > preface else body_start))
    if toc:
        zones.append(Zone("目录", "toc", toc[0], toc[1]))
    zones.sort(key=lambda z: z.start)
    return [z for z in zones if z.end > z.start], body_start


def _find_toc(lines: list[str]) -> tuple[int, int] | None:
    """[start, end) of the 目录: its title line and the rows (with continuation lines) after it."""
    start = next((i for i, ln in enumerate(lines) if TOC_TITLE_RE.match(ln)), None)
    if start is None:
        return None
    end, blanks = start + 1, 0
    for i in range(start + 1, len(lines)):
        ln = lines[i].strip()
        if not ln:
            blanks += 1
            continue
        if _toc_row(ln) is not None:
            end, blanks = i + 1, 0
            continue
        nxt = lines[i + 1].strip() if i + 1 < len(lines) else ""
        wrapped = _toc_row(nxt) is not None and not (CHAPTER_RE.match(nxt) or SECTION_RE.match(nxt))
        if not (wrapped and blanks <= 1):
            break  # first half of a wrapped row continues; anything else ends the 目录
    return start, end


def _next_heading(lines: list[str], i: int) -> int:
    while i < len(lines) and not CHAPTER_RE.match(lines[i]):
        i += 1
    return i


def _cover_and_copyright(lines: list[str], start: int, end: int) -> list[Zone]:
    """封面 (and a repeated 扉页) before the first 版权页 keyword; the 版权页 from there to `end`."""
    cp = next((i for i in range(start, end) if _COPYRIGHT_HINT.search(lines[i])), end)
    zones = []
    if cp < end:
        zones.append(Zone("版权页", "front", cp, end))
    cover = [i for i in range(start, cp) if lines[i].strip()]
    if not cover:
        return zones
    half = len(cover) // 2
    texts = [lines[i].strip() for i in cover]
    if len(cover) % 2 == 0 and half and texts[:half] == texts[half:]:
        zones.append(Zone("封面", "front", start, cover[half]))
        zones.append(Zone("扉页", "skip", cover[half], cp))
    else:
        zones.append(Zone("封面", "front", start, cp))
    return zones


def _toc_row(line: str) -> tuple[str, str] | None:
    """(text, page) of a 目录 row, or None. A row needs a dot leader or a tab before its page number."""
    m = _TOC_ROW_RE.match(line)
    if not m or not m.group("body").strip():
        return None
    before = line[: m.start("page")]
    if not (_LEADER_RE.search(before) or before.endswith("\t") or before.endswith("  ")):
        return None
    return _LEADER_RE.sub("", m.group("body")).strip(), m.group("page")


def parse_toc(text: str) -> tuple[TocEntry, ...]:
    """Rows of the 目录: (level, number, title, page). Rows wrapped over two lines are joined first."""
    entries: list[TocEntry] = []
    parent, carry = "", ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or TOC_TITLE_RE.match(line):
            continue
        row = _toc_row(line)
        if row is None:
            carry += line
            continue
        body, page = carry + row[0], row[1].lstrip("0") or "0"
        carry = ""
        entry = _toc_entry(squeeze(body), page, parent)
        if entry.level == 1:
            parent = entry.heading
        entries.append(entry)
    return tuple(entries)


def anchor_page(toc: tuple[TocEntry, ...], heading: str) -> str | None:
    """The 目录's page for the first body heading ("第一章 …" → "1"): the row with that heading, else the
    first chapter row, else the first row; None without a 目录."""
    key = fold(heading)
    for entry in toc:
        if key and (fold(entry.heading) == key or (entry.number and key.startswith(fold(entry.number)))):
            return entry.page
    chapter = next((e for e in toc if e.level == 1 and e.number), None)
    return (chapter or toc[0]).page if toc else None


def _toc_entry(body: str, page: str, parent: str) -> TocEntry:
    m = CHAPTER_RE.match(body)
    if m:
        return TocEntry(1, squeeze(m.group(1)), squeeze(m.group(2)), page)
    m = SECTION_RE.match(body)
    if m:
        return TocEntry(2, squeeze(m.group(1)), squeeze(m.group(2)), page, parent)
    return TocEntry(1, "", squeeze(body), page)


# 版权页 fields printed as "名称：值" (the name may be letter-spaced: "主 编：李景田").
_LABELS = ("责任编辑", "封面设计", "版式设计", "责任校对", "责任印制", "主编", "副主编", "开本", "印张", "字数",
           "印数", "定价", "邮购地址", "电话", "网址", "书号")
_LABEL_RE = re.compile("(" + "|".join(r"\s*".join(lab) for lab in _LABELS) + r")\s*[:：]\s*")
_PATTERNS: dict[str, re.Pattern[str]] = {
    "ISBN": re.compile(r"ISBN\s*([\dXx-]{10,17})"),
    "CIP 数据核字号": re.compile(r"CIP\s*数据核字\s*([（(]\s*\d{4}\s*[）)]\s*第\s*\d+\s*号)"),
    "印刷单位": re.compile(r"(\S+?)\s*印刷(?=\s|$)"),
    "经销": re.compile(r"(\S+?)\s*经销"),
    "出版时间": re.compile(r"(\d{4}\s*年\s*\d{1,2}\s*月)\s*第\s*\d+\s*版"),
    "版次": re.compile(r"\d{4}\s*年\s*\d{1,2}\s*月\s*(第\s*\d+\s*版)"),
    "印刷时间": re.compile(r"(\d{4}\s*年\s*\d{1,2}\s*月)\s*第\s*\d+\s*次印刷"),
    "印次": re.compile(r"(第\s*\d+\s*次印刷)"),
    "中图分类号": re.compile(r"IV\.\s*①\s*(\S+)"),
    "邮购地址": re.compile(r"邮购地址\s*[:：]?\s*(.+)"),
    "销售中心": re.compile(r"(\S+销售中心)"),
    "邮购电话": re.compile(r"销售中心\s*电话\s*[:：]?\s*((?:[（(]\d+[）)])?\s*\d[\d ]*\d)"),
    "主题词": re.compile(r"III\.\s*①\s*(\S+)"),
}


def parse_copyright(text: str, source: str) -> BookInfo:
    """Fields of the 版权页 and its CIP block, values exactly as printed (spaces inside kept: "33.00 元")."""
    fields: dict[str, str] = {}
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for line in lines:
        _labelled(line, fields)
    joined = "\n".join(lines)
    for name, pattern in _PATTERNS.items():
        m = pattern.search(joined)
        if m and name not in fields:
            fields[name] = m.group(1).strip()
    _cip_fields(lines, fields)
    return BookInfo(fields=fields, source=source)


def _labelled(line: str, fields: dict[str, str]) -> None:
    """"开本：… 印张：14" → 开本, 印张: each value runs to the next label on the line."""
    marks = list(_LABEL_RE.finditer(line))
    for k, m in enumerate(marks):
        end = marks[k + 1].start() if k + 1 < len(marks) else len(line)
        value = line[m.end():end].strip()
        name = squeeze(m.group(1))
        if name == "定价":
            value = value.split("ISBN")[0].strip()
        if value and name not in fields:
            fields[name] = value


def _cip_fields(lines: list[str], fields: dict[str, str]) -> None:
    """书名 / 编写单位 from the CIP title line, 丛书名 after the imprint line, 出版社 from the imprint."""
    for k, line in enumerate(lines):
        m = re.match(r"^(.+?)\s*/\s*(.+?)\s*(?:组织)?(?:主?编写|编著|主编|编)\s*\.?$", line)
        if m and "书名" not in fields:
            fields["书名"] = m.group(1).strip()
            fields["编写单位"] = m.group(2).strip()
        m = re.match(r"^-+\s*(.+?)\s*[:：]\s*(.+?)\s*[,，]\s*(\d{4}\.\d{1,2})", line)
        if m:
            fields.setdefault("出版地", m.group(1))
            fields.setdefault("出版社", "、".join(p.strip() for p in re.split(r"[:：]", m.group(2))))
            if k + 1 < len(lines) and not re.search(r"ISBN|[:：]", lines[k + 1]):
                fields.setdefault("丛书名", lines[k + 1])
    if "印刷单位" in fields:
        fields["印刷单位"] = fields["印刷单位"].split()[-1]


def fold(s: str) -> str:
    """Key for comparing headings: normalised, CJK spaces removed ("第 一 章" == "第一章")."""
    return squeeze(normalize(s))
