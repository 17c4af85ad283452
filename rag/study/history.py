"""Conversations that last, and practice results: one SQLite file under embeddings/ (RAG_HISTORY_PATH,
default embeddings/history.sqlite3), keyed by a random token from the page URL. Nothing is kept when
RAG_HISTORY=0. Only the random token is stored: no names, no addresses.

Tables: `turns` (token, n, time, the question, whether it was refused, where its first citation is — book,
章, 节, page — and the whole turn as JSON) and `results` (token, time, item id and kind, where its answer
key is, the score). Every call opens its own short connection: Streamlit runs sessions on many threads.
"""

from __future__ import annotations

import json
import re
import secrets
import sqlite3
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Mapping

from rag.config import Settings
from rag.render import Turn, chunk_page_label
from rag.store.index import chunk_from_dict, chunk_to_dict
from rag.types import Answer, Chunk, Citation

TOKEN = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
SCHEMA = """
CREATE TABLE IF NOT EXISTS turns (token TEXT NOT NULL, n INTEGER NOT NULL, at TEXT NOT NULL,
    question TEXT NOT NULL, refused INTEGER NOT NULL, book TEXT, chapter TEXT, section TEXT, page TEXT,
    data TEXT NOT NULL, PRIMARY KEY (token, n));
CREATE TABLE IF NOT EXISTS results (id INTEGER PRIMARY KEY, token TEXT NOT NULL, at TEXT NOT NULL,
    item TEXT NOT NULL, kind TEXT NOT NULL, book TEXT, chapter TEXT, section TEXT, page TEXT,
    score REAL NOT NULL);
"""
_SETUP = threading.Lock()  # one thread of this process sets a file up (WAL, tables); the others wait
_READY: set[str] = set()


@dataclass(frozen=True)
class HistorySettings:
    path: Path
    enabled: bool = True
    teacher_password: str | None = None  # RAG_TEACHER_PASSWORD: asked by the teacher's view when set

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> HistorySettings:
        """From Settings (rag/config.py reads RAG_HISTORY_PATH, RAG_HISTORY and RAG_TEACHER_PASSWORD)."""
        study = Settings.from_env(env).study
        return cls(study.history_path, study.history, study.teacher_password)


def new_token() -> str:
    return secrets.token_urlsafe(16)


def valid(token: object) -> bool:
    return isinstance(token, str) and bool(TOKEN.match(token))


def where(chunk: Chunk | None) -> dict[str, str | None]:
    """Book, 章, 节 and page label of a chunk, as the teacher's view groups them."""
    if chunk is None:
        return {"book": None, "chapter": None, "section": None, "page": None}
    s = chunk.section
    return {"book": chunk.book, "chapter": s[0] if s else None, "section": s[1] if len(s) > 1 else None,
            "page": chunk_page_label(chunk)}


# --- turns as JSON ---------------------------------------------------------------------------------------


def turn_to_dict(turn: Turn) -> dict[str, Any]:
    a = turn.answer
    answer = None if a is None else {
        "question": a.question, "text": a.text, "mode": a.mode, "refused": a.refused,
        "notices": list(a.notices), "pointer": a.pointer, "resolved_question": a.resolved_question,
        "citations": [{"n": c.n, "quote": c.quote, "score": float(c.score), "flagged": c.flagged,
                       "chunk": chunk_to_dict(c.chunk)} for c in a.citations]}
    return {"question": turn.question, "answer": answer, "error": turn.error}


def turn_from_dict(d: Mapping[str, Any]) -> Turn:
    a = d.get("answer")
    answer = None if a is None else Answer(
        question=a["question"], text=a["text"], mode=a["mode"], refused=bool(a["refused"]),
        notices=tuple(a.get("notices") or ()), pointer=a.get("pointer"),
        resolved_question=a.get("resolved_question"),
        citations=tuple(Citation(c["n"], chunk_from_dict(c["chunk"]), c["quote"], c["score"],
                                 bool(c.get("flagged"))) for c in a.get("citations") or ()))
    return Turn(d["question"], answer, d.get("error"))


# --- the store -------------------------------------------------------------------------------------------


