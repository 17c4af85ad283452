from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from rag.chunk import chunk_corpus, chunk_document
from rag.config import ROOT, ChunkSettings
from rag.ingest.corpus import load_corpus, read_document
from rag.types import Chunk, Document

CORPUS = ROOT / "corpus"
SETTINGS = ChunkSettings()


@pytest.fixture(scope="module")
def book() -> Document:
    return read_document(CORPUS / "qunzhong-gongzuo-excerpt.txt", CORPUS)


@pytest.fixture(scope="module")
def chunks(book: Document) -> list[Chunk]:
    return chunk_document(book, SETTINGS)


def _containing(chunks: list[Chunk], phrase: str) -> list[Chunk]:
    found = [c for c in chunks if phrase in c.text]
    assert found, phrase
    return found


def test_chunk_text_is_the_exact_span(book: Document, chunks: list[Chunk]) -> None:
    for c in chunks:
        assert c.text == book.original[c.start:c.end]
        assert c.text.strip() == c.text and c.text
        assert c.source == book.source
    assert [c.ordinal for c in chunks] == list(range(len(chunks)))


def test_lengths_respect_the_settings(chunks: list[Chunk]) -> None:
    assert all(len(c.text) <= SETTINGS.max_chars for c in chunks)
    body = [c for c in chunks if c.kind == "body"]
    assert sum(len(c.text) for c in body) / len(body) > SETTINGS.target_chars * 0.6


def test_no_chunk_crosses_a_section(book: Document, chunks: list[Chunk]) -> None:
    for c in chunks:
        inside = [b for b in book.blocks if b.start < c.end and b.end > c.start]
        assert {b.section for b in inside} == {c.section}, c.text[:30]
        assert {b.kind for b in inside} == {c.kind}


def test_every_heading_starts_a_chunk(book: Document, chunks: list[Chunk]) -> None:
    starts = {c.start for c in chunks}
    for b in book.blocks:
        if b.is_heading and b.kind == "body":
            nxt = next(x for x in book.blocks if x.start > b.start)
            assert b.start in starts or nxt.is_heading  # a bare heading before a sub-heading is not a chunk


def test_no_caption_or_image_description_in_body_chunks(chunks: list[Chunk]) -> None:
    for c in chunks:
        if c.kind == "body":
            assert not any(w in c.text for w in ("▲", "微反恐", "新华社记者", "/摄", "stylized", "Jian"))
    (caption,) = _containing(chunks, "微反恐")
    assert caption.kind == "caption" and caption.page == "2" and caption.page_estimated
    (description,) = _containing(chunks, "calligraphic")
    assert description.kind == "caption" and description.page == "序言"
    (note,) = _containing(chunks, "外文出版社2014年版")
    assert note.kind == "footnote" and note.page == "7"


@pytest.mark.parametrize("phrase, pages", [
    ("始终以“人民战争”的方式，实施群防群控", ("1", "2")),
    ("组织建立安源路矿工人俱乐部，通过深入的群众工作", ("3", "4")),
])
def test_page_split_sentence_is_whole_with_both_pages(chunks: list[Chunk], phrase: str,
                                                     pages: tuple[str, str]) -> None:
    for c in _containing(chunks, phrase):
        assert (c.page, c.page_end) == pages and c.page_estimated
        assert c.kind == "body"


def test_front_matter_and_toc_are_searchable_chunks(chunks: list[Chunk]) -> None:
    copyright_ = [c for c in chunks if c.section == ("版权页",)]
    assert copyright_
    assert all(c.kind == "front" and c.page == "版权页" and not c.page_estimated for c in copyright_)
    assert any("定价：33.00 元" in c.text for c in copyright_)
    toc = [c for c in chunks if c.kind == "toc"]
    assert toc and all(c.page == "目录" for c in toc)
    (ch6,) = _containing(toc, "第六章")
    assert "构建网上网下“立体化群工”新格局" in ch6.text  # a chapter's rows stay together
    assert {c.section for c in chunks if c.kind == "front"} == {("封面",), ("版权页",)}


