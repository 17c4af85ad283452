"""Sentence boundaries of Chinese text: which marks end a sentence or a clause, and sentence spans."""

from __future__ import annotations

import re

from rag.text.fold import normalize

# Sentence-final marks, full-width and (after normalize) half-width. "." is left out on purpose: it occurs in
# numbers and dates ("33.00", "2015.2") far more often than as a Chinese sentence end.
SENTENCE_END = "。！？；!?;…"
# Closing quotes and brackets that belong to the sentence they close: 「……。」 stays one sentence.
CLOSERS = "”’」』）)】》〉\"'"
# Also ends a paragraph-level line (a list introduced by "具体来说：" is not a sentence split by a page).
CLAUSE_END = SENTENCE_END + "：:"
_ENDS = normalize(SENTENCE_END)
# a newline, or a sentence-final mark with the marks and closing quotes that follow it (in normalized text)
_BREAK = re.compile(rf"\n|[{re.escape(_ENDS)}][{re.escape(_ENDS + CLOSERS)}]*")


def ends_sentence(s: str, marks: str = SENTENCE_END) -> bool:
    """True when `s` (ignoring trailing spaces, closing quotes and brackets) ends with one of `marks`."""
    t = normalize(s[-12:].rstrip()).rstrip(CLOSERS + " ")
    return bool(t) and t[-1] in normalize(marks)


def split_sentences(s: str) -> list[tuple[int, int]]:
    """Sentence spans (start, end) in `s`: split after 。！？；… and their closing quotes; newlines also split.

    Spans exclude surrounding whitespace; concatenated with the gaps between them they give back `s`.
    """
    n = normalize(s)
    spans: list[tuple[int, int]] = []
    start = 0
    for m in _BREAK.finditer(n):
        _add_span(n, start, m.start() if m.group() == "\n" else m.end(), spans)
        start = m.end()
    _add_span(n, start, len(n), spans)
    return spans


def _add_span(n: str, start: int, end: int, spans: list[tuple[int, int]]) -> None:
    while start < end and n[start].isspace():
        start += 1
    while end > start and n[end - 1].isspace():
        end -= 1
    if end > start:
        spans.append((start, end))
