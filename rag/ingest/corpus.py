"""Corpus files → Documents with printed pages, section headings, 目录 and 版权页 (txt, md, pdf).

Page numbers in text files (see README "Page numbers / 页码"): a form feed starts a new page; a line
`<!-- page 12 -->` says the text after it is on printed page 12 (later form feeds count on: 13, 14 …);
without either, pages are estimated from sentences split by blank lines, anchored on the 目录.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Sequence

from rag.ingest.front import parse_copyright, parse_toc
from rag.errors import CorpusError
from rag.ingest.layout import lay_out
from rag.ingest.pages import RawPage, next_label
from rag.text.fold import normalize, squeeze
from rag.text.numerals import CHAPTER_RE, SECTION_RE
from rag.types import Block, BookInfo, Document, TocEntry

FORMATS = {".txt": "text", ".md": "markdown", ".markdown": "markdown", ".pdf": "pdf"}
# A word list for the tokenizer kept beside the book (read by the index build), not a document of the corpus.
LEXICON_FILE = "lexicon.txt"
# An optional {"title": …} beside a book: `<folder>/book.json` for a folder book, `<file stem>.book.json` for a
# file; what it says wins over the title found in the book.
BOOK_META = "book.json"
PAGE_MARKER = re.compile(r"^\s*<!--\s*page\s*[:：]?\s*(\S+?)\s*-->\s*$", re.I)
_COMMENT = re.compile(r"<!--(?!\s*page\s*[:：]?\s*\S+?\s*-->).*?-->", re.S | re.I)  # not book text


@dataclass(frozen=True)
class Corpus:
    documents: tuple[Document, ...]
    skipped: tuple[tuple[str, str], ...]  # (file name relative to its corpus root, reason in Chinese); also
    # pages of a read file that could not be extracted (a scanned page: "第4页没有文字层…")
    lexicons: tuple[Path, ...] = ()  # corpus-root lexicon.txt word lists, set aside (not documents)
    titles: dict[str, str] = field(default_factory=dict)  # book id → title from its metadata file


@dataclass(frozen=True)
class CorpusPlan:
    """The files of the corpus folders sorted out before any is read: the book files to read (in corpus
    order), the hand-kept word lists, the titles from metadata files, and what is skipped and why."""

    files: tuple[tuple[Path, Path], ...]  # (file, its corpus root)
    skipped: tuple[tuple[str, str], ...]
    lexicons: tuple[Path, ...] = ()
    titles: dict[str, str] = field(default_factory=dict)


def plan_corpus(paths: Sequence[Path]) -> CorpusPlan:
    """Sort the files under `paths` (the local build reads them here, the Ray build in its tasks)."""
    files, skipped, lexicons, titles = [], [], [], {}
    for path, root in _list_files(paths):
        name = _relative(path, root)
        if name == LEXICON_FILE:
            lexicons.append(path)
        elif path.name == BOOK_META or path.name.endswith("." + BOOK_META):
            meta = _book_meta(path, name, skipped)
            book = book_id(name.removesuffix("." + BOOK_META)) if path.name != BOOK_META else book_id(name)
            if meta.get("title"):
                titles[book] = str(meta["title"]).strip()
        elif path.suffix.lower() not in FORMATS:
            skipped.append((name, f"不支持的文件类型“{path.suffix or '无扩展名'}”（支持 .txt、.md、.pdf）"))
        else:
            files.append((path, root))
    return CorpusPlan(tuple(files), tuple(skipped), tuple(lexicons), titles)


def load_corpus(paths: Sequence[Path]) -> Corpus:
    """Every supported file under `paths` in sorted order; unsupported or unreadable ones are listed in
    `skipped` with the reason, a root-level lexicon.txt in `lexicons`. Raises CorpusError when a path is
    missing or nothing readable is found."""
    plan = plan_corpus(paths)
    documents, skipped = [], list(plan.skipped)
    for path, root in plan.files:
        try:
            document, notices = read_file(path, root)
        except CorpusError as exc:
            skipped.append((_relative(path, root), str(exc)))
            continue
        documents.append(document)
        skipped += [(document.source, notice) for notice in notices]
    if not documents:
        raise no_documents(paths, skipped)
    return Corpus(tuple(documents), tuple(skipped), plan.lexicons, plan.titles)


def no_documents(paths: Sequence[Path], skipped: Sequence[tuple[str, str]]) -> CorpusError:
    where = "、".join(str(p) for p in paths)
    detail = "；".join(f"{n}：{r}" for n, r in skipped) or "文件夹是空的"
    return CorpusError(f"语料 {where} 中没有可读取的文件（{detail}）。请放入 .txt、.md 或 .pdf 格式的教材文件。")


def _book_meta(path: Path, name: str, skipped: list[tuple[str, str]]) -> dict:
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        skipped.append((name, f"书目信息文件无法读取（{type(exc).__name__}），已忽略；应为 {{\"title\": \"书名\"}}"))
        return {}
    if not isinstance(meta, dict):
        skipped.append((name, "书目信息文件应为 JSON 对象，如 {\"title\": \"书名\"}，已忽略"))
        return {}
    return meta


def _list_files(paths: Sequence[Path]) -> list[tuple[Path, Path]]:
    """(file, root) pairs; hidden files (.gitkeep, .DS_Store) are not part of a corpus."""
    if not paths:
        raise CorpusError("没有指定语料路径。请用 --corpus 或环境变量 RAG_CORPUS 指定教材文件或文件夹。")
    out: list[tuple[Path, Path]] = []
    for p in paths:
        p = Path(p)
        if not p.exists():
            raise CorpusError(f"语料路径不存在：{p}。请检查 --corpus 参数或环境变量 RAG_CORPUS。")
        if p.is_file():
            out.append((p, p.parent))
            continue
        found = [f for f in p.rglob("*") if f.is_file() and not _hidden(f, p)]
        out += [(f, p) for f in sorted(found, key=lambda f: f.relative_to(p).as_posix())]
    return out


def book_id(name: str) -> str:
    """The stable id of the book a corpus file belongs to: a file directly in a corpus folder is a book of its
    own (its name without the extension), a file in a sub-folder belongs to the book of that folder."""
    parts = Path(name).parts
    stem = parts[0] if len(parts) > 1 else Path(name).stem
    return re.sub(r"[\s/\\]+", "-", stem).strip("-") or "book"


def _hidden(path: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def _relative(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


def read_document(path: Path, root: Path) -> Document:
    """One file → Document. Raises CorpusError (naming the file) when it cannot be read or has no text."""
    return read_file(path, root)[0]


def read_file(path: Path, root: Path) -> tuple[Document, list[str]]:
    """The Document and notices about pages that could not be extracted (scanned PDF pages)."""
    name = _relative(Path(path), Path(root))
    fmt = FORMATS.get(Path(path).suffix.lower())
    if fmt is None:
        raise CorpusError(f"不支持的文件类型：{name}（支持 .txt、.md、.pdf）。")
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise CorpusError(f"无法读取文件 {name}：{exc.strerror or exc}。请检查文件权限。") from exc
    meta_title = None
    if fmt == "pdf":
        from rag.ingest.pdf import pdf_title, read_pdf_pages, scanned_notices

        raw = read_pdf_pages(data, name)
        notices = scanned_notices(raw)
        meta_title = pdf_title(data)
    else:
        raw, notices = split_text_pages(_COMMENT.sub("", _decode(data, name))), []
    layout = lay_out(raw, markdown=fmt == "markdown")
    if not layout.original.strip():
        raise CorpusError(f"文件 {name} 中没有可提取的文字（可能是扫描版 PDF 或空文件）。")
    info = parse_copyright(layout.copyright_text, name) if layout.copyright_text else None
    document = Document(
        source=name,
        checksum=hashlib.sha256(data).hexdigest(),
        title=_title(info, meta_title, layout.blocks if fmt == "markdown" else (), layout.original,
                     book_id(name)),
        text=normalize(layout.original),
        original=layout.original,
        pages=layout.pages,
        blocks=layout.blocks,
        toc=tuple(replace(e, book=book_id(name))
                  for e in parse_toc(layout.toc_text) or toc_from_headings(layout.blocks, layout.original)),
        info=info,
        book=book_id(name),
    )
    return document, notices


def toc_from_headings(blocks: Sequence[Block], original: str) -> tuple[TocEntry, ...]:
    """A 目录 made from a book's own 章/节 headings, for a book that prints none (no page numbers)."""
    entries: list[TocEntry] = []
    parent = ""
    for b in blocks:
        if not b.is_heading:
            continue
        line = original[b.start:b.end].strip().lstrip("#").strip()
        for level, rx in ((1, CHAPTER_RE), (2, SECTION_RE)):
            m = rx.match(line)
            if m:
                entry = TocEntry(level, squeeze(m.group(1)), squeeze(m.group(2)), None, parent if level == 2 else "")
                parent = entry.heading if level == 1 else parent
                entries.append(entry)
                break
    return tuple(entries)


