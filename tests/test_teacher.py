"""The teacher's view: rag/study/teacher.py's counts, and pages/2_教师视图.py showing counts equal to a recount
of the raw log (the SQLite rows and feedback.jsonl lines written here), its CSV and its password."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
from collections import Counter
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from rag.render import Turn, append_feedback, feedback_record
from rag.study import teacher
from rag.study.history import History, HistorySettings, new_token
from rag.study.quiz import bank

PAGE = Path(__file__).resolve().parent.parent / "pages" / "2_教师视图.py"
ASKED = 10  # two sessions × (three of QUESTIONS + the first two)
QUESTIONS = ("什么是党的群众工作？", "群众工作的核心是什么？", "群众工作的作用有哪些？", "宇宙飞船怎么造？",
             "什么是“大群工”？", "群众工作的实质是什么？")


@pytest.fixture(scope="module")
def log(pipeline, tmp_path_factory):
    """A raw log: two sessions' questions, 👍/👎 on some answers, a practice round with wrong answers."""
    folder = tmp_path_factory.mktemp("teacher")
    store = History(HistorySettings(folder / "history.sqlite3"))
    feedback = folder / "feedback.jsonl"
    for s, token in enumerate((new_token(), new_token())):
        for i, q in enumerate(QUESTIONS[s::2] + QUESTIONS[:2]):
            turn = Turn(q, pipeline.ask(q))
            store.append(token, turn)
            if i % 2 == 0:
                append_feedback(feedback, feedback_record(turn, 0 if (i + s) % 3 else 1))
    append_feedback(feedback, {"rating": 0, "question": "旧问题", "chunk_ids": ["gone-chunk"]})
    items = bank(pipeline.index.chunks, pipeline.index.lexicon)[::9]
    for j, it in enumerate(items):
        store.record(new_token(), it, (1.0, 0.5, 0.0)[j % 3])
    return folder


def recount(folder: Path, chunk) -> Counter:
    """The counts by 节, straight from the raw rows (independent of rag/study/teacher.py)."""
    con = sqlite3.connect(folder / "history.sqlite3")
    out: Counter = Counter()
    for book, ch, sec, refused in con.execute("SELECT book, chapter, section, refused FROM turns"):
        place = (book, ch or "（无）", sec or "（无）") if book else ("（书中未找到）", "（无）", "（无）")
        out[place + ("提问",)] += 1
        out[place + ("拒答",)] += refused
    for line in (folder / "feedback.jsonl").read_text(encoding="utf-8").splitlines():
        rec = json.loads(line)
        if rec["rating"] == 0:
            c = chunk(rec["chunk_ids"][0]) if rec["chunk_ids"] else None
            place = (c.book, c.section[0], c.section[1] if len(c.section) > 1 else "（无）") if c else \
                ("（段落已不在索引中）" if rec["chunk_ids"] else "（书中未找到）", "（无）", "（无）")
            out[place + ("差评",)] += 1
    for book, ch, sec, score in con.execute("SELECT book, chapter, section, score FROM results"):
        out[(book, ch, sec or "（无）", "作答")] += 1
        out[(book, ch, sec or "（无）", "答错")] += score < 1
    return +out


def lookup(pipeline):
    def chunk(cid: str):
        try:
            return pipeline.index.chunk(cid)
        except KeyError:
            return None
    return chunk


def as_counter(rows) -> Counter:
    return +Counter({(r["book"], r["chapter"], r["section"], c): int(r[c]) for r in rows for c in teacher.COUNTS})


def test_aggregate_equals_a_recount(pipeline, log) -> None:
    store = History(HistorySettings(log / "history.sqlite3"))
    rows = teacher.aggregate(store.rows("turns"), teacher.read_feedback(log / "feedback.jsonl"),
                             store.rows("results"), lookup(pipeline), "section")
    assert as_counter(rows) == recount(log, lookup(pipeline))
    totals = teacher.totals(rows)
    assert totals["提问"] == ASKED and totals["拒答"] >= 1 and totals["差评"] >= 2 and totals["答错"] >= 1
    by_page = teacher.aggregate(store.rows("turns"), [], [], lookup(pipeline), "page")
    assert sum(r["提问"] for r in by_page) == ASKED and all("page" in r for r in by_page)
    table = list(csv.reader(io.StringIO(teacher.to_csv(rows, "section").lstrip("\ufeff"))))
    assert table[0] == ["书", "章", "节", *teacher.COUNTS] and len(table) == len(rows) + 1


@pytest.fixture
def page_env(built, log, monkeypatch):
    for name in ("RAG_CORPUS", "RAG_MODEL", "RAG_LLM_BASE_URL", "RAG_LLM_MODEL", "RAG_HISTORY",
                 "RAG_TEACHER_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("RAG_INDEX_DIR", str(built.index_dir))
    monkeypatch.setenv("RAG_FEEDBACK_PATH", str(log / "feedback.jsonl"))
    monkeypatch.setenv("RAG_HISTORY_PATH", str(log / "history.sqlite3"))
    return monkeypatch


def test_teacher_page_counts_equal_a_recount_of_the_raw_log(page_env, pipeline, log) -> None:
    at = AppTest.from_file(str(PAGE), default_timeout=180)
    at.run()
    assert not at.exception, at.exception
    frame = at.dataframe[0].value
    shown = +Counter({(r["书"], r["章"], r["节"], c): int(r[c]) for r in frame.to_dict("records")
                      for c in teacher.COUNTS})
    assert shown == recount(log, lookup(pipeline))
    metrics = {m.label: int(m.value) for m in at.metric}
    assert metrics["提问"] == ASKED
    assert at.get("download_button")  # the CSV export
    at.radio(key="level").set_value("页").run()
    assert "页" in at.dataframe[0].value.columns and int(at.dataframe[0].value["提问"].sum()) == ASKED


def test_teacher_page_asks_for_the_password(page_env) -> None:
    page_env.setenv("RAG_TEACHER_PASSWORD", "s3cret")
    at = AppTest.from_file(str(PAGE), default_timeout=180)
    at.run()
    assert not at.exception and not at.dataframe and not at.metric
    at.text_input(key="password").input("wrong").run()
    assert at.error and not at.dataframe
    at.text_input(key="password").input("s3cret").run()
    assert at.dataframe and not at.error
