"""The Ray build engine on a two-node local cluster (1 CPU each, loopback only) equals the local build.

Oracle: rag.build.build of the same corpus (the shipped book plus a small second book written here): the same
chunk ids, units, BM25 files and lexicon byte for byte, the same vectors bit for bit, and the Parquet shards
hold exactly those vectors and the local terms. Work must have run on both node ids; a re-run after the second
book changed encodes only that book's new sentences.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("ray")
pytestmark = pytest.mark.ray

ROOT = Path(__file__).resolve().parent.parent
SECOND_BOOK = """# 社区工作手册

## 第一章 走进社区

社区工作者要经常深入居民家中，了解群众的实际困难。对于群众反映的问题，要做到件件有回音、事事有着落。

## 第二章 化解矛盾

化解邻里纠纷，首先要倾听双方的诉求。调解员应当保持中立，依法依规提出解决办法，并跟踪回访。
"""


@pytest.fixture(scope="module")
def cluster():
    from rag.scale.ray_build import local_cluster

    with local_cluster(nodes=2, object_store_bytes=100 * 2**20) as c:
        yield c


@pytest.fixture(scope="module")
def library(tmp_path_factory) -> tuple[Path, ...]:
    extra = tmp_path_factory.mktemp("second")
    (extra / "社区工作手册.md").write_text(SECOND_BOOK, encoding="utf-8")
    (extra / "社区工作手册.book.json").write_text('{"title": "社区工作手册（试用本）"}', encoding="utf-8")
    return (ROOT / "corpus", extra)


def _settings(settings, folder: Path, corpus):
    return replace(settings, index_dir=folder / "index", corpus=tuple(corpus))


def _same_files(a: Path, b: Path) -> None:
    from rag.store.index import BM25_DIR, BOOKS, CHUNKS, LEXICON, UNITS
    from rag.store.lexical import BM25_FILES

    for name in (CHUNKS, UNITS, BOOKS, LEXICON, "vectors.faiss", *(f"{BM25_DIR}/{f}" for f in BM25_FILES)):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


def test_ray_build_equals_local_build_on_two_nodes(cluster, library, settings, embedder, tmp_path):
    import faiss
    import pyarrow.parquet as pq
    import ray

    from rag.build import build
    from rag.scale.ray_build import build_ray
    from rag.store.index import passage_text
    from rag.store.lexical import terms
    from rag.text.tokenizer import Tokenizer

    local_s = _settings(settings, tmp_path / "local", library)
    ray_s = _settings(settings, tmp_path / "ray", library)
    build(local_s, embedder=embedder)
    result = build_ray(ray_s, embedder=embedder)

    node_ids = {n["NodeID"] for n in ray.nodes() if n["Alive"]}
    assert len(node_ids) == 2
    assert set(result.nodes["encode"]) == node_ids  # the actor pool used both machines
    assert set(result.nodes["read+chunk"]) | set(result.nodes["terms"]) <= node_ids
    assert result.report.embedded == result.report.sentences - result.report.cached > 0
    a, b = local_s.index_dir, ray_s.index_dir
    _same_files(a, b)  # book.json too: the metadata file's title reaches both builds
    assert "社区工作手册（试用本）" in (b / "book.json").read_text(encoding="utf-8")
    local_vectors = faiss.read_index(str(a / "vectors.faiss"))
    vectors = local_vectors.reconstruct_n(0, local_vectors.ntotal)

    manifest = json.loads((b / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["engine"]["name"] == "ray"
    shards = sorted(name for name in manifest["files"] if name.startswith("shards/"))
    assert shards == ["shards/sentences-00000.parquet", "shards/terms-00000.parquet"]
    sentences = pq.read_table(b / shards[0])
    shard_vectors = np.stack(sentences.column("vector").to_numpy(zero_copy_only=False)).astype(np.float32)
    assert shard_vectors.tobytes() == vectors.tobytes()  # bitwise
    chunks = json.loads((a / "chunks.json").read_text(encoding="utf-8"))
    units = np.load(a / "units.npy")
    assert sentences.column("chunk_id").to_pylist() == [chunks[r]["id"] for r in units[:, 0]]
    words = (a / "lexicon.txt").read_text(encoding="utf-8").split()
    tokenizer = Tokenizer(words)
    from rag.store.index import chunk_from_dict

    expected = [terms(tokenizer, passage_text(chunk_from_dict(c))) for c in chunks]
    table = pq.read_table(b / shards[1])
    assert table.column("chunk_id").to_pylist() == [c["id"] for c in chunks]
    assert table.column("terms").to_pylist() == expected

    # One book changes: only its new sentences go to the actors; the rest come from the cache.
    changed = library[1] / "社区工作手册.md"
    changed.write_text(SECOND_BOOK + "\n## 第三章 总结\n\n社区工作贵在坚持，要把服务群众的好做法坚持下去。\n",
                       encoding="utf-8")
    again = build_ray(ray_s, embedder=embedder).report
    assert 0 < again.embedded <= 3  # the new chapter's sentence(s) only
    assert again.sentences == again.embedded + again.cached
    build(local_s, embedder=embedder)
    _same_files(a, b)
