"""Citation helpers shared by the direct, extractive and LLM answers: find a span, verify a quote, cite.

A citation is only shown when its quote is a verbatim substring of its chunk's text, so every answer path
builds citations through `make_citation`, which checks that and returns None otherwise.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

from rag.types import Chunk, Citation

_CJK = re.compile(r"[\u4e00-\u9fff]")
_MARKER = re.compile(r"\[(\d{1,2})\]")


@lru_cache(maxsize=None)  # one entry per distinct character seen
def _fold(ch: str) -> str:
    """One char → one comparable char (full-width → half-width, lower case); keeps offsets one to one."""
    folded = unicodedata.normalize("NFKC", ch)
    return folded.lower() if len(folded) == 1 else ch


@lru_cache(maxsize=16384)  # the same chunk texts and 目录 titles are squeezed for every question
def squeeze(text: str) -> tuple[str, tuple[int, ...]]:
    """`text` folded and without whitespace, plus the offset in `text` of every kept char."""
    where = tuple(i for i, ch in enumerate(text) if not ch.isspace())
    return "".join([_fold(text[i]) for i in where]), where


def find_span(text: str, target: str, start: int = 0) -> tuple[int, int] | None:
    """Span of `target` in `text`, ignoring whitespace and width (目录 titles wrap inside a line)."""
    hay, where = squeeze(text)
    needle, _ = squeeze(target)
    if not needle:
        return None
    first = next((k for k, pos in enumerate(where) if pos >= start), len(where))
    k = hay.find(needle, first)
    if k < 0:
        return None
    return where[k], where[k + len(needle) - 1] + 1


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


def bigrams(text: str) -> set[str]:
    """Chinese char bigrams (plus single CJK chars for one-char words) — a tokenizer-free overlap measure."""
    cjk = "".join(ch if _CJK.match(ch) else " " for ch in unicodedata.normalize("NFKC", text))
    grams: set[str] = set()
    for run in cjk.split():
        grams.update(run[i : i + 2] for i in range(len(run) - 1))
        if len(run) == 1:
            grams.add(run)
    return grams


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
