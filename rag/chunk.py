"""Documents → Chunks: sentence-aware, section-aware, content-hash ids, page span, char offsets.

Invariant: `chunk.text == doc.original[chunk.start:chunk.end]` and `doc.text[chunk.start:chunk.end]` is its
normalised form. The Document text is already re-laid in reading order (rag/ingest/layout.py): captions and
footnotes sit after the body of their section, so a body chunk is one contiguous span with no caption inside.
"""

from __future__ import annotations

import bisect
import hashlib
import re
from dataclasses import dataclass
from typing import Iterable, Sequence

from rag.config import ChunkSettings
from rag.text.fold import normalize, spaceless
from rag.text.sentences import SENTENCE_END, split_sentences
from rag.types import Block, Chunk, Document, Page

_BREAKS = "，、,：:；; "  # where an over-long sentence may be cut
# Lines that are headings, not sentences: 「◇ 二、群众工作的历史地位」「（一）推动经济社会发展」「第一节 …」「序 言」.
_HEADING = re.compile(r"^(?:[◇◆●■□△▲]\s*)?(?:第[一二三四五六七八九十百\d]+[章节]|[一二三四五六七八九十]+、|"
                      r"（[一二三四五六七八九十]+）|序\s*言|目\s*录|后\s*记)")
_FOOTMARK = re.compile(r"^\^?[①-⑳]")
_ENDS = SENTENCE_END + "：:”’」』）)】》\"'"  # a line ending in 「：」 introduces a list: not joined to it


@dataclass(frozen=True)
class _Unit:
    start: int
    end: int
    heading: bool = False


def chunk_corpus(docs: Iterable[Document], settings: ChunkSettings) -> list[Chunk]:
    """All chunks of all documents, in corpus order (ordinals restart for each document)."""
    return [c for doc in docs for c in chunk_document(doc, settings)]


def chunk_document(doc: Document, settings: ChunkSettings) -> list[Chunk]:
    """Chunks of one document: each group of blocks (one section, one kind) is packed on its own."""
    chunks: list[Chunk] = []
    seen: set[str] = set()
    for group in _groups(doc.blocks):
        if len(group) == 1 and group[0].is_heading:
            continue  # a heading directly followed by a sub-heading: its words are in every chunk's path
        units = [u for b in group for u in _units(doc, b, settings.max_chars)]
        for start, end in _pack(units, settings):
            chunk = _make_chunk(doc, group[0], start, end, len(chunks))
            if chunk.id not in seen:
                seen.add(chunk.id)
                chunks.append(chunk)
    return chunks


def _groups(blocks: Sequence[Block]) -> list[list[Block]]:
    """Runs of blocks that may share a chunk: same section and kind; a heading, caption or footnote starts
    a new run (a caption or footnote is a run of its own)."""
    groups: list[list[Block]] = []
    for b in blocks:
        prev = groups[-1][-1] if groups else None
        alone = b.kind in ("caption", "footnote")
        if (prev is None or b.is_heading or alone or prev.kind in ("caption", "footnote")
                or prev.kind != b.kind or prev.section != b.section):
            groups.append([b])
        else:
            groups[-1].append(b)
    return groups


def _units(doc: Document, b: Block, max_chars: int) -> list[_Unit]:
    """Sentences of running text, lines of the 版权页, chapters of the 目录; a heading is one unit."""
    if b.is_heading:
        return [_Unit(b.start, b.end, heading=True)]
    text = doc.text[b.start:b.end]
    if b.kind == "toc":  # one 目录 block = one chapter with its sections: never split
        spans = [(0, len(text))]
    elif b.kind == "front":
        spans, pos = [], 0
        for line in text.split("\n"):
            if line.strip():
                spans.append((pos, pos + len(line)))
            pos += len(line) + 1
    else:
        spans = split_sentences(text)
    out: list[_Unit] = []
    for s, e in spans:
        out += [_Unit(b.start + a, b.start + z) for a, z in _cut(text, s, e, max_chars)]
    return out


