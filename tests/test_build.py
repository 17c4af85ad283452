"""Skipping a build whose index is already on disk: what counts as unchanged, and what makes a real build."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from rag.__main__ import main
from rag.model.embed import planned_fingerprint
from rag.store.manifest import code_checksum
from rag.store.manifest import current as current_manifest
from rag.config import ROOT, ChunkSettings
from rag.build import build as build_index
from rag.store.index import Index


def stat_all(folder: Path) -> dict[str, tuple[int, int, int]]:
    """(inode, size, mtime) of every file: a build that writes anything changes at least one."""
    return {p.relative_to(folder).as_posix(): (p.stat().st_ino, p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def fresh(built, embedder, tmp_path: Path):
    """A private corpus copy and its own index, built for real. The index folder is a sibling of the session
    index, so the embedding cache is shared and the build encodes nothing."""
    corpus = tmp_path / "corpus"
    shutil.copytree(built.corpus[0], corpus)
    settings = replace(built, corpus=(corpus,), index_dir=built.index_dir.parent / f"index-{tmp_path.name}")
    report = build_index(settings, embedder=embedder)
    assert not report.up_to_date
    yield settings
    shutil.rmtree(settings.index_dir, ignore_errors=True)


def test_the_planned_fingerprint_is_the_loaded_embedders(settings, embedder) -> None:
    assert embedder.backend == "onnx-int8"
    assert planned_fingerprint(settings.model) == embedder.fingerprint
    assert planned_fingerprint(replace(settings.model, backend="torch")) is None  # needs the model loaded
    assert planned_fingerprint(replace(settings.model, name=str(ROOT / "no-such-model"))) is None


def test_an_unchanged_build_is_skipped_and_writes_nothing(fresh, embedder, capsys) -> None:
    before = stat_all(fresh.index_dir)
    manifest = json.loads((fresh.index_dir / "manifest.json").read_text(encoding="utf-8"))
    for report in (build_index(fresh, embedder=embedder), build_index(fresh)):  # given or planned model
        assert report.up_to_date and report.embedded == 0
        assert (report.chunks, report.sentences) == (manifest["counts"]["chunks"],
                                                     manifest["counts"]["sentences"])
        assert "ingest+chunk" not in report.timings
    argv = ["build", "--index", str(fresh.index_dir), "--corpus", str(fresh.corpus[0]), "--quiet"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert f"索引已是最新，未重建：{fresh.index_dir}" in out and "--force" in out
    assert stat_all(fresh.index_dir) == before
    assert manifest["code"] == code_checksum()


def test_the_skip_loads_neither_model_nor_bm25(fresh) -> None:
    """In a new process: an up-to-date index is recognised without ONNX Runtime, FAISS or bm25s."""
    script = ("import sys; from rag.__main__ import main; main(sys.argv[1:]); "
              "print(sorted(m for m in ('onnxruntime', 'faiss', 'bm25s', 'torch') if m in sys.modules))")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")} | {"HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-c", script, "build", "--index", str(fresh.index_dir),
                           "--corpus", str(fresh.corpus[0]), "--quiet"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "索引已是最新" in done.stdout and done.stdout.rstrip().endswith("[]")


def _edit_book(corpus: Path) -> None:
    book = next(p for p in corpus.iterdir() if p.name != "lexicon.txt")
    book.write_text(book.read_text(encoding="utf-8") + "\n群众路线是党的生命线和根本工作路线。\n", encoding="utf-8")


def _edit_lexicon(corpus: Path) -> None:
    with open(corpus / "lexicon.txt", "a", encoding="utf-8") as fh:
        fh.write("生命线\n")


@pytest.mark.parametrize("change", [
    _edit_book, _edit_lexicon,
    lambda corpus: (corpus / "extra.md").write_text("# 附录\n\n新加的一段文字，说明群众工作的方法。\n", encoding="utf-8"),
    lambda corpus: (corpus / "lexicon.txt").unlink(),
], ids=["edited book", "edited lexicon", "added file", "removed file"])
def test_a_corpus_change_makes_a_real_build(fresh, embedder, change) -> None:
    before = stat_all(fresh.index_dir)
    change(fresh.corpus[0])
    report = build_index(fresh, embedder=embedder)
    assert not report.up_to_date and stat_all(fresh.index_dir) != before
    manifest = Index.load(fresh.index_dir, fresh, embedder).manifest
    assert current_manifest(fresh, embedder) == manifest  # and the next build is skipped again
    assert build_index(fresh, embedder=embedder).up_to_date


@pytest.mark.parametrize("damage", ["same size", "truncated", "missing"])
def test_a_damaged_index_is_rebuilt(fresh, embedder, damage: str) -> None:
    path = fresh.index_dir / "bm25" / "data.csc.index.npy"
    data = path.read_bytes()
    if damage == "same size":
        path.write_bytes(data[:-8] + bytes(b ^ 0xFF for b in data[-8:]))
    elif damage == "truncated":
        path.write_bytes(data[: len(data) // 2])
    else:
        path.unlink()
    assert current_manifest(fresh, embedder) is None
    assert not build_index(fresh, embedder=embedder).up_to_date
    assert path.read_bytes() == data
    Index.load(fresh.index_dir, fresh, embedder)  # checks every file again


def test_a_missing_index_is_built(fresh, embedder) -> None:
    shutil.rmtree(fresh.index_dir)
    assert not build_index(fresh).up_to_date
    assert build_index(fresh).up_to_date


def test_other_settings_or_recipe_make_a_real_build(fresh, embedder) -> None:
    other = replace(fresh, chunk=ChunkSettings(target_chars=200, max_chars=300, overlap_sentences=0))
    assert not build_index(other, embedder=embedder).up_to_date
    assert build_index(other, embedder=embedder).up_to_date
    assert not build_index(fresh, embedder=embedder).up_to_date  # and back
    path = fresh.index_dir / "manifest.json"
    edits = (("code", lambda _: "0" * 64), ("libraries", lambda v: {**v, "python": "2.7"}),
             ("format", lambda _: 0), ("model", lambda v: {**v, "fingerprint": "0" * 64}))
    for key, edit in edits:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        assert current_manifest(fresh) == current_manifest(fresh, embedder) == manifest
        path.write_text(json.dumps({**manifest, key: edit(manifest[key])}), encoding="utf-8")
        assert current_manifest(fresh, embedder) is None and current_manifest(fresh) is None, key
        assert not build_index(fresh, embedder=embedder).up_to_date


def test_force_rebuilds_an_unchanged_index(fresh, capsys) -> None:
    before = stat_all(fresh.index_dir)
    argv = ["build", "--index", str(fresh.index_dir), "--corpus", str(fresh.corpus[0]), "--quiet", "--force"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert f"索引已写入 {fresh.index_dir}" in out and "未重建" not in out
    after = stat_all(fresh.index_dir)
    assert after.keys() == before.keys()
    assert all(after[name][0] != before[name][0] for name in before)  # every file written anew
    assert {n: s[1] for n, s in after.items()} == {n: s[1] for n, s in before.items()}


class CountingEmbedder:
    """The real embedder, counting the passages it is asked to encode."""

    def __init__(self, embedder) -> None:
        self._embedder = embedder
        self.passages: list[str] = []

    def __getattr__(self, name: str):
        return getattr(self._embedder, name)

    def encode_passages(self, texts, progress: bool = False):
        self.passages += list(texts)
        return self._embedder.encode_passages(texts, progress=progress)


def test_the_answer_stage_encodes_only_the_question_after_a_start(built, embedder) -> None:
    """The 目录 titles and the answer sentences that are not sentence units are stored by the build (with the
    vectors the embedder gives them), so warming a loaded pipeline and answering encode no passage."""
    from rag.answer.extract import encode_passages
    from rag.pipeline import Pipeline

    index = Index.load(built.index_dir, built, embedder)
    titles = {e.title for b in index.books for e in b.toc if e.title}
    assert titles and titles <= set(index.passages)
    assert len(index.passages) > len(titles)  # answer sentences too
    some = sorted(index.passages)[:5]
    assert np.allclose(encode_passages(embedder, {}, some), np.stack([index.passages[t] for t in some]), atol=1e-5)

    counting = CountingEmbedder(embedder)
    pipeline = Pipeline.load(built, embedder=counting)
    pipeline.answerer.warm()
    pipeline.ask("第一章第二节讲什么？")
    pipeline.ask("群众工作的地位和作用是什么？")
    assert counting.passages == []
