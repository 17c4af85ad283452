from __future__ import annotations

from pathlib import Path

import pytest

from rag.config import ROOT
from rag.errors import CorpusError
from rag.ingest.corpus import load_corpus, read_document, split_text_pages
from rag.text.fold import normalize
from rag.types import Block, Document

CORPUS = ROOT / "corpus"


@pytest.fixture(scope="module")
def book() -> Document:
    return read_document(CORPUS / "qunzhong-gongzuo-excerpt.txt", CORPUS)


def _block_at(doc: Document, phrase: str) -> Block:
    pos = doc.original.find(phrase)
    assert pos >= 0, phrase
    return next(b for b in doc.blocks if b.start <= pos < b.end and not b.is_heading)


CH1 = "第一章 做好群众工作是中国共产党人的历史责任"
SEC1 = "第一节 党的群众工作的地位与作用"
KNOWN_SECTIONS = {
    "是做好新形势下群众工作的逻辑起点": (CH1,),
    "是开展群众工作、指导群众工作和做好新形势下群众工作的首要问题": (CH1, SEC1),
    "基本可以这样界定": (CH1, SEC1, "一、党的群众工作的基本概念和内涵"),
    "以正确运用党的群众路线为根本方法": (CH1, SEC1, "一、党的群众工作的基本概念和内涵"),
    "即“大群工”": (CH1, SEC1, "一、党的群众工作的基本概念和内涵"),
    "其根本目的是推动发展，实质是密切党群关系": (CH1, SEC1, "二、群众工作的历史地位"),
    "于1922年9月组织起安源路矿工人大罢工": (CH1, SEC1, "二、群众工作的历史地位"),
    "是党的群众工作的可持续之基": (CH1, SEC1, "二、群众工作的历史地位"),
    "“发展之重”“民生之本”“维稳之举”“执政之基”": (CH1, SEC1, "三、群众工作的作用"),
    "发展是我们党执政兴国的第一要务": (CH1, SEC1, "三、群众工作的作用", "（一）推动经济社会发展"),
    "要加大新一轮扶贫开发力度": (CH1, SEC1, "三、群众工作的作用", "（一）推动经济社会发展"),
    "学有所教、劳有所得、病有所医": (CH1, SEC1, "三、群众工作的作用", "（二）解决民生问题"),
    "要有本领不够的危机感": ("序言",),
    "不断提高履职尽责的素质和能力": ("序言",),
}


@pytest.mark.parametrize("phrase", KNOWN_SECTIONS)
def test_section_path_of_known_sentences(book: Document, phrase: str) -> None:
    block = _block_at(book, phrase)
    assert block.kind == "body"
    assert block.section == KNOWN_SECTIONS[phrase]


def test_text_is_normalised_original_and_same_length(book: Document) -> None:
    assert len(book.text) == len(book.original)
    assert book.text == normalize(book.original)
    assert book.title == "做好新形势下的群众工作"
    assert book.info is not None and book.info.fields["ISBN"] == "978-7-5099-0560-9"
    assert len(book.toc) == 33


def test_front_matter_pages_are_named_and_body_pages_estimated(book: Document) -> None:
    labels = [(p.label, p.source) for p in book.pages]
    assert labels[:4] == [("封面", "named"), ("版权页", "named"), ("序言", "named"), ("目录", "named")]
    body = [p for p in book.pages if p.source == "estimated"]
    assert [p.label for p in body] == [str(n) for n in range(1, 8)]  # anchored on 目录: 第一章 ··· 001
    assert book.original[body[0].start:].startswith("第一章")
    assert book.original[body[3].start:].startswith("工人俱乐部")  # the page break split 安源路矿|工人俱乐部
    assert all(a.end == b.start for a, b in zip(book.pages, book.pages[1:]))


def test_sentences_split_by_a_photo_or_page_are_joined(book: Document) -> None:
    assert "始终以“人民战争”的方式，实施群防群控" in book.original
    assert "组织建立安源路矿工人俱乐部，通过深入的群众工作" in book.original
    assert "帮助广大干部深入学习领会党的十八大和十八届三中、四中全会精神，深入学习贯彻党中央的战略部署" in book.original
    assert "有全国各级人大系统的群众工作" in book.original


def test_captions_credits_footnotes_and_image_description_are_their_own_blocks(book: Document) -> None:
    caption = _block_at(book, "“微反恐”进社区")
    assert caption.kind == "caption" and caption.page == "2" and caption.page_estimated
    assert "新华社记者 李紫恒/摄" in book.original[caption.start:caption.end]
    description = _block_at(book, "A stylized, calligraphic handwritten signature")
    assert description.kind == "caption" and description.section == ("序言",) and description.page == "序言"
    note = _block_at(book, "《习近平谈治国理政》")
    assert note.kind == "footnote" and note.page == "7"
    not_body = ("▲", "新华社记者", "stylized", "《习近平谈治国理政》，外文")
    for b in book.blocks:
        if b.kind == "body":
            assert not any(w in book.original[b.start:b.end] for w in not_body)


