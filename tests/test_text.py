from __future__ import annotations

import jieba
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rag.text.fold import compact, find_span, normalize, squeeze
from rag.text.sentences import ends_sentence, split_sentences
from rag.text.tokenizer import Tokenizer


@pytest.fixture(scope="module")
def tok() -> Tokenizer:
    return Tokenizer()


@given(st.text())
def test_normalize_keeps_length_and_is_idempotent(s: str) -> None:
    n = normalize(s)
    assert len(n) == len(s)
    assert normalize(n) == n


def test_normalize_maps_width_forms_and_odd_spaces() -> None:
    assert normalize("（一）ＡＢＣ１２３，？") == "(一)ABC123,?"
    assert normalize("a\u00a0b\u3000c\td\x07e") == "a b c d e"
    assert normalize("第一\n第二") == "第一\n第二"  # newlines separate paragraphs and stay


def test_compact_matches_digit_cjk_spacing_and_maps_back() -> None:
    text = "到 2020 年年底城乡人民群众人均收入比 2010 年翻一番"
    span = find_span(text, "2020年年底")
    assert span is not None and text[span[0]:span[1]] == "2020 年年底"
    assert find_span(text, "比2010年翻一番") is not None
    assert find_span("主 编：李景田", "主编") == (0, 3)
    c, offsets = compact("hello world 的 x")
    assert c == "hello world的x" and len(offsets) == len(c)
    assert squeeze("做好群众工作是中国共产党人的 历史责任") == "做好群众工作是中国共产党人的历史责任"
    assert squeeze("（一） 推动") == "（一）推动"  # original characters are kept


def test_split_sentences_keeps_closing_quotes_and_covers_text() -> None:
    s = "他说：“人民对美好生活的向往，就是我们的奋斗目标。”^①群众利益无小事！真的？是的；好（见上）。\n末尾没有句号"
    parts = [s[a:b] for a, b in split_sentences(s)]
    assert parts == ["他说：“人民对美好生活的向往，就是我们的奋斗目标。”", "^①群众利益无小事！", "真的？", "是的；",
                     "好（见上）。", "末尾没有句号"]
    price = "定价：33.00 元，2015.2 出版。"
    assert split_sentences(price) == [(0, len(price))]  # "." is not a sentence end


@given(st.text(alphabet="群众工作。！？；”  \n，ab.", max_size=60))
def test_split_sentences_spans_are_ordered_and_stripped(s: str) -> None:
    spans = split_sentences(s)
    assert all(a < b for a, b in spans)
    assert all(b1 <= a2 for (_, b1), (a2, _) in zip(spans, spans[1:]))
    assert all(not s[a].isspace() and not s[b - 1].isspace() for a, b in spans)
    assert "".join(s[a:b] for a, b in spans).replace(" ", "") == "".join(s.split())


def test_ends_sentence_ignores_closing_quotes() -> None:
    assert ends_sentence("就是我们的奋斗目标。”")
    assert not ends_sentence("组织建立安源路矿")
    assert ends_sentence("具体来说：", "。：")


def test_tokens_drop_punctuation_spaces_and_stop_words(tok: Tokenizer) -> None:
    words = tok.tokens("我们党 90 多年的实践证明，做好群众工作是什么？")
    assert "90" in words and "群众" in words
    assert not {"的", "，", " ", "？", "什么", "是"} & set(words)
    assert tok.tokens("２０１５年") == tok.tokens("2015 年")  # width forms and CJK-digit spacing agree


def test_tokenize_offsets_point_into_the_original(tok: Tokenizer) -> None:
    s = "开拓“网络群工”是新手段，　到２０２０年"
    for word, start, end in tok.tokenize(s):
        assert normalize(s[start:end]) == word
        assert not word.isspace()


def test_add_words_changes_only_the_owned_tokenizer(tok: Tokenizer) -> None:
    tok.add_words(["网络群工", "最后一公里"])
    assert "网络群工" in [w for w, _, _ in tok.tokenize("开拓“网络群工”是新手段")]
    assert "最后一公里" in tok.tokens("做好服务群众“最后一公里”工作")
    assert "网络群工" not in jieba.dt.FREQ  # the global jieba dictionary is untouched
    assert "网络群工" not in Tokenizer().tokens("开拓网络群工")  # nor the process-wide base table


def test_base_dictionary_is_jiebas_own_table_and_segments_the_same(tok: Tokenizer) -> None:
    from rag.text.tokenizer import base_dictionary

    reference = jieba.Tokenizer()
    reference.initialize()
    freq, total = base_dictionary()
    assert total == reference.total and freq == reference.FREQ
    texts = ["做好新形势下的群众工作，必须坚持党的群众路线。", "人民对美好生活的向往，就是我们的奋斗目标。",
             "2015年2月北京第1版第1次印刷", "信访工作要抓好源头治理"]
    for text in texts:
        expected = [(w, a, b) for w, a, b in reference.tokenize(normalize(text), HMM=True) if not w.isspace()]
        assert Tokenizer().tokenize(text) == expected


def test_base_dictionary_cache_is_remade_when_stale_foreign_or_broken(tmp_path) -> None:
    import os
    import pickle

    from rag.text.tokenizer import _dictionary_stamp, _make_base, _read_base

    stamp = _dictionary_stamp()
    made = _make_base(tmp_path, stamp)
    path = tmp_path / "jieba-base.pickle"
    assert _read_base(path, stamp) == made and path.stat().st_mode & 0o077 == 0
    assert _read_base(path, {**stamp, "jieba": "0.0"}) is None  # another jieba version: not used
    os.chmod(path, 0o666)
    assert _read_base(path, stamp) is None  # writable by others: not trusted
    os.chmod(path, 0o600)
    path.write_bytes(b"not a pickle")
    assert _read_base(path, stamp) is None
    path.write_bytes(pickle.dumps((stamp, ["wrong"], 1)))
    assert _read_base(path, stamp) is None
