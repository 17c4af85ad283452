"""Hybrid retrieval on the real book: quality on the question set, follow-ups, kinds, footnotes, shape."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from rag.commands.eval import QUESTIONS
from rag.config import RetrieveSettings
from rag.errors import InputError
from rag.eval.questions import load_questions
from rag.eval.retrieval import retrieval
from rag.retrieve.retriever import NO_DENSE, Retriever, dense_z, fuse
from rag.store.lexical import top_rows
from rag.types import Query, QueryParams


def test_evidence_is_in_the_top_5_for_95_percent_of_answerable_questions(pipeline) -> None:
    report = retrieval(pipeline, load_questions(QUESTIONS))
    overall = report.rows["全部"]
    print("\n".join(f"{t}: {r}" for t, r in report.rows.items()))  # the figures, for the log
    assert overall["n"] >= 40
    assert overall["R@5"] >= 0.95, report.failures
    assert report.rows["paraphrase"]["R@5"] >= 0.9, report.failures


def test_a_followup_with_history_retrieves_the_section_it_refers_to(pipeline) -> None:
    hits = pipeline.search("它的出发点和落脚点是什么？", history=["什么是党的群众工作？"], params=QueryParams(k=3))
    assert any("出发点和落脚点" in h.chunk.text and h.chunk.section[-1].endswith("党的群众工作的基本概念和内涵")
               for h in hits)
    toc = pipeline.search("这一章从第几页开始？", history=["第六章讲什么？"], params=QueryParams(k=3))
    assert toc[0].chunk.kind == "toc" and "第六章" in toc[0].chunk.text


def test_front_matter_competes_and_is_labelled(pipeline) -> None:
    top = pipeline.search("这本书的主编是谁？", params=QueryParams(k=3))[0]
    assert top.chunk.kind == "front" and "李景田" in top.chunk.text


def test_a_footnote_follows_the_passage_that_cites_it(pipeline) -> None:
    hits = pipeline.search("“人民对美好生活的向往，就是我们的奋斗目标”这段话引自哪本书？", params=QueryParams(k=5))
    citing = next(i for i, h in enumerate(hits) if "^①" in h.chunk.text and h.chunk.kind == "body")
    assert hits[citing + 1].chunk.kind == "footnote" and "习近平谈治国理政" in hits[citing + 1].chunk.text


def test_hits_are_ranked_scored_and_free_of_duplicates(pipeline) -> None:
    for k in (1, 5, 10):
        hits = pipeline.search("群众工作有哪些作用？", params=QueryParams(k=k))
        assert [h.rank for h in hits] == list(range(1, k + 1))
        assert all(a.score >= b.score for a, b in zip(hits, hits[1:]))
        assert len({h.chunk.id for h in hits}) == k
        assert all(h.dense_score is not None and h.lexical_score is not None for h in hits)


def test_traditional_and_noisy_input_find_the_same_passage(pipeline) -> None:
    plain = pipeline.search("什么是党的群众工作？", params=QueryParams(k=1))[0].chunk.id
    assert pipeline.search("\u200b什麼是黨的群眾工作？\x1b[0m", params=QueryParams(k=1))[0].chunk.id == plain


@pytest.mark.parametrize("question", ["", "  \u200b ", "\x00"])
def test_empty_questions_are_refused_before_retrieval(pipeline, question: str) -> None:
    with pytest.raises(InputError):
        pipeline.search(question)


# --- fusion when only some chunks have a dense score (HNSW) -------------------------------------------------

FUSION_QUESTIONS = ["什么是党的群众工作？", "这本书的主编是谁？", "网络群工是第几章？", "群众工作有哪些作用？",
                    "新时期群众工作面临哪些挑战", "红烧肉怎么做？"]


def _top(scores: np.ndarray, n: int, minimum: float) -> list[int]:
    """top_rows as the figures were measured with: every row above `minimum` sorted (score, then row)."""
    rows = np.flatnonzero(scores > minimum)
    return [int(r) for r in rows[np.lexsort((rows, -scores[rows]))][:n]]


def test_top_rows_sorts_only_the_best_and_keeps_ties_in_row_order() -> None:
    rng = np.random.default_rng(3)
    for size, n in ((0, 5), (10, 0), (10, 50), (1000, 50), (100_000, 50)):
        scores = rng.integers(-3, 20, size).astype(np.float32)  # many ties, many rows at the minimum
        assert top_rows(scores, n, 0.0) == _top(scores, n, 0.0)
        assert top_rows(scores, n, -1.0) == _top(scores, n, -1.0)


def _arrays(index, qvec: np.ndarray, text: str) -> tuple[np.ndarray, np.ndarray, float]:
    """A score for every chunk, by brute force over every vector and BM25 row (the oracle)."""
    vectors = index.vectors.vectors(range(len(index.vectors)))
    dense = np.full(len(index), NO_DENSE, dtype=np.float32)
    np.maximum.at(dense, index.units[:, 0], vectors @ qvec)
    lexical, coverage = index.lexical_store.query(text)
    return dense, lexical, coverage


def test_exact_index_fusion_is_the_z_score_over_every_chunk(pipeline, embedder, built) -> None:
    """The shipped book: every chunk is a dense candidate, and the fused scores are exactly those of the
    formula over every chunk's score that the book and CMRC figures were measured with."""
    index = pipeline.index
    for text, qvec in zip(FUSION_QUESTIONS, embedder.encode_queries(FUSION_QUESTIONS)):
        dense, lexical, coverage = _arrays(index, qvec, text)
        candidates = index.dense(qvec, built.retrieve.dense_depth)
        assert sorted(candidates) == list(range(len(index)))
        assert np.allclose([candidates[r] for r in range(len(index))], dense, atol=1e-6)
        z = (dense - dense.mean()) / max(float(dense.std()), 1e-6)
        top = float(lexical.max())
        boost = built.retrieve.lexical_scale * coverage / top if top > 0 else 0.0
        rows = {*_top(dense, built.retrieve.candidates, -1.0), *_top(lexical, built.retrieve.candidates, 0.0)}
        want = sorted(((int(r), float(z[r] + boost * lexical[r])) for r in rows), key=lambda x: (-x[1], x[0]))
        got = fuse(candidates, index.lexical(text, built.retrieve.lexical_depth)[0], coverage, built.retrieve)
        assert [r for r, _ in got] == [r for r, _ in want]
        assert np.allclose([s for _, s in got], [s for _, s in want], atol=1e-5)


