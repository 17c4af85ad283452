"""The conversation store (rag/study/history.py): a round trip keeps every field of a turn, a reload or a
new process finds the conversation by its URL token, RAG_HISTORY=0 keeps nothing, and the app.py lines the
lead adds (mirrored in SNIPPET) restore a conversation on reload."""

from __future__ import annotations

import threading
from dataclasses import replace
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from rag.render import Turn
from rag.study import history
from rag.study.history import History, HistorySettings, turn_from_dict, turn_to_dict


def same(a: Turn, b: Turn) -> bool:
    if a.answer is None or b.answer is None:
        return a == b
    return replace(a, answer=replace(a.answer, extra={})) == replace(b, answer=replace(b.answer, extra={}))


@pytest.fixture
def store(tmp_path: Path) -> History:
    return History(HistorySettings(tmp_path / "h.sqlite3"))


def test_turn_survives_json_and_the_store(pipeline, store) -> None:
    turns = [Turn("什么是党的群众工作？", pipeline.ask("什么是党的群众工作？")),
             Turn("宇宙飞船怎么造？", pipeline.ask("宇宙飞船怎么造？")), Turn("？", error="请输入问题")]
    assert turns[0].answer.citations and turns[1].answer.refused
    token = history.new_token()
    for t in turns:
        store.append(token, turn_to_dict(t))
    again = [turn_from_dict(d) for d in History(store.settings).load(token)]  # a new process: a new store
    assert len(again) == 3 and all(same(a, b) for a, b in zip(turns, again))
    rows = store.rows("turns")
    assert [r["n"] for r in rows] == [0, 1, 2] and [r["refused"] for r in rows] == [0, 1, 0]
    c = turns[0].answer.citations[0].chunk
    assert (rows[0]["book"], rows[0]["chapter"], rows[0]["section"]) == (c.book, c.section[0], c.section[1])
    assert rows[1]["book"] is None
    assert store.load(history.new_token()) == []


def test_nothing_is_kept_when_history_is_off(tmp_path: Path) -> None:
    path = tmp_path / "off.sqlite3"
    s = HistorySettings.from_env({"RAG_HISTORY": "0", "RAG_HISTORY_PATH": str(path)})
    assert not s.enabled and s.path == path
    off = History(s)
    off.append(history.new_token(), {"question": "q", "answer": None, "error": None})
    assert not path.exists() and off.load(history.new_token()) == []
    assert HistorySettings.from_env({}).path.name == "history.sqlite3"


def test_bad_tokens_are_refused(store) -> None:
    for bad in ("", "short", "../../etc/passwd-aaaaaaaaaaaaaaaa", None, "x" * 200):
        store.append(bad, {"question": "q", "answer": None, "error": None})
        assert store.load(bad) == []
    assert store.rows("turns") == []


def test_concurrent_appends_number_turns_once_each(store) -> None:
    token = history.new_token()

    def add(k: int) -> None:
        for i in range(10):
            store.append(token, {"question": f"{k}-{i}", "answer": None, "error": None})

    threads = [threading.Thread(target=add, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    rows = store.rows("turns")
    assert sorted(r["n"] for r in rows) == list(range(40))
    assert sorted(d["question"] for d in store.load(token)) == sorted(f"{k}-{i}" for k in range(4) for i in range(10))


# The lines the lead adds to app.py (see the report), with a stand-in for the pipeline's answer.
SNIPPET = '''
import streamlit as st
from rag.render import Turn
from rag.study import history

token = st.query_params.get("c")
if not history.valid(token):
    token = history.new_token()
    st.query_params["c"] = token
if st.session_state.get("token") != token:
    st.session_state.token = token
    st.session_state.turns = [history.turn_from_dict(d) for d in history.load(token)]
if st.button("新对话", key="new"):
    st.session_state.token = st.query_params["c"] = history.new_token()
    st.session_state.turns = []
for turn in st.session_state.turns:
    st.markdown(turn.question)
question = st.chat_input("问")
if question:
    turn = Turn(question, error="（测试：不调用模型）")
    st.session_state.turns.append(turn)
    history.append(st.session_state.token, history.turn_to_dict(turn))
    st.markdown(question)
'''


def test_a_reload_keeps_the_conversation(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("RAG_HISTORY_PATH", str(tmp_path / "h.sqlite3"))
    monkeypatch.delenv("RAG_HISTORY", raising=False)
    at = AppTest.from_string(SNIPPET)
    at.run()
    token = at.query_params["c"]
    token = token[0] if isinstance(token, list) else token
    assert history.valid(token)
    at.chat_input[0].set_value("第一问").run()
    at.chat_input[0].set_value("第二问").run()
    reload = AppTest.from_string(SNIPPET)  # a new session (a reload, or a restarted server) with the same URL
    reload.query_params["c"] = token
    reload.run()
    assert not reload.exception
    assert [m.value for m in reload.markdown] == ["第一问", "第二问"]
    reload.button(key="new").click().run()
    fresh = reload.query_params["c"]
    assert (fresh[0] if isinstance(fresh, list) else fresh) != token
    assert [m.value for m in reload.markdown] == []
    assert [d["question"] for d in history.load(token)] == ["第一问", "第二问"]
