"""The build's embedding cache (rag/store/embedding_cache.py): one SQLite file per model, rows read back exactly,
earlier versions' .npy files still used, and a damaged cache never fails a build."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from rag.build import build, embed_texts
from rag.store.embedding_cache import DATABASE, EmbeddingCache

DIM = 4


def _rows(n: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    return {f"{i:064x}": rng.standard_normal(DIM).astype(np.float32) for i in range(n)}


def test_rows_come_back_bit_for_bit_and_missing_keys_are_left_out(tmp_path: Path) -> None:
    rows = _rows(1200)  # more than one SELECT batch
    with EmbeddingCache(tmp_path / "fp", DIM) as cache:
        cache.put(rows.items())
    with EmbeddingCache(tmp_path / "fp", DIM) as cache:
        got = cache.get([*rows, "f" * 64])
    assert set(got) == set(rows)
    assert all(np.array_equal(got[k].view(np.uint32), rows[k].view(np.uint32)) for k in rows)
    with EmbeddingCache(tmp_path / "fp", DIM + 1) as other:  # a row of another size is not this model's
        assert other.get(rows) == {}
    assert [p.name for p in (tmp_path / "fp").iterdir()] == [DATABASE]


def test_vectors_cached_as_npy_files_are_read_and_kept_in_the_database(tmp_path: Path) -> None:
    rows = _rows(3)
    folder = tmp_path / "fp"
    folder.mkdir()
    for key, row in rows.items():
        np.save(folder / f"{key}.npy", row, allow_pickle=False)
    (folder / f"{'e' * 64}.npy").write_bytes(b"not an array")  # damaged: simply not cached
    with EmbeddingCache(folder, DIM) as cache:
        assert list(cache.first(2)) == sorted(rows)[:2]  # a sample by key, .npy entries included
        assert set(cache.get([*rows, "e" * 64])) == set(rows)
    for path in folder.glob("*.npy"):
        path.unlink()
    with EmbeddingCache(folder, DIM) as cache:
        assert set(cache.get(rows)) == set(rows)


def test_a_damaged_database_is_set_aside_and_the_build_goes_on(built, embedder, tmp_path: Path) -> None:
    cache = tmp_path / "cache" / "embeddings" / embedder.fingerprint[:16]
    cache.mkdir(parents=True)
    (cache / DATABASE).write_bytes(b"\x00garbage" * 512)
    settings = replace(built, index_dir=tmp_path / "index")
    report = build(settings, embedder=embedder)
    assert report.embedded > 0 and report.books[0].encoded == report.sentences  # nothing came from the cache
    assert (cache / f"{DATABASE}.damaged").is_file()
    again = build(settings, embedder=embedder, force=True)
    assert again.embedded == 0  # the new database serves the second build


def test_embed_texts_encodes_each_distinct_text_once(embedder, tmp_path: Path) -> None:
    texts = ["群众路线是党的生命线。", "群众工作的核心是什么？", "群众路线是党的生命线。"]
    vectors, encoded = embed_texts(texts, embedder, tmp_path / "fp")
    assert encoded == 2 and np.array_equal(vectors[0], vectors[2])
    again, encoded = embed_texts(texts, embedder, tmp_path / "fp")
    assert encoded == 0 and np.array_equal(again.view(np.uint32), vectors.view(np.uint32))