def test_ids_are_content_hashes(book: Document, chunks: list[Chunk]) -> None:
    assert len({c.id for c in chunks}) == len(chunks)
    again = chunk_document(read_document(CORPUS / "qunzhong-gongzuo-excerpt.txt", CORPUS), SETTINGS)
    assert [c.id for c in again] == [c.id for c in chunks]
    smaller = chunk_document(book, replace(SETTINGS, target_chars=150, max_chars=250))
    assert len(smaller) > len(chunks) and all(len(c.text) <= 250 for c in smaller)
    assert {c.id for c in smaller} != {c.id for c in chunks}


def test_overlap_repeats_the_last_sentence(chunks: list[Chunk], book: Document) -> None:
    body = [c for c in chunks if c.kind == "body"]
    pairs = [(a, b) for a, b in zip(body, body[1:]) if a.section == b.section]
    assert pairs and all(b.start < a.end for a, b in pairs)  # overlap_sentences=1 by default
    plain = chunk_document(book, replace(SETTINGS, overlap_sentences=0))
    body0 = [c for c in plain if c.kind == "body"]
    assert all(b.start >= a.end for a, b in zip(body0, body0[1:]))


def test_form_feeds_and_page_markers_give_exact_pages(tmp_path: Path) -> None:
    sheets = [
        "<!-- page 版权页 -->\n书名：测试\n定价：10.00 元",
        "<!-- page iii -->\n序 言\n\n序言的第一句话。",
        "序言的第二页，仍在序言里。",
        "<!-- page 1 -->\n第一章 总论\n\n第一节 概念\n\n群众工作是党的生命线。这句话跨越了",
        "第二页的开头。第二页还有一句。\n\n第二节 方法\n\n方法很重要。",
        "第三页：方法的说明。",
    ]
    (tmp_path / "book.txt").write_text("\f".join(sheets), encoding="utf-8")
    doc = load_corpus([tmp_path]).documents[0]
    assert [(p.label, p.source) for p in doc.pages] == [
        ("版权页", "label"), ("iii", "label"), ("iv", "label"), ("1", "label"), ("2", "label"), ("3", "label")]
    got = {(c.section[-1], c.page, c.page_end, c.page_estimated) for c in chunk_document(doc, SETTINGS)}
    assert ("第一节 概念", "1", "2", False) in got  # "这句话跨越了|第二页的开头" joined, both pages
    assert ("第二节 方法", "2", "3", False) in got
    assert any(section == "序言" and (p, e) == ("iii", "iv") for section, p, e, _ in got)
    assert all(p is not None and not est for _, p, _, est in got)  # every chunk has its exact printed page


def test_chunk_corpus_concatenates_documents_in_order(tmp_path: Path) -> None:
    for name in ("b.txt", "a.txt"):
        (tmp_path / name).write_text(f"第一章 {name}\n内容。", encoding="utf-8")
    chunks = chunk_corpus(load_corpus([tmp_path]).documents, SETTINGS)
    assert [c.source for c in chunks] == ["a.txt", "b.txt"]
    assert chunks[0].id != chunks[1].id and chunks[0].page is None


def test_chunks_command_prints_section_paths_and_pages(capsys: pytest.CaptureFixture[str]) -> None:
    import argparse

    from rag.commands import chunks as command

    parser = argparse.ArgumentParser()
    command.add_parser(parser.add_subparsers())
    assert command.run(parser.parse_args(["chunks", "--corpus", str(CORPUS), "--section", "历史地位"])) == 0
    out = capsys.readouterr()
    assert "二、群众工作的历史地位" in out.out and "约第3–4页" in out.out
    assert "第一节 党的群众工作的地位与作用 › 二、群众工作的历史地位" in out.out
    assert "（一）推动经济社会发展" not in out.out and "段（1 个文件）" in out.err
    assert command.run(parser.parse_args(["chunks", "--corpus", str(CORPUS), "--kind", "toc", "--json"])) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert rows and all(r["kind"] == "toc" and r["page"] == "目录" for r in rows)
