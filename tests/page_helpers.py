"""The chat page under AppTest, as the page tests open it: pointed at a real index with no LLM configured."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

APP = Path(__file__).resolve().parent.parent / "app.py"
PAGE_ENV = ("RAG_CORPUS", "RAG_MODEL", "RAG_LLM_BASE_URL", "RAG_LLM_MODEL", "RAG_LLM_API_KEY")


def point_page_at(monkeypatch: pytest.MonkeyPatch, index_dir: Path, feedback_path: Path) -> None:
    """The page reads Settings.from_env(): this index, this feedback file, defaults for everything else."""
    for name in PAGE_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("RAG_INDEX_DIR", str(index_dir))
    monkeypatch.setenv("RAG_FEEDBACK_PATH", str(feedback_path))


def open_page() -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=180)
    at.run()
    assert not at.exception, at.exception
    return at


def ask(at: AppTest, question: str) -> AppTest:
    at.chat_input[0].set_value(question).run()
    assert not at.exception, at.exception
    return at
