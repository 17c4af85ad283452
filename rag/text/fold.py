"""One home for comparing Chinese text: normalisation that keeps offsets, CJK checks, compact forms and spans.

Everything that compares text (BM25, highlighting, quote checks, 目录 titles) goes through `normalize`, which keeps
the length of the string so that an offset found in the normalised text is also valid in the original one.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

_SPACE_LIKE = {0x00A0, 0x3000, 0x2002, 0x2003, 0x2009, 0x200B, 0xFEFF}


def is_cjk(ch: str) -> bool:
    """A CJK ideograph (the unified block and extension A), the characters around which spaces are noise."""
    o = ord(ch)
    return 0x4E00 <= o <= 0x9FFF or 0x3400 <= o <= 0x4DBF


def _table() -> dict[int, str]:
    """One str.translate table: full-width ASCII → half-width; odd spaces, control and format chars → space."""
    table = {o: chr(o - 0xFEE0) for o in range(0xFF01, 0xFF5F)}
    table |= {o: " " for o in _SPACE_LIKE}
    controls = [o for o in range(0x10000) if unicodedata.category(chr(o)) in ("Cc", "Cf")]
    table |= {o: " " for o in controls + list(range(0xE0000, 0xE0080)) if o != 0x0A}
    return table


_TABLE = _table()


def normalize(s: str) -> str:
    """Text for matching: full-width ASCII → half-width, odd spaces/control chars → space, same length as `s`.

    Newlines are kept (they separate paragraphs). The result maps char for char onto `s`, so any span found in
    it is also the span of the original text.
    """
    return s.translate(_TABLE)


def compact(s: str) -> tuple[str, list[int]]:
    """`normalize(s)` without the spaces that touch a CJK character, plus each kept char's offset in `s`.

    PDF extraction writes "2015 年" and "主 编"; a reader types "2015年" and "主编". Matching on the compact
    form and mapping back through the offsets finds both.
    """
    n = normalize(s)
    out: list[str] = []
    offsets: list[int] = []
    for i, ch in enumerate(n):
        if ch.isspace():
            left = n[i - 1] if i else ""
            j = i
            while j < len(n) and n[j].isspace():
                j += 1
            right = n[j] if j < len(n) else ""
            if (left and is_cjk(left)) or (right and is_cjk(right)) or not left or not right:
                continue
        out.append(ch)
        offsets.append(i)
    return "".join(out), offsets


@lru_cache(maxsize=16384)  # headings, titles and questions are squeezed again and again
def squeeze(s: str) -> str:
    """`s` in its original characters minus CJK-adjacent spaces: "做好……的 历史责任" → "做好……的历史责任"."""
    return "".join(s[i] for i in compact(s)[1]).strip()



# --- comparing without whitespace and width: quotes, 目录 titles, evidence ------------------------------------

_UNIFIED = re.compile(r"[\u4e00-\u9fff]")  # the unified ideographs, the alphabet of bigram overlaps


@lru_cache(maxsize=None)  # one entry per distinct character seen
def _fold(ch: str) -> str:
    """One char → one comparable char (full-width → half-width, lower case); keeps offsets one to one."""
    folded = unicodedata.normalize("NFKC", ch)
    return folded.lower() if len(folded) == 1 else ch


@lru_cache(maxsize=16384)  # the same chunk texts and 目录 titles are squeezed for every question
def spaceless(text: str) -> tuple[str, tuple[int, ...]]:
    """`text` folded and without whitespace, plus the offset in `text` of every kept char."""
    where = tuple(i for i, ch in enumerate(text) if not ch.isspace())
    return "".join([_fold(text[i]) for i in where]), where


def find_span(text: str, target: str, start: int = 0) -> tuple[int, int] | None:
    """Span of `target` in `text`, ignoring whitespace and width (目录 titles wrap inside a line)."""
    hay, where = spaceless(text)
    needle, _ = spaceless(target)
    if not needle:
        return None
    first = next((k for k, pos in enumerate(where) if pos >= start), len(where))
    k = hay.find(needle, first)
    if k < 0:
        return None
    return where[k], where[k + len(needle) - 1] + 1


def bigrams(text: str) -> set[str]:
    """Chinese char bigrams (plus single CJK chars for one-char words) — a tokenizer-free overlap measure."""
    cjk = "".join(ch if _UNIFIED.match(ch) else " " for ch in unicodedata.normalize("NFKC", text))
    grams: set[str] = set()
    for run in cjk.split():
        grams.update(run[i : i + 2] for i in range(len(run) - 1))
        if len(run) == 1:
            grams.add(run)
    return grams


_SPACE_RUN = re.compile(r"\s+")


def one_line(s: str) -> str:
    """Collapse whitespace runs to one space (for printing a chunk on one line)."""
    return _SPACE_RUN.sub(" ", s).strip()