@pytest.fixture(scope="module")
def hnsw_book(built, embedder):
    """The book's real index with its sentence vectors in HNSW instead of the exact store."""
    from rag.build import HAND_LEXICON, make_index
    from rag.chunk import chunk_corpus
    from rag.ingest.corpus import load_corpus

    docs = [d for d in load_corpus(list(built.corpus)).documents if d.source != HAND_LEXICON]
    cache = built.index_dir.parent / "cache" / "embeddings" / embedder.fingerprint[:16]
    index, _ = make_index(docs, chunk_corpus(docs, built.chunk), embedder, built.corpus, cache,
                          vector_kind="hnsw")
    assert index.vectors.describe()["type"] == "hnsw"
    return index


SHALLOW = 20  # 20 of the book's ~200 sentence vectors stand for the 1000 of a million asked from HNSW


def test_fusion_takes_mean_and_spread_over_the_dense_candidates_only(hnsw_book, embedder) -> None:
    qvec = embedder.encode_queries(["网络群众工作怎么开展？"])[0]
    dense = hnsw_book.dense(qvec, SHALLOW)
    assert 0 < len(dense) < len(hnsw_book)  # at most 20 sentences came back: some chunks have no dense score
    z, floor = dense_z(dense)
    rows = sorted(dense)
    found = np.array([dense[r] for r in rows])
    assert np.allclose([z[r] for r in rows], (found - found.mean()) / found.std(), atol=1e-5)
    assert floor == min(z.values())  # dense alone never lifts a non-candidate above a candidate


def test_a_strong_bm25_match_without_a_dense_score_still_ranks(hnsw_book, embedder, built) -> None:
    """The dense side is given a vector of another question, so the 版权页 (the BM25 match) is no dense
    candidate; its BM25 score alone must still bring it into the top 3."""
    text = "这本书的主编是谁？"
    qvec = embedder.encode_queries(["网络群众工作怎么开展？"])[0]
    shallow = replace(built.retrieve, dense_depth=SHALLOW)
    dense = hnsw_book.dense(qvec, SHALLOW)
    lexical, _ = hnsw_book.lexical(text, 10)
    front = max(lexical, key=lexical.get)
    assert hnsw_book.chunks[front].kind == "front" and front not in dense
    query = Query(text=text, original=text)
    hits = Retriever(hnsw_book, embedder, shallow).search(query, qvec, k=3).hits
    (hit,) = [h for h in hits if h.chunk.id == hnsw_book.chunks[front].id]
    assert hit.dense_score == NO_DENSE and hit.lexical_score > 0


def test_the_merge_keeps_each_books_order_and_puts_cosines_in_common_units() -> None:
    """Two books fused on their own: the merged list keeps each one's order, and a chunk's dense part becomes
    the library-wide z-score of its cosine (dense-only fusion here: no BM25 candidates)."""
    from rag.retrieve.retriever import merge_books

    settings = RetrieveSettings()
    dense_by = {"a": {0: np.float32(0.91), 1: np.float32(0.85), 2: np.float32(0.80)},
                "b": {3: np.float32(0.88), 4: np.float32(0.87), 5: np.float32(0.70), 6: np.float32(0.69)}}
    fused_by = {b: fuse(d, {}, 0.0, settings) for b, d in dense_by.items()}
    merged = merge_books(fused_by, dense_by)
    for b, fused in fused_by.items():
        assert [r for r, _ in merged if r in dense_by[b]] == [r for r, _ in fused]
    cos = np.array([float(v) for d in dense_by.values() for v in d.values()])
    z = dict(zip([r for d in dense_by.values() for r in d], (cos - cos.mean()) / cos.std()))
    assert [r for r, _ in merged] == [0, 3, 4, 1, 2, 5, 6]
    assert np.allclose([s for _, s in merged], [z[r] for r, _ in merged], atol=1e-4)