class History:
    """The store behind the page: load / append a conversation, record a practice result, read the log."""

    def __init__(self, settings: HistorySettings | None = None) -> None:
        self.settings = settings or HistorySettings.from_env()

    def _connect(self) -> sqlite3.Connection:
        path = self.settings.path
        path.parent.mkdir(parents=True, exist_ok=True)
        fresh, key = not path.exists(), str(path.resolve())
        con = sqlite3.connect(path, timeout=10, isolation_level=None)
        if fresh or key not in _READY:
            with _SETUP:
                if fresh or key not in _READY:
                    _set_up(con)
                    _READY.add(key)
        return con

    def load(self, token: str) -> list[dict[str, Any]]:
        """The conversation's turns, oldest first, as JSON-able dicts (turn_from_dict makes Turns)."""
        if not self.settings.enabled or not valid(token) or not self.settings.path.exists():
            return []
        con = self._connect()
        try:
            rows = con.execute("SELECT data FROM turns WHERE token = ? ORDER BY n", (token,)).fetchall()
        finally:
            con.close()
        return [json.loads(r[0]) for r in rows]

    def append(self, token: str, turn: dict[str, Any] | Turn) -> None:
        if not self.settings.enabled or not valid(token):
            return
        d = turn_to_dict(turn) if isinstance(turn, Turn) else dict(turn)
        answer = d.get("answer") or {}
        cited = answer.get("citations") or []
        loc = where(chunk_from_dict(cited[0]["chunk"]) if cited else None)
        con = self._connect()
        try:
            con.execute("BEGIN IMMEDIATE")  # n = the next number, even with two tabs of one conversation
            con.execute("INSERT INTO turns SELECT ?, COALESCE(MAX(n), -1) + 1, ?, ?, ?, ?, ?, ?, ?, ? "
                        "FROM turns WHERE token = ?",
                        (token, _now(), d["question"], int(bool(answer.get("refused"))),
                         loc["book"], loc["chapter"], loc["section"], loc["page"],
                         json.dumps(d, ensure_ascii=False), token))
            con.execute("COMMIT")
        finally:
            con.close()

    def record(self, token: str, item, score: float) -> None:
        """A practice answer's score, located at the item's (first) answer key."""
        if not self.settings.enabled or not valid(token):
            return
        k = item.keys[0]
        s = k.section
        con = self._connect()
        try:
            con.execute("INSERT INTO results (token, at, item, kind, book, chapter, section, page, score) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (token, _now(), item.id, item.kind, k.book, s[0] if s else None,
                         s[1] if len(s) > 1 else None, k.page, float(score)))
        finally:
            con.close()

    def rows(self, table: str) -> list[dict[str, Any]]:
        """Every row of `turns` (without the JSON) or `results`, for the teacher's view."""
        if table not in ("turns", "results"):
            raise ValueError(table)
        if not self.settings.path.exists():
            return []
        cols = ("token, n, at, question, refused, book, chapter, section, page" if table == "turns"
                else "token, at, item, kind, book, chapter, section, page, score")
        con = self._connect()
        try:
            con.row_factory = sqlite3.Row
            return [dict(r) for r in con.execute(f"SELECT {cols} FROM {table} ORDER BY at")]  # noqa: S608
        finally:
            con.close()


def _set_up(con: sqlite3.Connection, tries: int = 100) -> None:
    """WAL and the tables, once per file and process. Switching the journal mode takes the file's lock
    without waiting on the busy timeout, so a second process setting the same file up is waited out here."""
    for attempt in range(tries):
        try:
            con.execute("PRAGMA journal_mode=WAL")
            con.executescript(SCHEMA)
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == tries - 1:
                raise
            time.sleep(0.05)


def _now() -> str:
    return datetime.now().astimezone().isoformat(timespec="seconds")


# The small module-level API the page calls (the store of the environment's settings).

def load(token: str) -> list[dict[str, Any]]:
    return History().load(token)


def append(token: str, turn: dict[str, Any] | Turn) -> None:
    History().append(token, turn)


__all__ = ["History", "HistorySettings", "append", "load", "new_token", "turn_from_dict", "turn_to_dict",
           "valid", "where"]
