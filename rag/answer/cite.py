"""Citation helpers shared by the direct, extractive and LLM answers: find a span, verify a quote, cite.

A citation is only shown when its quote is a verbatim substring of its chunk's text, so every answer path
builds citations through `make_citation`, which checks that and returns None otherwise.
"""

from __future__ import annotations

import re
from typing import Sequence

from rag.text.fold import bigrams, find_span, spaceless
from rag.types import Chunk, Citation, TocEntry

_MARKER = re.compile(r"\[(\d{1,2})\]")


def line_span(text: str, start: int, end: int) -> tuple[int, int]:
    """Widen [start, end) to whole lines, then trim the surrounding whitespace."""
    s = text.rfind("\n", 0, start) + 1
    e = text.find("\n", end)
    e = len(text) if e < 0 else e
    while s < e and text[s].isspace():
        s += 1
    while e > s and text[e - 1].isspace():
        e -= 1
    return s, e


def quote_line(chunk: Chunk, target: str) -> str | None:
    """The whole line(s) of `chunk.text` that contain `target`, verbatim; None when it is not there."""
    span = find_span(chunk.text, target)
    if span is None:
        return None
    s, e = line_span(chunk.text, *span)
    return chunk.text[s:e]


def make_citation(n: int, chunk: Chunk, quote: str, score: float, flagged: bool = False) -> Citation | None:
    """A Citation only when `quote` is a non-empty verbatim substring of `chunk.text`."""
    quote = quote.strip()
    if not quote or quote not in chunk.text:
        return None
    return Citation(n=n, chunk=chunk, quote=quote, score=float(score), flagged=flagged)


def heading_cites(body: Sequence[Chunk], entries: Sequence[TocEntry]) -> tuple[Citation, ...]:
    """For a book whose 目录 was made from its headings: each entry cited at the heading line where its text
    begins; a 章 whose first 节 heading follows at once has no chunk of its own, so it is cited at the first
    line of the first chunk under it (its card's path names the 章)."""
    cites: list[Citation] = []
    for entry in entries:
        title = spaceless(entry.title)[0]
        under = [c for c in body if c.section and any(title in spaceless(level)[0] for level in c.section)]
        at = next(((c, span) for c in under if (span := entry_span(c, entry))
                   and title in spaceless(c.section[-1])[0]), None)
        if at is None and under:
            first = under[0].text.lstrip("\n").split("\n", 1)[0]
            start = under[0].text.find(first)
            at = (under[0], (start, start + len(first))) if first.strip() else None
        if at is not None:
            chunk, span = at
            start, end = line_span(chunk.text, *span)
            quote = chunk.text[start:end]
            if any(c.chunk.id == chunk.id and c.quote == quote for c in cites):
                continue  # the 章 cited at its first 节's heading, and that 节: one citation
            cite = make_citation(len(cites) + 1, chunk, quote, 1.0)
            cites += [cite] if cite else []
    return tuple(cites)


def entry_span(chunk: Chunk, entry: TocEntry) -> tuple[int, int] | None:
    """Where a 目录 row (number and title, or a long enough title alone) is printed in a chunk."""
    return find_span(chunk.text, f"{entry.number}{entry.title}") or (
        find_span(chunk.text, entry.title) if len(entry.title) >= 6 else None
    )


def overlap(claim: str, source: str) -> float:
    """Share of the claim's bigrams found in the source (0..1); 0 for a claim with no Chinese text."""
    want = bigrams(claim)
    if not want:
        return 0.0
    return len(want & bigrams(source)) / len(want)


def strip_markers(text: str) -> str:
    return _MARKER.sub("", text)


def markers(text: str) -> list[int]:
    return [int(m) for m in _MARKER.findall(text)]
