"""The index folder: exact dense search, save → load, manifest and checksum checks, idempotent builds."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from rag.types import QueryParams
from rag.config import ChunkSettings
from rag.errors import IndexCorruptError, IndexMismatchError, IndexMissingError
from rag.build import build as build_index
from rag.store.index import Index, chunk_from_dict
from rag.store.manifest import corpus_stale
from rag.retrieve.retriever import Retriever

QUESTIONS = ["什么是党的群众工作？", "这本书的主编是谁？", "网络群工是第几章？", "老百姓盼着过上好日子，党怎么看待？"]


@pytest.fixture
def copy_of(built, tmp_path: Path) -> Path:
    """A private copy of the built index folder, free to damage."""
    target = tmp_path / "index"
    shutil.copytree(built.index_dir, target)
    return target


def test_faiss_top_k_equals_numpy_brute_force(pipeline, embedder, built) -> None:
    import faiss

    flat = faiss.read_index(str(built.index_dir / "vectors.faiss"))
    vectors = flat.reconstruct_n(0, flat.ntotal)
    owners = np.load(built.index_dir / "units.npy")[:, 0]
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)  # normalised: inner product = cosine
    for qvec in embedder.encode_queries(QUESTIONS):
        brute = np.full(len(pipeline.index), -1.0, dtype=np.float32)
        np.maximum.at(brute, owners, vectors @ qvec)
        want = sorted(range(len(brute)), key=lambda r: (-brute[r], r))[:10]
        got = sorted(pipeline.index.dense(qvec, len(vectors)).items(), key=lambda x: (-x[1], x[0]))[:10]
        assert [r for r, _ in got] == want
        assert np.allclose([s for _, s in got], brute[want], atol=1e-5)


def test_saved_and_loaded_index_give_identical_hits(pipeline, built, embedder) -> None:
    from rag.build import HAND_LEXICON, make_index
    from rag.chunk import chunk_corpus
    from rag.ingest.corpus import load_corpus

    docs = [d for d in load_corpus(list(built.corpus)).documents if d.source != HAND_LEXICON]
    chunks = chunk_corpus(docs, built.chunk)
    cache = built.index_dir.parent / "cache" / "embeddings" / embedder.fingerprint[:16]
    fresh, encoded = make_index(docs, chunks, embedder, built.corpus, cache)
    assert encoded == 0  # every sentence came from the embedding cache the build filled
    assert [c.id for c in fresh.chunks] == [c.id for c in pipeline.index.chunks]
    in_memory = Retriever(fresh, embedder, built.retrieve)
    for q in QUESTIONS:
        a, b = in_memory.search(pipeline.prepare(q), k=8), pipeline.search(q, params=QueryParams(k=8))
        assert [h.chunk.id for h in a] == [h.chunk.id for h in b]
        assert np.allclose([h.score for h in a], [h.score for h in b], atol=1e-5)


def test_other_chunk_settings_are_refused_with_the_rebuild_command(built, embedder) -> None:
    other = replace(built, chunk=ChunkSettings(target_chars=200, max_chars=300, overlap_sentences=0))
    with pytest.raises(IndexMismatchError) as err:
        Index.load(built.index_dir, other, embedder)
    message = str(err.value)
    assert "manifest.json" in message and "target_chars" in message
    assert f"python -m rag build --index {built.index_dir}" in message


def test_another_model_is_refused(built, embedder, copy_of: Path) -> None:
    manifest = json.loads((copy_of / "manifest.json").read_text(encoding="utf-8"))
    manifest["model"]["fingerprint"] = "0" * 64
    (copy_of / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    with pytest.raises(IndexMismatchError, match="模型不同"):
        Index.load(copy_of, replace(built, index_dir=copy_of), embedder)


@pytest.mark.parametrize("name", ["vectors.faiss", "chunks.json", "bm25/data.csc.index.npy", "lexicon.txt"])
def test_a_truncated_file_is_named_in_the_error(built, embedder, copy_of: Path, name: str) -> None:
    path = copy_of / name
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(IndexCorruptError) as err:
        Index.load(copy_of, replace(built, index_dir=copy_of), embedder)
    assert str(path) in str(err.value) and "rag build" in str(err.value)


def test_a_missing_index_says_how_to_build_it(built, embedder, tmp_path: Path) -> None:
    with pytest.raises(IndexMissingError, match="rag build"):
        Index.load(tmp_path / "nothing", replace(built, index_dir=tmp_path / "nothing"), embedder)


def test_build_is_idempotent_and_a_failed_build_leaves_the_index_intact(built, embedder, monkeypatch) -> None:
    # A sibling of the session index, so the embedding cache (embeddings/cache next to it) is shared.
    again = replace(built, index_dir=built.index_dir.parent / "index-again")
    report = build_index(again, embedder=embedder)
    table = json.loads((built.index_dir / "chunks.json").read_text(encoding="utf-8"))
    assert report.embedded == 0 and report.chunks == len(table)
    first = json.loads((built.index_dir / "manifest.json").read_text(encoding="utf-8"))
    second = json.loads((again.index_dir / "manifest.json").read_text(encoding="utf-8"))
    assert second["files"] == first["files"]  # same chunk ids, vectors, BM25 and lexicon, byte for byte
    second.pop("built_at"), first.pop("built_at")
    assert second == first

    def interrupted(self, folder: Path) -> None:
        (folder / "vectors.faiss").write_bytes(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(Index, "save", interrupted)
    with pytest.raises(KeyboardInterrupt):
        build_index(again, embedder=embedder, force=True)  # unforced, the unchanged index would be kept
    monkeypatch.undo()
    after = json.loads((again.index_dir / "manifest.json").read_text(encoding="utf-8"))
    assert after["files"] == second["files"]
    assert Index.load(again.index_dir, again, embedder).chunks == tuple(chunk_from_dict(d) for d in table)
    assert not list(again.index_dir.parent.glob("index-again.building-*"))


def test_neighbours_are_the_previous_and_next_chunk_of_the_same_document(pipeline) -> None:
    chunks = pipeline.index.chunks
    middle = next(c for c in chunks[1:-1] if c.kind == "body")
    around = pipeline.index.neighbours(middle.id)
    assert [c.ordinal for c in around] == [middle.ordinal - 1, middle.ordinal + 1]
    assert all(c.source == middle.source for c in around)
    assert [c.ordinal for c in pipeline.index.neighbours(chunks[0].id)] == [chunks[0].ordinal + 1]


def test_corpus_changes_are_reported_as_stale(built, pipeline, tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    shutil.copytree(built.corpus[0], corpus)
    moved = replace(built, corpus=(corpus,))
    assert corpus_stale(moved, pipeline.index.manifest) is None
    book = next(p for p in corpus.iterdir() if p.name != "lexicon.txt")
    book.write_text(book.read_text(encoding="utf-8") + "\n新的一段。\n", encoding="utf-8")
    (corpus / "extra.md").write_text("# 新文件\n", encoding="utf-8")
    reason = corpus_stale(moved, pipeline.index.manifest)
    assert reason and f"修改 corpus/{book.name}" in reason and "新增 corpus/extra.md" in reason
    status = pipeline.status()
    assert status.chunks == len(pipeline.index) and not status.stale and status.corpus_checksum


def test_sentence_vectors_are_the_model_vectors_of_the_chunk_sentences(pipeline, embedder) -> None:
    chunk = next(c for c in pipeline.index.chunks if c.kind == "body" and len(c.text) > 200)
    spans, vectors = pipeline.index.sentence_vectors(chunk.id)
    assert len(spans) == len(vectors) > 1 and spans == sorted(spans)
    assert all(0 <= a < b <= len(chunk.text) for a, b in spans)
    fresh = embedder.encode_passages([chunk.text[a:b] for a, b in spans])
    assert np.allclose((fresh * vectors).sum(axis=1), 1.0, atol=1e-3)
