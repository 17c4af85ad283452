"""PDFs as publishers make them: LibreOffice-made fixtures (scripts/make_pdf_fixtures.py) through ingest."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from rag.chunk import chunk_document
from rag.config import ChunkSettings
from rag.ingest.corpus import load_corpus, read_document
from rag.types import Chunk, Document

DATA = Path(__file__).parent / "data" / "pdf"
SOURCE = json.loads((DATA / "source.json").read_text(encoding="utf-8"))
CJK_GAP = re.compile(r"[\u4e00-\u9fff，。、：；“”《》][ \u00a0]+[\u4e00-\u9fff，。、：；“”《》]")


def _flat(s: str) -> str:
    return re.sub(r"\s+", "", s)


@pytest.fixture(scope="module")
def book() -> Document:
    return read_document(DATA / "book.pdf", DATA)


@pytest.fixture(scope="module")
def columns() -> Document:
    return read_document(DATA / "columns.pdf", DATA)


def _chunks(doc: Document) -> list[Chunk]:
    return chunk_document(doc, ChunkSettings())


def test_body_pages_carry_the_printed_numbers_not_the_pdf_index(book: Document, columns: Document) -> None:
    # LibreOffice writes no /PageLabels: the footer numbers are read; roman front matter, body from 1;
    # PDF page 6 is the scan (no text, no page of its own), so the last text page is printed page 5.
    assert [(p.label, p.source) for p in book.pages] == [
        ("i", "printed"), ("ii", "printed"), ("1", "printed"), ("2", "printed"), ("3", "printed"),
        ("5", "printed")]
    assert [p.label for p in columns.pages] == SOURCE["columns.pdf"]["labels"]
    assert [e.heading for e in book.toc] == ["第一章 群众工作的地位", "第一节 群众工作的概念",
                                             "第二节 群众工作的方法", "第二章 群众工作的经验"]


def test_no_running_header_or_page_number_in_any_chunk(book: Document, columns: Document) -> None:
    for doc in (book, columns):
        for chunk in _chunks(doc):
            assert SOURCE["title"] not in chunk.text
            assert not re.search(r"^\s*(\d+|[ivx]+)\s*$", chunk.text, re.M), chunk.text


def test_two_columns_read_left_column_first(columns: Document) -> None:
    flat = _flat(columns.original)
    left, right = SOURCE["columns.pdf"]["columns"]
    at = [flat.find(_flat(p)) for p in left + right]
    assert -1 not in at and at == sorted(at)
    assert flat.find(_flat(right[-1])) < flat.find(_flat(SOURCE["columns.pdf"]["paragraphs"][-4]))  # outro


def test_lines_join_without_spaces_and_punctuation_survives(book: Document, columns: Document) -> None:
    for doc, name in ((book, "book.pdf"), (columns, "columns.pdf")):
        assert not CJK_GAP.search(doc.original), CJK_GAP.search(doc.original)
        for para in SOURCE[name]["paragraphs"]:
            if "……" not in para and "　" not in para:  # 目录 rows and headings are re-spaced by design
                assert para in doc.original, para  # whole: wrapped lines joined, ，。“”《》、：； intact
    assert SOURCE["book.pdf"]["across_pages"] in book.original  # runs over the break from page 1 to 2


def test_scanned_page_is_reported_by_its_page_number(tmp_path: Path) -> None:
    shutil.copy(DATA / "book.pdf", tmp_path / "book.pdf")
    corpus = load_corpus([tmp_path])
    assert [d.source for d in corpus.documents] == ["book.pdf"]  # the document keeps going past the scan
    assert corpus.skipped == (("book.pdf", "第4页（PDF 第6页）没有文字层（扫描页），未能提取"),)
    assert SOURCE["book.pdf"]["paragraphs"][-1] in corpus.documents[0].original  # the page after the scan


def test_a_sentence_is_cited_on_the_page_it_is_printed_on(book: Document) -> None:
    chunks = _chunks(book)
    for page, sentence in SOURCE["book.pdf"]["on_page"].items():
        start = book.original.index(sentence)
        hit = next(c for c in chunks if c.kind == "body" and c.start <= start < c.end)
        assert hit.page == page, (sentence, hit.page)
    start = book.original.index(SOURCE["book.pdf"]["across_pages"])
    end = start + len(SOURCE["book.pdf"]["across_pages"]) - 1
    assert next(c.page for c in chunks if c.start <= start < c.end) == "1"
    assert next(c.page_end for c in chunks if c.start <= end < c.end) == "2"  # its end is on page 2
