"""BM25 over jieba tokens and the book lexicon."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from rag.store.lexical import Lexical, build_lexicon, heading_terms, quoted_terms, terms
from rag.text.tokenizer import Tokenizer

BOOK_TERMS = ["大群工", "网络群工", "两个一百年", "最后一公里", "微反恐", "黄赌毒黑", "立体化群工"]


def test_the_book_terms_are_single_tokens_at_query_time(pipeline) -> None:
    tokenizer = pipeline.index.tokenizer  # loaded from the index's own lexicon.txt
    for term in BOOK_TERMS:
        assert term in tokenizer.tokens(f"书中讲到的{term}是什么意思"), term
    plain = Tokenizer()
    assert "网络群工" not in plain.tokens("开拓网络群工是新手段")  # without the lexicon jieba splits it


def test_the_lexicon_comes_from_the_book_and_the_hand_kept_list(pipeline, built) -> None:
    words = set(pipeline.index.lexicon)
    assert {"微反恐", "黄赌毒黑", "两院"} <= words  # quoted in the book, not in corpus/lexicon.txt
    assert {"群众路线", "党群关系"} <= words  # only in corpus/lexicon.txt
    assert "群众工作的作用" in words  # a short heading
    path = built.index_dir / "lexicon.txt"
    assert pipeline.index.manifest["lexicon"]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()


def test_quoted_and_heading_terms() -> None:
    assert quoted_terms("开拓“网络群工”是新手段，实现「两个一百年」，“基础性、经常性工作”") == {"网络群工", "两个一百年"}
    assert heading_terms("第六章 开拓“网络群工”是新手段") == {"网络群工"}
    assert heading_terms("◇ 三、群众工作的作用") == {"群众工作的作用"}
    assert build_lexicon(["“大群工”"], ["后 记"], ["群众路线", "x"]) == ["后记", "大群工", "群众路线"]


def test_punctuation_and_stop_words_are_not_terms(pipeline) -> None:
    tokenizer = pipeline.index.tokenizer
    assert terms(tokenizer, "的了吗？！……“”") == []
    rows, coverage = pipeline.index.lexical("的了吗？", 10)
    assert not rows and coverage == 0.0
    assert "群工" in terms(tokenizer, "大群工")  # long words also give their character bigrams


def test_bm25_finds_the_passage_and_measures_coverage(pipeline) -> None:
    rows, book_words = pipeline.index.lexical("安源路矿工人俱乐部", 3)
    best = max(rows, key=rows.get)
    assert len(rows) <= 3 and "安源路矿工人俱乐部" in pipeline.index.chunks[best].text
    _, everyday_words = pipeline.index.lexical("怎样让穷地方老百姓的腰包鼓起来", 3)
    assert book_words == 1.0 and everyday_words < 0.5


def test_the_saved_bm25_index_is_byte_for_byte_reproducible(pipeline, tmp_path: Path) -> None:
    texts = [c.text for c in pipeline.index.chunks]
    digests = []
    for name in ("a", "b"):
        files = Lexical.build(texts, pipeline.index.tokenizer).save(tmp_path / name)
        digests.append([hashlib.sha256(f.read_bytes()).hexdigest() for f in files])
    assert digests[0] == digests[1]
    loaded = Lexical.load(tmp_path / "a", pipeline.index.tokenizer)
    fresh = Lexical.build(texts, pipeline.index.tokenizer)
    assert np.array_equal(loaded.scores("群众路线"), fresh.scores("群众路线"))


def test_each_part_is_scored_with_its_own_statistics(pipeline, tmp_path: Path) -> None:
    """Two "books" in one store (the book's passages, and a few others between them): each one's rows, BM25
    scores and coverage are exactly those of a store of that book alone; saved and loaded alike."""
    tokenizer = pipeline.index.tokenizer
    book = [c.text for c in pipeline.index.chunks]
    other = ["社区议事会每季度召开一次会议。", "群众工作要讲究方法，方法对头才能事半功倍。", "调解矛盾要站稳立场。"]
    texts = book[:10] + other + book[10:]
    parts = [((0, 10), (13, len(texts))), ((10, 13),)]
    both = Lexical.build(texts, tokenizer, parts)
    both.save(tmp_path / "both")
    loaded = Lexical.load(tmp_path / "both", tokenizer)
    alone = Lexical.build(book, tokenizer), Lexical.build(other, tokenizer)
    where = [list(range(10)) + list(range(13, len(texts))), [10, 11, 12]]  # row in `texts` of each one's rows
    for question in ("群众工作的方法是什么？", "议事会多久开一次会", "安源路矿工人俱乐部", "红烧肉"):
        for store in (both, loaded):
            found = store.search_parts(question, 5, parts)
            for (rows, scores, coverage), own, at in zip(found, alone, where):
                want_rows, want_scores, want_coverage = own.search(question, 5)
                assert rows.tolist() == [at[r] for r in want_rows.tolist()], question
                assert scores.tolist() == want_scores.tolist() and coverage == want_coverage, question
    whole = both.search_parts("群众工作的方法是什么？", 5, [((0, len(texts)),)])[0]
    assert [a.tolist() for a in whole[:2]] == [a.tolist() for a in both.search("群众工作的方法是什么？", 5)[:2]]


def test_many_books_score_as_each_alone(pipeline) -> None:
    """Every chunk of the book a "book" of its own, and then pairs of chunks interleaved: every row's score for
    every query term is exactly that of a store of its book alone (the per-book scores are computed for all
    books at once, not by indexing each book)."""
    tokenizer = pipeline.index.tokenizer
    texts = [c.text for c in pipeline.index.chunks]
    n = len(texts)
    for parts in ([((r, r + 1),) for r in range(n)],
                  [tuple((r, r + 1) for r in range(i, n, n // 2)) for i in range(n // 2)]):
        store = Lexical.build(texts, tokenizer, parts)
        for question in ("群众工作的方法是什么？", "党的群众路线", "全心全意为人民服务的宗旨"):
            found = store.search_parts(question, n, parts)
            for runs, (rows, scores, _) in zip(parts, found):
                at = [r for a, b in runs for r in range(a, b)]
                want_rows, want_scores, _ = Lexical.build([texts[r] for r in at], tokenizer).search(question, n)
                assert rows.tolist() == [at[r] for r in want_rows.tolist()], question
                assert scores.tolist() == want_scores.tolist(), question
