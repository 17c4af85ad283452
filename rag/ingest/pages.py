"""Printed page labels: the raw pages a reader hands over, running headers/footers, and the page table.

Readers (text, PDF) produce `RawPage`s with whatever label they know; here the page-number lines and running
headers are taken out of the text, and a printed number found in them replaces a mere page count.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field, replace

from rag.text.numerals import CHAPTER_RE, SECTION_RE
from rag.text.fold import squeeze
from rag.types import Page, PageSource

# A well-formed roman numeral (so that "did" or "mild" alone on a line is not taken for a page number).
ROMAN = r"(?=[ivxlcdm])m{0,3}(?:cm|cd|d?c{0,3})(?:xc|xl|l?x{0,3})(?:ix|iv|v?i{0,3})"
_NUMBER_LINE = re.compile(rf"^[-—–·\s]*(?:第\s*)?(\d{{1,4}}|{ROMAN})(?:\s*页)?[-—–·\s]*$", re.I)
_ROMAN = {"i": 1, "v": 5, "x": 10, "l": 50, "c": 100, "d": 500, "m": 1000}


@dataclass(frozen=True)
class RawPage:
    """One page as read from a file. `label` None means the file gave no page information at all."""

    text: str
    label: str | None = None
    source: PageSource | None = None
    replaceable: bool = False  # a mere count/index: a printed page number found in the text wins
    scanned: bool = False  # no text layer, only an image: reported, not silently empty


def roman_value(s: str) -> int | None:
    """Value of a lower/upper-case roman numeral, None if `s` is not one."""
    s = s.lower()
    if not s or any(ch not in _ROMAN for ch in s):
        return None
    total = 0
    for a, b in zip(s, s[1:] + " "):
        v = _ROMAN[a]
        total += -v if b != " " and _ROMAN[b] > v else v
    return total


def to_roman(n: int) -> str:
    out = ""
    for v, r in ((1000, "m"), (900, "cm"), (500, "d"), (400, "cd"), (100, "c"), (90, "xc"), (50, "l"),
                 (40, "xl"), (10, "x"), (9, "ix"), (5, "v"), (4, "iv"), (1, "i")):
        while n >= v:
            out, n = out + r, n - v
    return out


def next_label(label: str) -> str:
    """The label of the following page: 12 → 13, iv → v; a name (序言) stays as it is."""
    if label.isdigit():
        return str(int(label) + 1)
    value = roman_value(label)
    if value:
        nxt = to_roman(value + 1)
        return nxt.upper() if label.isupper() else nxt
    return label


def strip_running_lines(pages: list[RawPage]) -> list[RawPage]:
    """Drop page-number lines and repeated running headers/footers; use printed numbers where only counted."""
    if len(pages) < 2 or all(p.label is None for p in pages):
        return pages
    split = [p.text.split("\n") for p in pages]
    edges = [_edge_indices(lines) for lines in split]
    printed: list[str | None] = [None] * len(pages)
    for k, (lines, idx) in enumerate(zip(split, edges)):
        for i in idx:
            m = _NUMBER_LINE.match(lines[i])
            if m and printed[k] is None:
                printed[k] = m.group(1)
                lines[i] = ""
    _drop_repeated(split, edges, len(pages))
    offset = _consistent(printed)
    out = []
    for k, p in enumerate(pages):
        label, source = p.label, p.source
        if offset is not None and p.replaceable and printed[k]:
            label, source = printed[k], "printed"
        elif offset is not None and p.source == "index" and p.replaceable and k + offset >= 1:
            label, source = str(k + offset), "estimated"  # no number printed (a scanned page): count on
        out.append(replace(p, text="\n".join(split[k]), label=label, source=source))
    return out


def _edge_indices(lines: list[str]) -> list[int]:
    filled = [i for i, ln in enumerate(lines) if ln.strip()]
    return sorted(set(filled[:1] + filled[-1:]))


def _drop_repeated(split: list[list[str]], edges: list[list[int]], n: int) -> None:
    """A short first/last line seen on several pages (digits ignored) is a running header or footer. Chapter
    titles repeat only over their chapter's pages, hence a low threshold (3, or 5% of a long book)."""
    def key(s: str) -> str:
        return re.sub(r"\d+", "#", squeeze(s))

    counts = Counter(key(split[k][i]) for k in range(n) for i in edges[k]
                     if 0 < len(split[k][i].strip()) <= 40)
    threshold = max(3, n // 20)
    seen: set[str] = set()
    for k in range(n):
        for i in edges[k]:
            line = split[k][i]
            if not line.strip() or counts[key(line)] < threshold:
                continue
            if key(line) not in seen and (CHAPTER_RE.match(line) or SECTION_RE.match(line)):
                seen.add(key(line))  # the chapter's own heading, repeated as the running header after it
                continue
            split[k][i] = ""


def _consistent(printed: list[str | None]) -> int | None:
    """Printed numbers count up with the pages (number − index constant) on most pages that have one: that
    constant, else None."""
    diffs = []
    for k, label in enumerate(printed):
        value = int(label) if label and label.isdigit() else None
        if value is not None:
            diffs.append(value - k)
    if len(diffs) < 2:
        return None
    offset, top = Counter(diffs).most_common(1)[0]
    return offset if top >= 0.6 * len(diffs) else None


@dataclass
class PageTable:
    """Page labels by id; `pages()` turns the writer's page marks into `Page` ranges of the final text."""

    entries: list[tuple[str, PageSource]] = field(default_factory=list)
    explicit: bool = False

    @classmethod
    def from_raw(cls, raw: list[RawPage]) -> PageTable:
        if all(p.label is None for p in raw):
            return cls()
        return cls([(p.label or str(k + 1), p.source or "index") for k, p in enumerate(raw)], True)

    def add(self, label: str, source: PageSource) -> int:
        self.entries.append((label, source))
        return len(self.entries) - 1

    def entry(self, page: int) -> tuple[str | None, PageSource | None]:
        return self.entries[page] if 0 <= page < len(self.entries) else (None, None)

    def pages(self, marks: list[tuple[int, int]], length: int) -> tuple[Page, ...]:
        out: list[Page] = []
        for n, (start, page) in enumerate(marks):
            end = marks[n + 1][0] if n + 1 < len(marks) else length
            label, source = self.entries[page]
            if out and out[-1].label == label and out[-1].source == source:
                out[-1] = replace(out[-1], end=end)
            elif end > start:
                out.append(Page(label, source, start, end))
        if out:
            out[0] = replace(out[0], start=0)
        return tuple(out)