def test_repeated_title_page_appears_once(book: Document) -> None:
    cover = book.original[: book.pages[1].start]
    assert cover.count("全国干部培训教材编审指导委员会组织编写") == 1
    assert book.original.count("QUANGUO GANBU XUEXI PEIXUN JIAOCAI") == 1


def test_split_text_pages_with_form_feeds_and_markers() -> None:
    pages = split_text_pages("封面\f<!-- page iii -->\n序\f正文一\n<!-- page 12 -->\n正文二\f正文三")
    assert [(p.label, p.text.strip()) for p in pages] == [
        ("1", "封面"), ("iii", "序"), ("iv", "正文一"), ("12", "正文二"), ("13", "正文三")]
    assert split_text_pages("no pages")[0].label is None


def test_markdown_headings_give_the_section_path(tmp_path: Path) -> None:
    (tmp_path / "notes.md").write_text("# 总论\n\n引言一句。\n\n## 方法\n\n第一段\n接着写完。\n", encoding="utf-8")
    doc = read_document(tmp_path / "notes.md", tmp_path)
    assert _block_at(doc, "引言").section == ("总论",)
    block = _block_at(doc, "第一段接着写完。")  # a line wrapped mid-sentence is joined
    assert block.section == ("总论", "方法")
    assert doc.pages == () and doc.title == "总论"  # no page information at all: no page labels


def test_load_corpus_reports_unsupported_and_unreadable_files(tmp_path: Path) -> None:
    (tmp_path / "b.txt").write_text("第一章 总论\n群众工作是党的工作。", encoding="utf-8")
    (tmp_path / "a.md").write_text("# 题目\n\n正文。", encoding="utf-8")
    (tmp_path / "slides.docx").write_bytes(b"PK\x03\x04")
    (tmp_path / "broken.pdf").write_bytes(b"%PDF-1.4 truncated")
    (tmp_path / "binary.txt").write_bytes(b"\x00\x01\x02")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "c.txt").write_text("第二章 方法\n方法。", encoding="gb18030")
    (tmp_path / ".gitkeep").write_text("")
    corpus = load_corpus([tmp_path])
    assert [d.source for d in corpus.documents] == ["a.md", "b.txt", "sub/c.txt"]
    skipped = dict(corpus.skipped)
    assert set(skipped) == {"binary.txt", "broken.pdf", "slides.docx"}
    assert ".docx" in skipped["slides.docx"] and "broken.pdf" in skipped["broken.pdf"]
    assert corpus.documents[2].blocks[0].section == ("第二章 方法",)


def test_load_corpus_errors_name_the_path(tmp_path: Path) -> None:
    with pytest.raises(CorpusError, match="不存在.*missing"):
        load_corpus([tmp_path / "missing"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(CorpusError, match="没有可读取的文件"):
        load_corpus([tmp_path / "empty"])
    (tmp_path / "only").mkdir()
    (tmp_path / "only" / "x.doc").write_bytes(b"x")
    with pytest.raises(CorpusError, match="x.doc"):
        load_corpus([tmp_path / "only"])


def test_shipped_corpus_sets_the_lexicon_aside() -> None:
    corpus = load_corpus([CORPUS])
    assert [d.source for d in corpus.documents] == ["qunzhong-gongzuo-excerpt.txt"]
    assert corpus.skipped == ()
    assert [p.name for p in corpus.lexicons] in ([], ["lexicon.txt"])  # a word list, reported, not a document


def test_running_headers_and_footer_numbers_of_a_pdftotext_file(tmp_path: Path) -> None:
    sheets = []
    for k in range(1, 9):
        header = "做好新形势下的群众工作" if k % 2 == 0 else "第一章 做好群众工作是中国共产党人的历史责任"
        end = "。" if k == 8 else ""
        sheets.append(f"{header}\n\n第{k}页的句子，接着写到下一页{end}\n\n{k + 10}")
    (tmp_path / "book.txt").write_text("\f".join(sheets), encoding="utf-8")
    doc = read_document(tmp_path / "book.txt", tmp_path)
    assert [(p.label, p.source) for p in doc.pages] == [(str(k + 10), "printed") for k in range(1, 9)]
    assert doc.original.count("做好新形势下的群众工作") == 0  # the running header is gone
    heading, paragraph = doc.original.split("\n")
    assert heading == "第一章 做好群众工作是中国共产党人的历史责任"  # the chapter's own heading stays, once
    assert paragraph.startswith("第1页的句子，接着写到下一页第2页的句子") and paragraph.endswith("下一页。")