def _cut(text: str, start: int, end: int, max_chars: int) -> list[tuple[int, int]]:
    """An over-long sentence in pieces of at most max_chars, cut after a comma where possible."""
    pieces = []
    while end - start > max_chars:
        window = text[start:start + max_chars]
        cut = max(window.rfind(ch) for ch in _BREAKS)
        stop = start + (cut + 1 if cut > max_chars // 2 else max_chars)
        pieces.append((start, stop))
        start = stop
        while start < end and text[start].isspace():
            start += 1
    return pieces + [(start, end)]


def _pack(units: list[_Unit], settings: ChunkSettings) -> list[tuple[int, int]]:
    """Greedy packing: close a chunk once it reaches target_chars, never exceed max_chars; the next chunk of
    the same run repeats the last `overlap_sentences` sentences of the previous one."""
    spans: list[tuple[int, int]] = []
    cur: list[_Unit] = []
    for u in units:
        too_long = u.end - cur[0].start > settings.max_chars if cur else False
        if cur and (too_long or cur[-1].end - cur[0].start >= settings.target_chars):
            spans.append((cur[0].start, cur[-1].end))
            cur = _overlap(cur, u, settings)
        cur.append(u)
    if cur:
        spans.append((cur[0].start, cur[-1].end))
    return _merge_tail(spans, settings)


def _overlap(closed: list[_Unit], nxt: _Unit, settings: ChunkSettings) -> list[_Unit]:
    n = settings.overlap_sentences
    if n <= 0 or len(closed) <= n:
        return []
    tail = [u for u in closed[-n:] if not u.heading]
    if tail and nxt.end - tail[0].start <= settings.max_chars:
        return tail
    return []


def _merge_tail(spans: list[tuple[int, int]], settings: ChunkSettings) -> list[tuple[int, int]]:
    """A last chunk much shorter than the target joins its predecessor when the two fit in max_chars."""
    if len(spans) >= 2:
        (a, _), (s, e) = spans[-2], spans[-1]
        if e - s < settings.target_chars // 4 and e - a <= settings.max_chars:
            spans[-2:] = [(a, e)]
    return spans


def _make_chunk(doc: Document, block: Block, start: int, end: int, ordinal: int) -> Chunk:
    text = doc.original[start:end]
    if block.page is not None:
        page, page_end, estimated = block.page, block.page, block.page_estimated
    else:
        first, last = page_span(doc.pages, start, end)
        page, page_end = (first.label if first else None), (last.label if last else None)
        estimated = any(p.estimated for p in doc.pages if p.start < end and p.end > start)
    return Chunk(
        id=chunk_id(doc.source, block.section, text),
        source=doc.source,
        kind=block.kind,
        section=block.section,
        text=text,
        start=start,
        end=end,
        page=page,
        page_end=page_end,
        page_estimated=estimated,
        ordinal=ordinal,
        book=doc.book,
    )


def chunk_id(source: str, section: tuple[str, ...], text: str) -> str:
    """Content hash: the same text in the same place gets the same id on every rebuild."""
    key = "\x1f".join((source, " › ".join(section), normalize(text)))
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:16]


def page_span(pages: Sequence[Page], start: int, end: int) -> tuple[Page | None, Page | None]:
    """The pages holding the first and the last character of [start, end)."""
    if not pages:
        return None, None
    starts = [p.start for p in pages]
    first = pages[max(bisect.bisect_right(starts, start) - 1, 0)]
    last = pages[max(bisect.bisect_right(starts, max(end - 1, start)) - 1, 0)]
    return first, last


def sentence_spans(chunk: Chunk) -> list[tuple[int, int]]:
    """Sentences of a chunk as spans of chunk.text: heading lines dropped, a line broken inside a sentence
    joined again, a footnote mark (「^①」) kept with the sentence it follows. Captions are one sentence; the
    目录 and 版权页 are read line by line."""
    text = chunk.text
    if chunk.kind in ("caption", "footnote"):
        stripped = text.strip()
        start = text.find(stripped)
        return [(start, start + len(stripped))] if stripped else []
    if chunk.kind in ("toc", "front"):
        return [(a, b) for a, b in split_sentences(text)]
    headings = {spaceless(h)[0] for h in chunk.section}
    spans: list[list[int]] = []
    for a, b in split_sentences(text):
        mark = _FOOTMARK.match(text[a:b])
        if mark and spans:
            spans[-1][1] = a + mark.end()
            a += mark.end()
            if a >= b:
                continue
        last = text[spans[-1][0] : spans[-1][1]] if spans else ""
        if last and not _ends(last) and not _is_heading(last, headings):
            spans[-1][1] = b  # the previous line stopped mid-sentence (a page or line break)
        else:
            spans.append([a, b])
    return [(a, b) for a, b in spans if not _is_heading(text[a:b], headings)]


def _ends(piece: str) -> bool:
    return piece.rstrip()[-1:] in _ENDS or bool(re.search(r"[①-⑳]$", piece.rstrip()))


def _is_heading(piece: str, headings: set[str]) -> bool:
    piece = piece.strip().lstrip("#").strip()  # a Markdown heading keeps its "#" marks in the chunk text
    if _ends(piece) or len(piece) > 40:
        return False
    key = spaceless(piece)[0]
    return bool(_HEADING.match(piece)) or any(key == h or key in h for h in headings)
