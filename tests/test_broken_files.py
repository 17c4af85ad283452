"""Broken or stale index files, failed builds and rebuilds under a serving Pipeline (issue 7).

Every damaged index must give an error that names the file and the fix — from the library, the CLI and the
page (in Chinese) — and a failed load must change nothing on disk. A build that fails half-way (a bad corpus,
a full disk, Ctrl-C) leaves the previous index byte for byte as it was, and a Pipeline loaded from it keeps
answering; a rebuild swapped in under a loaded Pipeline disturbs nothing, and the page picks it up on its next
run. Index copies live next to the session index so that builds reuse its embedding cache.
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import json
import os
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from rag import render
from rag.errors import BuildError, CorpusError, IndexCorruptError, IndexMismatchError, IndexMissingError
from rag.build import build as build_index
from rag.pipeline import Pipeline

from page_helpers import point_page_at
from page_helpers import open_page as _page
QUESTION = "群众工作的核心是什么？"


def snapshot(folder: Path) -> dict[str, tuple[str, int]]:
    """Every file under `folder`: sha256 and mtime, so a rewrite with the same bytes is noticed too."""
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    return {p.relative_to(folder).as_posix(): (hashlib.sha256(p.read_bytes()).hexdigest(),
                                                p.stat().st_mtime_ns) for p in files}


def as_json(answer) -> str:
    return json.dumps(dataclasses.asdict(answer), ensure_ascii=False, sort_keys=True, default=str)


@pytest.fixture
def sibling(built, request) -> Path:
    """A private copy of the session index beside it (same embedding cache), removed afterwards."""
    target = built.index_dir.parent / f"index-{request.node.name[:40]}"
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(built.index_dir, target)
    yield target
    shutil.rmtree(target, ignore_errors=True)
    for leftover in target.parent.glob(f"{target.name}.*"):
        shutil.rmtree(leftover, ignore_errors=True)


@pytest.fixture
def page_env(built, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    point_page_at(monkeypatch, built.index_dir, tmp_path / "feedback.jsonl")
    return monkeypatch


# --- damaged, mismatched and stale indexes ------------------------------------------------------------------


def _truncate(folder: Path) -> str:
    path = folder / "chunks.json"
    path.write_bytes(path.read_bytes()[:200])
    return str(path)


def _flip_a_byte(folder: Path) -> str:
    """Same size, one byte changed: only the checksum can tell."""
    path = folder / "vectors.faiss"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    return str(path)


def _delete(folder: Path) -> str:
    (folder / "bm25" / "vocab.index.json").unlink()
    return str(folder / "bm25" / "vocab.index.json")


def _garble_manifest(folder: Path) -> str:
    (folder / "manifest.json").write_text('{"format": 1, "files": ', encoding="utf-8")
    return str(folder / "manifest.json")


def _edit_manifest(key: str, value) -> callable:
    def edit(folder: Path) -> str:
        manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
        section, field = key.split(".")
        manifest[section][field] = value
        (folder / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False), encoding="utf-8")
        return str(folder / "manifest.json")

    return edit


def _remove_folder(folder: Path) -> str:
    shutil.rmtree(folder)
    return str(folder / "manifest.json")


DAMAGE = {
    "folder missing": (_remove_folder, IndexMissingError, "没有找到索引"),
    "file truncated": (_truncate, IndexCorruptError, "已损坏"),
    "byte flipped": (_flip_a_byte, IndexCorruptError, "校验和"),
    "file deleted": (_delete, IndexCorruptError, "缺失"),
    "manifest garbled": (_garble_manifest, IndexCorruptError, "无法读取"),
    "another model": (_edit_manifest("model.fingerprint", "f" * 64), IndexMismatchError, "模型不同"),
    "other chunk settings": (_edit_manifest("chunk.target_chars", 200), IndexMismatchError, "target_chars"),
}


@pytest.mark.parametrize("case", list(DAMAGE))
def test_a_damaged_index_is_named_with_its_fix_everywhere_and_nothing_is_rewritten(
        case: str, built, embedder, sibling: Path, page_env, capsys) -> None:
    damage, error, words = DAMAGE[case]
    named = damage(sibling)
    before = snapshot(sibling) if sibling.exists() else None
    settings = replace(built, index_dir=sibling)
    fix = f".venv/bin/python -m rag build --index {sibling}"

    with pytest.raises(error) as err:  # the library
        Pipeline.load(settings, embedder=embedder)
    assert named in str(err.value) and words in str(err.value) and fix in str(err.value)

    from rag.__main__ import main  # the CLI: a Chinese message on stderr, exit code 1, no traceback

    assert main(["ask", QUESTION, "--index", str(sibling)]) == 1
    stderr = capsys.readouterr().err
    assert stderr.startswith("错误：") and named in stderr and fix in stderr

    page_env.setenv("RAG_INDEX_DIR", str(sibling))  # the page: the error in Chinese, the command, no chat
    at = _page()
    (shown,) = [e.value for e in at.error]
    assert shown.startswith("索引不可用") and render.escape_markdown(named) in shown
    assert [c.value for c in at.code] == [fix] and not at.chat_input

    after = snapshot(sibling) if sibling.exists() else None
    assert after == before  # a failed load reads; it never repairs, rebuilds or rewrites


def test_a_changed_corpus_is_named_by_the_cli_and_the_page(built, page_env, tmp_path: Path, capsys) -> None:
    corpus = tmp_path / "corpus"
    shutil.copytree(built.corpus[0], corpus)
    book = next(p for p in corpus.glob("*.txt") if p.name != "lexicon.txt")
    book.write_text(book.read_text("utf-8") + "\n新增的一段话。\n", "utf-8")
    page_env.setenv("RAG_CORPUS", str(corpus))
    fix = f".venv/bin/python -m rag build --index {built.index_dir} --corpus {corpus}"

    from rag.__main__ import main

    assert main(["ask", QUESTION, "--index", str(built.index_dir), "--json"]) == 0
    out = capsys.readouterr()
    assert json.loads(out.out)["citations"]  # still answers, from the old index …
    assert f"修改 corpus/{book.name}" in out.err and fix in out.err  # … naming the changed file and the fix

    at = _page()
    (warning,) = [w.value for w in at.main.warning]
    assert "语料已变化" in warning and render.escape_markdown(book.name) in warning
    assert [c.value for c in at.main.code] == [fix]


# --- builds that fail half-way ------------------------------------------------------------------------------


def _interrupt(monkeypatch: pytest.MonkeyPatch, _: Path) -> type[BaseException]:
    """Ctrl-C while the new folder is being written."""
    from rag.store import index

    def save(self, folder: Path) -> None:
        (folder / "vectors.faiss").write_bytes(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(index.Index, "save", save)
    return KeyboardInterrupt


def _disk_full_in_python(monkeypatch: pytest.MonkeyPatch, _: Path) -> type[BaseException]:
    """The chunk table is half written when the disk fills up (ENOSPC from a Python write)."""
    from rag.store import index

    def half_then_full(path: Path, rows) -> None:
        path.write_text(json.dumps(rows[: len(rows) // 2], ensure_ascii=False)[:-1], encoding="utf-8")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(index, "_write_rows", half_then_full)
    return BuildError


def _disk_full_in_faiss(monkeypatch: pytest.MonkeyPatch, _: Path) -> type[BaseException]:
    """FAISS writes its vectors to a device that really is full (/dev/full): it raises RuntimeError."""
    import faiss

    real = faiss.write_index
    monkeypatch.setattr(faiss, "write_index", lambda idx, path: real(idx, "/dev/full"))
    return BuildError


def _bad_corpus(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> type[BaseException]:
    """The corpus holds nothing readable (a binary file named .txt)."""
    bad = tmp_path / "bad-corpus"
    bad.mkdir()
    (bad / "教材.txt").write_bytes(b"\x00\x01\x02PK\x03\x04" * 100)
    monkeypatch.setenv("RAG_CORPUS", str(bad))
    return CorpusError


FAILURES = {"Ctrl-C": _interrupt, "disk full (Python write)": _disk_full_in_python,
            "disk full (FAISS)": _disk_full_in_faiss, "bad corpus file": _bad_corpus}


@pytest.mark.parametrize("case", list(FAILURES))
def test_a_build_failing_half_way_leaves_the_previous_index_intact_and_in_use(
        case: str, built, embedder, sibling: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
        capsys) -> None:
    settings = replace(built, index_dir=sibling)
    serving = Pipeline.load(settings, embedder=embedder)
    answer = as_json(serving.ask(QUESTION))
    before = snapshot(sibling)
    monkeypatch.delenv("RAG_CORPUS", raising=False)
    expected = FAILURES[case](monkeypatch, tmp_path)

    from rag.__main__ import main

    code = main(["build", "--index", str(sibling), "--quiet", "--force"])  # through the CLI, as a user would
    err = capsys.readouterr().err
    if expected is KeyboardInterrupt:
        assert code == 130 and "已中断" in err
    else:  # one Chinese line naming the problem, exit code 1
        assert code == 1 and err.startswith("错误："), err
        if expected is BuildError:
            assert "No space left on device" in err and f"原有索引 {sibling} 未改动" in err
        else:
            assert "教材.txt" in err and "二进制" in err
    monkeypatch.undo()

    assert snapshot(sibling) == before  # not one byte of the previous index changed
    assert not list(sibling.parent.glob(f"{sibling.name}.building-*"))  # no half-built folder left behind
    assert as_json(serving.ask(QUESTION)) == answer  # the loaded Pipeline keeps serving
    assert as_json(Pipeline.load(settings, embedder=embedder).ask(QUESTION)) == answer  # and a reload works


# --- rebuilds under a serving Pipeline and page ------------------------------------------------------------

NEW_PARAGRAPH = "群众工作的试金石是群众满意不满意，这是本测试新增的一句话。"


def _copy_corpus(built, tmp_path: Path) -> Path:
    corpus = tmp_path / "corpus"
    shutil.copytree(built.corpus[0], corpus)
    return corpus


def _grow(corpus: Path) -> Path:
    """A new paragraph before the one on 群众工作的核心, so the chunks around it change."""
    book = next(p for p in corpus.glob("*.txt") if p.name != "lexicon.txt")
    text = book.read_text("utf-8")
    anchor = text.index("群众工作的核心")
    start = text.rfind("\n", 0, anchor) + 1
    book.write_text(text[:start] + NEW_PARAGRAPH + "\n\n" + text[start:], "utf-8")
    return corpus


def test_a_rebuild_under_a_loaded_pipeline_changes_nothing_for_it(built, embedder, sibling: Path,
                                                                 tmp_path: Path) -> None:
    settings = replace(built, index_dir=sibling)
    serving = Pipeline.load(settings, embedder=embedder)
    questions = [QUESTION, "这本书的主编是谁？", "红烧肉怎么做？", "它的作用呢？"]
    before = [as_json(serving.ask(q, ["什么是党的群众工作？"])) for q in questions]
    cited = serving.ask(QUESTION).citations[0].chunk
    old_files = snapshot(sibling)

    rebuilt = replace(settings, corpus=(_grow(_copy_corpus(built, tmp_path)),))
    build_index(rebuilt, embedder=embedder)
    assert snapshot(sibling) != old_files  # the folder now holds the new index; the old one is deleted
    assert not list(sibling.parent.glob(f"{sibling.name}.*"))

    # The loaded Pipeline read everything at load time: same answers, neighbours and sentence vectors.
    assert [as_json(serving.ask(q, ["什么是党的群众工作？"])) for q in questions] == before
    assert serving.index.neighbours(cited.id) and len(serving.index.sentence_vectors(cited.id)[1])
    fresh = Pipeline.load(rebuilt, embedder=embedder)
    assert len(fresh.index) != len(serving.index)
    assert NEW_PARAGRAPH[:20] in fresh.ask("群众工作的试金石是什么？").text


@pytest.mark.parametrize("during", ["verify_files", "_open"])
def test_a_load_racing_a_rebuild_reads_one_whole_build(during: str, built, embedder, sibling: Path,
                                                      tmp_path: Path, monkeypatch) -> None:
    """A rebuild is swapped in while a load is checking (or reading) the files: the load starts again and
    returns the new build whole, instead of a checksum error or a mix of two builds."""
    from rag.store import index as ix
    from rag.store import manifest as mf

    settings = replace(built, index_dir=sibling)
    rebuilt = replace(settings, corpus=(_grow(_copy_corpus(built, tmp_path)),))
    module = mf if during == "verify_files" else ix
    real = getattr(module, during)
    swaps: list[int] = []

    def swap_first(*args):
        if not swaps:
            swaps.append(1)
            build_index(rebuilt, embedder=embedder)
        return real(*args)

    monkeypatch.setattr(module, during, swap_first)
    loaded = ix.Index.load(sibling, settings, embedder)
    monkeypatch.undo()
    assert swaps
    fresh = ix.Index.load(sibling, rebuilt, embedder)
    assert loaded.manifest == fresh.manifest and loaded.chunks == fresh.chunks
    assert any(NEW_PARAGRAPH[:20] in c.text for c in loaded.chunks)


def test_the_page_picks_up_a_rebuilt_index_and_keeps_old_conversations(built, embedder, sibling: Path,
                                                                       page_env, tmp_path: Path) -> None:
    corpus = _copy_corpus(built, tmp_path)  # the same settings before and after: only the index changes
    page_env.setenv("RAG_INDEX_DIR", str(sibling))
    page_env.setenv("RAG_CORPUS", str(corpus))
    at = _page()
    at.chat_input[0].set_value(QUESTION).run()
    (turn,) = at.session_state["turns"]
    old_ids = {c.chunk.id for c in turn.answer.citations}

    _grow(corpus)
    build_index(replace(built, index_dir=sibling, corpus=(corpus,)), embedder=embedder)
    fresh = Pipeline.load(replace(built, index_dir=sibling, corpus=(corpus,)), embedder=embedder)
    assert old_ids - {c.id for c in fresh.index.chunks}  # some cited passage no longer exists

    at.session_state["status-open"] = True  # 索引状态 and the answers' 前后文: their content is made only when open
    for c in turn.answer.citations:
        at.session_state[f"feedback-0-0-context-{c.n}"] = True
    at.run()  # the next run of the page: the same session, the new index
    assert not at.exception, at.exception
    status = "\n".join(m.value for m in at.sidebar.markdown)
    assert f"段落数：{len(fresh.index)}" in status
    assert at.session_state["turns"] == [turn]  # the conversation survives the rebuild …
    assert "索引已重建，此段的前后文请重新提问后查看。" in [c.value for c in at.caption]  # … gone passages said
    at.chat_input[0].set_value("群众工作的试金石是什么？").run()
    assert not at.exception, at.exception
    new = at.session_state["turns"][-1].answer
    assert new is not None and NEW_PARAGRAPH[:20] in new.text


# --- feedback and export ---------------------------------------------------------------------------------


def _record(n: int) -> dict[str, object]:
    return {"rating": n % 2, "question": f"问题{n}" * 50, "answer": "回答" * 500, "chunk_ids": [f"c{n}"]}


def test_a_feedback_write_failing_half_way_leaves_no_half_line(tmp_path: Path, monkeypatch) -> None:
    """The disk fills up after half a line is written: the half is cut off and the error reaches the page."""
    path = tmp_path / "feedback.jsonl"
    render.append_feedback(path, _record(1))
    before = path.read_bytes()
    real_write = os.write
    calls = []

    def half_then_full(fd: int, data: bytes) -> int:
        calls.append(len(data))
        if len(calls) == 1:
            return real_write(fd, data[: len(data) // 2])  # a short write, as on a nearly full disk
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(render.os, "write", half_then_full)
    with pytest.raises(OSError) as err:
        render.append_feedback(path, _record(2))
    assert err.value.errno == errno.ENOSPC and len(calls) == 2  # the rest of the line was tried, then failed
    monkeypatch.undo()
    assert path.read_bytes() == before  # no half line left behind
    render.append_feedback(path, _record(3))
    rows = [json.loads(line) for line in path.read_text("utf-8").splitlines()]
    assert [r["chunk_ids"] for r in rows] == [["c1"], ["c3"]]


def test_the_page_survives_a_feedback_write_that_fails(page_env, monkeypatch) -> None:
    at = _page()
    at.chat_input[0].set_value(QUESTION).run()

    def full_disk(path: Path, record: dict[str, object]) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(render, "append_feedback", full_disk)
    at.feedback[0].set_value(1).run()
    assert not at.exception, at.exception
    assert any("反馈未能保存" in t.value and "No space left on device" in t.value for t in at.toast)
    (turn,) = at.session_state["turns"]  # the conversation is untouched
    assert turn.answer is not None and turn.answer.citations
    assert at.session_state["export_md"].count("## 问题") == 1  # and can still be exported
