"""Property-based tests (hypothesis): arbitrary Unicode through normalisation, sentence splitting, ingestion
and chunking, question preparation and the whole answer path never raises anything but the project's own
errors, and the invariants the later stages rely on always hold.

Generated books mix book-like lines (headings, 目录 rows, page markers, form feeds, footnotes, captions) with
arbitrary Unicode, so both the parsers' happy paths and their corners are reached. Example counts are moderate
to keep the suite fast.
"""

from __future__ import annotations

import tempfile
import unicodedata
from pathlib import Path

from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

from rag.chunk import chunk_document
from rag.config import ChunkSettings
from rag.errors import CorpusError, InputError, RagError
from rag.ingest.corpus import read_document
from rag.retrieve.query import clean, expand_followup, is_followup, prepare, usable_history
from rag.text.fold import compact, find_span, normalize
from rag.text.sentences import split_sentences
from rag.text.tokenizer import Tokenizer

FAST = hsettings(max_examples=150, deadline=None)
SLOW = hsettings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])

ANY_TEXT = st.text(st.characters(codec="utf-8"), max_size=300)  # every plane, controls, marks, no surrogates
WILD_TEXT = st.text(max_size=200)  # surrogates too: what a broken paste or a bad decode can hand us
BOOK_LINES = [
    "第一章 做好群众工作", "第二节 群众工作的方法", "一、群众工作的历史地位", "（一）推动经济社会发展", "# 标题",
    "## 小标题", "目录", "目 录", "第一章 做好群众工作是中国共产党人的历史责任 ……………… 1", "版权页",
    "图书在版编目（CIP）数据", "主编：李景田", "定价：33.00元", "序言", "▲ 图片说明（新华社记者 摄）",
    "^① 《习近平谈治国理政》，外文出版社2014年版。", "<!-- page 12 -->", "<!-- page iv -->", "\f", "",
    "党的群众工作，是党的事业生根的基础。", "群众工作的核心是正确处理人民内部矛盾^①。", "“大群工”是什么？",
    "这句话没有结束", "而是在下一页继续。", "A line of English text.", "12", "iv", "——", "……",
]
BOOKS = st.lists(st.one_of(st.sampled_from(BOOK_LINES), ANY_TEXT), max_size=25).map("\n".join)
CHUNKING = st.builds(ChunkSettings, target_chars=st.integers(5, 300), max_chars=st.integers(20, 450),
                     overlap_sentences=st.integers(0, 2)).filter(lambda s: s.max_chars >= s.target_chars)


@FAST
@given(WILD_TEXT)
def test_normalize_and_compact_keep_offsets(s: str) -> None:
    n = normalize(s)
    assert len(n) == len(s) and normalize(n) == n
    kept, offsets = compact(s)
    assert len(kept) == len(offsets) and offsets == sorted(set(offsets))
    assert all(normalize(s[o]) == ch for ch, o in zip(kept, offsets))
    for needle in (s[: len(s) // 2], kept[-5:]):
        span = find_span(s, needle)
        assert span is None or 0 <= span[0] < span[1] <= len(s)


@FAST
@given(WILD_TEXT)
def test_split_sentences_gives_ordered_stripped_spans(s: str) -> None:
    spans = split_sentences(s)
    previous = 0
    for a, b in spans:
        assert previous <= a < b <= len(s)
        piece = normalize(s[a:b])
        assert piece == piece.strip() and "\n" not in piece
        previous = b
    covered = "".join(s[a:b] for a, b in spans)
    assert len(covered) <= len(s)
    assert not normalize("".join(ch for i, ch in enumerate(s)
                                 if not any(a <= i < b for a, b in spans))).strip()  # only gaps are blank


def _document(text: str, suffix: str):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"book{suffix}"
        path.write_text(text, encoding="utf-8")
        return read_document(path, Path(tmp))


@SLOW
@given(BOOKS, st.sampled_from([".txt", ".md"]), CHUNKING)
def test_ingest_and_chunking_hold_their_invariants(text: str, suffix: str, chunking: ChunkSettings) -> None:
    try:
        doc = _document(text, suffix)
    except CorpusError:
        return  # "no text in this file": the project's own, explained error
    assert len(doc.text) == len(doc.original) and doc.text == normalize(doc.original)
    chunks = chunk_document(doc, chunking)
    for c in chunks:
        assert c.text == doc.original[c.start:c.end]  # offsets point at the chunk's text, always
        assert c.text.strip() and c.source == doc.source
    assert len({c.id for c in chunks}) == len(chunks)
    again = chunk_document(_document(text, suffix), chunking)
    assert [c.id for c in again] == [c.id for c in chunks]  # the same text chunks to the same ids


@FAST
@given(WILD_TEXT, st.integers(2, 600))
def test_prepare_cleans_or_refuses_with_an_input_error(raw: str, max_chars: int) -> None:
    try:
        query = prepare(raw, max_chars)
    except InputError as exc:
        assert str(exc).startswith(("请输入问题", "问题"))
        return
    assert query.text and query.shown and len(query.shown) <= max_chars
    assert not any(unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co") for ch in query.text + query.shown)
    assert query.truncated == (len(clean(raw)) > max_chars) or len(raw) > 50_000
    assert prepare(query.shown, max_chars).text == query.text  # what the page shows asks the same question


@FAST
@given(WILD_TEXT, st.lists(WILD_TEXT, max_size=3))
def test_followups_never_fail(question: str, history: list[str]) -> None:
    turns = usable_history(history, 500)
    assert len(turns) <= len(history)
    is_followup(question)
    assert isinstance(expand_followup(question, turns), str)


_TOKENIZER = Tokenizer(["大群工", "网络群工"])


@FAST
@given(ANY_TEXT)
def test_tokenizer_offsets_point_into_the_text(s: str) -> None:
    for word, a, b in _TOKENIZER.tokenize(s):
        assert 0 <= a < b <= len(s) and normalize(s[a:b]) == word
    assert all(w and not w.isspace() for w in _TOKENIZER.tokens(s))


@hsettings(max_examples=25, deadline=None)
@given(question=st.one_of(WILD_TEXT, st.sampled_from(BOOK_LINES)),
       history=st.lists(st.one_of(WILD_TEXT, st.sampled_from(BOOK_LINES)), max_size=2))
def test_the_whole_pipeline_raises_only_its_own_errors(pipeline, question: str, history: list[str]) -> None:
    for call in (lambda: pipeline.search(question, history), lambda: pipeline.ask(question, history)):
        try:
            result = call()
        except RagError:
            continue
        assert result is not None
    try:
        answer = pipeline.ask(question, history)
    except RagError:
        return
    for c in answer.citations:
        assert c.quote and c.quote in c.chunk.text
