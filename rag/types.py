"""Typed dataclasses passed between the pipeline stages (ingest → chunk → index → retrieve → answer)."""

from __future__ import annotations

from dataclasses import dataclass, field
from collections.abc import Iterator, Sequence
from typing import Literal

# What a piece of text is. Only "body" is running text of the book; the others are searchable
# but labelled so retrieval and the UI can treat them differently.
Kind = Literal["body", "caption", "footnote", "toc", "front"]

# How a printed page label was obtained.
#   "label"     — the PDF's own page labels, or an explicit `<!-- page N -->` marker / form feed count
#   "printed"   — a number printed in the page header/footer of a PDF
#   "index"     — the PDF page index (1-based), no better source
#   "estimated" — inferred from the text (blank lines splitting sentences), anchored on the 目录
#   "named"     — front matter cited by name (封面, 版权页, 序言, 目录)
PageSource = Literal["label", "printed", "index", "estimated", "named"]

AnswerMode = Literal["extractive", "direct", "llm"]
# How an answer is written: "auto" = by the LLM when one is configured, else extractive.
WriteMode = Literal["auto", "extractive", "llm"]


@dataclass(frozen=True)
class QueryParams:
    """Per-question knobs, the same for the page, the CLI and the API (None = the setting's default)."""

    k: int | None = None  # hits a search returns (RetrieveSettings.k)
    passages: int | None = None  # hits an LLM answer reads (AnswerSettings.passages)
    mode: WriteMode = "auto"
    book: str | None = None  # only this book (its id); None = every loaded book


@dataclass(frozen=True)
class Query:
    """A question prepared once for every stage: cleaned, Simplified, shortened, its follow-up filled in.

    `text` is what retrieval searches; `own` is the cleaned question in the user's own words (before a
    follow-up borrowed its topic from `history`); `notices` are told to the user (e.g. it was shortened)."""

    text: str
    original: str
    notices: tuple[str, ...] = ()
    converted: bool = False  # Traditional characters were turned into Simplified ones
    truncated: bool = False
    expanded: bool = False  # a follow-up whose reference was filled in from the history
    shown: str = ""  # the question part as typed (cleaned, not converted): what the page shows
    own: str = ""  # the cleaned question before follow-up expansion ("" = same as text)
    history: tuple[str, ...] = ()  # the earlier questions, prepared (turns that cannot be asked dropped)

    @property
    def words(self) -> str:
        """The question in the user's own words (a follow-up's, not the borrowed topic)."""
        return self.own or self.text


@dataclass(frozen=True)
class Page:
    """One printed page of a document: its label as the reader sees it, and where its text sits."""

    label: str  # "3", "iv", "版权页", "序言" …
    source: PageSource
    start: int  # char offset into Document.text (normalised text)
    end: int

    @property
    def estimated(self) -> bool:
        return self.source == "estimated"


@dataclass(frozen=True)
class Block:
    """A run of text of one kind under one section path, e.g. a paragraph, a caption, a heading."""

    kind: Kind
    section: tuple[str, ...]  # full heading path, outermost first
    start: int  # char offsets into Document.text
    end: int
    is_heading: bool = False
    # Captions and footnotes are moved out of the body flow (to the end of their section), so their offsets
    # may fall on a later page than the one they were printed on; `page` keeps the page they were found on.
    page: str | None = None
    page_estimated: bool = False


@dataclass(frozen=True)
class TocEntry:
    """One row of the book's 目录."""

    level: int  # 1 = 章 (and 后记), 2 = 节
    number: str  # "第一章", "第三节", "" for 后记
    title: str  # "做好群众工作是中国共产党人的历史责任"
    page: str | None  # printed start page label, e.g. "1" (leading zeros stripped)
    parent: str = ""  # number + title of the enclosing chapter for level 2, "" otherwise
    book: str = ""  # id of the book whose 目录 this row is

    @property
    def heading(self) -> str:
        return f"{self.number} {self.title}".strip()


@dataclass(frozen=True)
class BookInfo:
    """Fields of the copyright/CIP page (版权页), keyed by their Chinese names (书名, 主编, ISBN, 定价 …)."""

    fields: dict[str, str]
    source: str  # file the fields were read from
    page: str = "版权页"


@dataclass(frozen=True)
class Document:
    """One corpus file after ingestion. `text` is normalised for matching; `original` is for display.

    Both strings have the same length and offsets map one to one (normalisation is char-for-char), so a
    citation's span in `text` is also its span in `original`.
    """

    source: str  # path relative to the corpus root, e.g. "qunzhong-gongzuo-excerpt.txt"
    checksum: str  # sha256 of the file bytes
    title: str
    text: str
    original: str
    pages: tuple[Page, ...]
    blocks: tuple[Block, ...]
    toc: tuple[TocEntry, ...] = ()
    info: BookInfo | None = None
    book: str = ""  # id of the book this file belongs to (rag.ingest.corpus.book_id)


@dataclass(frozen=True)
class Book:
    """One book of the library: a corpus file, or a folder of files that make one book."""

    id: str  # stable: derived from the file or folder name
    title: str
    files: tuple[str, ...]  # sources (paths relative to the corpus root), in reading order
    toc: tuple[TocEntry, ...] = ()
    info: BookInfo | None = None  # its 版权页 fields


@dataclass(frozen=True)
class Chunk:
    """A retrievable passage: never crosses a section boundary; knows its pages and exact offsets."""

    id: str  # content hash (source + section + text), stable across rebuilds
    source: str
    kind: Kind
    section: tuple[str, ...]
    text: str  # original (display) text of the span, == Document.original[start:end]
    start: int
    end: int
    page: str | None
    page_end: str | None
    page_estimated: bool
    ordinal: int = 0  # position of the chunk in its document (for neighbours in the UI)
    book: str = ""  # id of its Book

    @property
    def section_path(self) -> str:
        return " › ".join(self.section)


@dataclass(frozen=True)
class Hit:
    """A chunk returned by retrieval, with its fused score and rank (1-based)."""

    chunk: Chunk
    score: float
    rank: int
    dense_score: float | None = None
    lexical_score: float | None = None


@dataclass(frozen=True)
class Retrieved(Sequence[Hit]):
    """What a search returns: its hits, best first (it is a sequence of them), and the prepared question they
    answer (notices, follow-up expansion)."""

    query: Query
    hits: tuple[Hit, ...]

    def __len__(self) -> int:
        return len(self.hits)

    def __getitem__(self, i):  # type: ignore[override]
        return self.hits[i]

    def __iter__(self) -> Iterator[Hit]:
        return iter(self.hits)


@dataclass(frozen=True)
class Citation:
    """A numbered source of an answer; `quote` is verified to be a verbatim substring of `chunk.text`."""

    n: int
    chunk: Chunk
    quote: str
    score: float
    flagged: bool = False  # LLM mode: a marker that could not be verified against its passage


@dataclass(frozen=True)
class Answer:
    question: str
    text: str  # answer with [n] markers
    citations: tuple[Citation, ...]
    mode: AnswerMode
    refused: bool = False
    notices: tuple[str, ...] = ()  # e.g. "输入过长，已截取前 500 字" or an LLM fallback notice
    pointer: str | None = None  # refusal: the 目录 entry that may cover the question
    resolved_question: str | None = None  # the question after follow-up expansion, when different
    extra: dict[str, object] = field(default_factory=dict)
