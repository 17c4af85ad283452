from __future__ import annotations

from pathlib import Path

import pytest

from bench.pdf_extract import write_pdf
from rag.chunk import chunk_document
from rag.config import ChunkSettings
from rag.errors import CorpusError
from rag.ingest.corpus import load_corpus, read_document

PAGES = [
    ["序 言", "这是一本关于群众工作的书，序言用罗马数字编页。"],
    ["序言的第二页，说明本书的编写目的。"],
    ["目 录", "第一章 群众工作的地位·····1", "第二章 群众工作的方法·····2"],
    ["第一章 群众工作的地位", "一、群众工作的概念", "党的群众工作是党的全部工作的基础，是密切党群关系的",
     "桥梁和纽带。群众工作的核心是正确处理人民内部矛盾。"],
    ["它要求每一个党员深入群众，倾听群众呼声，", "了解群众的诉求。", "第二章 群众工作的方法",
     "做好群众工作要讲究方法，坚持从群众中来，到群众中去。"],
    ["▲ 干部走访群众", "方法的第三页：一切为了群众，一切依靠群众。"],
]


@pytest.fixture(scope="module")
def labelled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("pdf") / "book.pdf"
    return write_pdf(path, PAGES, labels=[(0, "ROMAN_LOWER", 1), (3, "ARABIC", 1)],
                     footers=["i", "ii", "iii", "1", "2", "3"])


def test_pdf_page_labels_give_every_chunk_its_printed_page(labelled: Path) -> None:
    doc = read_document(labelled, labelled.parent)
    assert [(p.label, p.source) for p in doc.pages] == [
        ("i", "label"), ("ii", "label"), ("iii", "label"), ("1", "label"), ("2", "label"), ("3", "label")]
    got = {(c.kind, c.section[-1], c.page, c.page_end) for c in chunk_document(doc, ChunkSettings())}
    assert got == {
        ("body", "序言", "i", "ii"),
        ("toc", "目录", "iii", "iii"),
        ("body", "一、群众工作的概念", "1", "2"),  # "…党群关系的|桥梁…" and "…呼声，|了解…" joined
        ("body", "第二章 群众工作的方法", "2", "3"),
        ("caption", "第二章 群众工作的方法", "3", "3"),
    }
    assert "是密切党群关系的桥梁和纽带" in doc.original
    assert "\n1\n" not in doc.original and not doc.original.rstrip().endswith("3")  # footers dropped
    assert [e.heading for e in doc.toc] == ["第一章 群众工作的地位", "第二章 群众工作的方法"]


def test_printed_footer_numbers_replace_the_page_index(tmp_path: Path) -> None:
    body = [["第一章 总论", "群众工作是党的生命线。"], ["第二段在第十一页。"], ["第三段在第十二页。"]]
    path = write_pdf(tmp_path / "plain.pdf", body, footers=["— 10 —", "— 11 —", "— 12 —"])
    doc = read_document(path, tmp_path)
    assert [(p.label, p.source) for p in doc.pages] == [
        ("10", "printed"), ("11", "printed"), ("12", "printed")]
    path = write_pdf(tmp_path / "bare.pdf", body)
    assert [(p.label, p.source) for p in read_document(path, tmp_path).pages] == [
        ("1", "index"), ("2", "index"), ("3", "index")]


def test_broken_pdf_is_reported_by_name(tmp_path: Path) -> None:
    (tmp_path / "ok.txt").write_text("第一章 总论\n正文。", encoding="utf-8")
    (tmp_path / "bad.pdf").write_bytes(b"%PDF-1.7\n1 0 obj << /Type /Catalog >>\n%%EOF")
    with pytest.raises(CorpusError, match="bad.pdf"):
        read_document(tmp_path / "bad.pdf", tmp_path)
    corpus = load_corpus([tmp_path])
    assert [d.source for d in corpus.documents] == ["ok.txt"]
    assert [name for name, _ in corpus.skipped] == ["bad.pdf"]
