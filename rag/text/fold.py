"""One home for comparing Chinese text: normalisation that keeps offsets, CJK checks, compact forms and spans.

Everything that compares text (BM25, highlighting, quote checks, 目录 titles) goes through `normalize`, which keeps
the length of the string so that an offset found in the normalised text is also valid in the original one.
"""

from __future__ import annotations

import re
import unicodedata

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


def squeeze(s: str) -> str:
    """`s` in its original characters minus CJK-adjacent spaces: "做好……的 历史责任" → "做好……的历史责任"."""
    return "".join(s[i] for i in compact(s)[1]).strip()


def find_compact(haystack: str, needle: str, start: int = 0) -> tuple[int, int] | None:
    """Span of `needle` in `haystack` ignoring CJK-adjacent spaces and width forms, or None."""
    hay, offsets = compact(haystack)
    ndl = compact(needle)[0].strip()
    if not ndl:
        return None
    i = next((k for k, off in enumerate(offsets) if off >= start), len(offsets))
    pos = hay.find(ndl, i)
    if pos < 0:
        return None
    return offsets[pos], offsets[pos + len(ndl) - 1] + 1



_SPACE_RUN = re.compile(r"\s+")


def one_line(s: str) -> str:
    """Collapse whitespace runs to one space (for printing a chunk on one line)."""
    return _SPACE_RUN.sub(" ", s).strip()