def _decode(data: bytes, name: str) -> str:
    """UTF-8 (with or without BOM), else GB18030 — the two encodings Chinese text files come in."""
    if b"\x00" in data:
        raise CorpusError(f"文件 {name} 不是文本文件（含有二进制内容）。请另存为 UTF-8 编码的 .txt。")
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise CorpusError(f"文件 {name} 的编码无法识别。请另存为 UTF-8 编码。")


def split_text_pages(text: str) -> list[RawPage]:
    """Pages of a text file: form feeds break pages, `<!-- page N -->` sets the printed label."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if "\f" not in text and not any(PAGE_MARKER.match(ln) for ln in text.split("\n")):
        return [RawPage(text)]
    pages: list[RawPage] = []
    label, counted = "1", True
    for k, sheet in enumerate(text.split("\f")):
        if k:
            label = next_label(label)
        buf: list[str] = []
        for line in sheet.split("\n"):
            m = PAGE_MARKER.match(line)
            if not m:
                buf.append(line)
                continue
            if any(b.strip() for b in buf):
                pages.append(RawPage("\n".join(buf), label, "label", counted))
            buf, label, counted = [], m.group(1), False
        pages.append(RawPage("\n".join(buf), label, "label", counted))
    return pages


def _title(info: BookInfo | None, meta_title: str | None, blocks: Sequence[Block], original: str,
           fallback: str) -> str:
    """书名 from the 版权页, else the PDF's own title, else a Markdown book's first `#` heading, else the name
    of the file (or of the book's folder)."""
    if info and info.fields.get("书名"):
        return info.fields["书名"]
    if meta_title:
        return meta_title
    heading = next((b for b in blocks if b.is_heading and original[b.start:b.end].startswith("# ")), None)
    return original[heading.start:heading.end].strip("# ").strip() if heading else fallback
