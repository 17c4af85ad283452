"""python -m rag search / eval / build through the real entry point (in process: the model is loaded once)."""

from __future__ import annotations

import json
from pathlib import Path

from rag.__main__ import main

HIT_KEYS = {"rank", "chunk_id", "score", "text", "section", "page", "page_end", "page_estimated", "kind",
            "source", "book"}


def test_search_json_has_the_documented_shape(built, pipeline, capsys) -> None:
    assert main(["search", "什么是党的群众工作", "--index", str(built.index_dir), "-k", "3", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"query", "hits"} and out["query"] == "什么是党的群众工作"
    assert [h["rank"] for h in out["hits"]] == [1, 2, 3]
    for hit in out["hits"]:
        assert set(hit) == HIT_KEYS
        chunk = pipeline.index.chunk(hit["chunk_id"])
        assert hit["text"] == chunk.text and hit["section"] == " › ".join(chunk.section)
        assert hit["page"] is None or isinstance(hit["page"], str)
        assert isinstance(hit["page_estimated"], bool) and isinstance(hit["score"], float)


def test_search_history_expands_a_followup(built, capsys) -> None:
    argv = ["search", "它的出发点和落脚点是什么？", "--index", str(built.index_dir), "--history", "什么是党的群众工作？"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "党的群众工作的出发点和落脚点" in out and "[1]" in out


def test_batch_gives_one_object_per_question_in_order(built, tmp_path: Path, capsys) -> None:
    batch = tmp_path / "questions.jsonl"
    batch.write_text('{"question": "它的含义是什么？", "history": ["什么是“大群工”？"]}\n\n这本书的主编是谁？\n'
                     '{"question": "   "}\n', encoding="utf-8")
    assert main(["search", "--batch", str(batch), "--index", str(built.index_dir), "-k", "2", "--json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [o["query"] for o in lines] == ["它的含义是什么？", "这本书的主编是谁？", "   "]
    assert any("大群工" in h["text"] for h in lines[0]["hits"])
    assert "李景田" in lines[1]["hits"][0]["text"] and len(lines[1]["hits"]) == 2
    assert lines[2]["hits"] == [] and "请输入问题" in lines[2]["error"]


def test_a_missing_index_is_a_clear_error_not_a_traceback(tmp_path: Path, capsys) -> None:
    assert main(["search", "群众工作", "--index", str(tmp_path / "none")]) == 1
    err = capsys.readouterr().err
    assert "没有找到索引" in err and "rag build" in err and "Traceback" not in err


def test_a_blank_question_is_told_before_any_index_or_model_is_touched(tmp_path: Path, capsys) -> None:
    # the index folder does not exist: a blank question must be refused first, with the prompt to ask
    assert main(["search", "\u3000\t\n", "--index", str(tmp_path / "none")]) == 1
    err = capsys.readouterr().err
    assert "请输入问题" in err and "索引" not in err


def test_eval_reports_recall_by_question_type(built, capsys) -> None:
    assert main(["eval", "--index", str(built.index_dir)]) == 0
    out = capsys.readouterr().out
    for label in ("R@1", "R@5", "MRR@10", "paraphrase", "followup", "全部"):
        assert label in out


def test_build_prints_counts_and_timings(built, capsys) -> None:
    target = built.index_dir.parent / "index-cli"  # a sibling: shares the session's embedding cache
    assert main(["build", "--index", str(target), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert f"索引已写入 {target}" in out and "段落" in out and "秒" in out
    built_files = json.loads((built.index_dir / "manifest.json").read_text(encoding="utf-8"))["files"]
    assert json.loads((target / "manifest.json").read_text(encoding="utf-8"))["files"] == built_files
