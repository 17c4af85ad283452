from __future__ import annotations

from pathlib import Path

from rag.config import Settings


def test_settings_from_env_reads_rag_variables() -> None:
    s = Settings.from_env(
        {"RAG_INDEX_DIR": "/tmp/idx", "RAG_MODEL": "/m", "RAG_LLM_BASE_URL": "http://127.0.0.1:1/v1",
         "RAG_LLM_MODEL": "qwen"}
    )
    assert s.index_dir == Path("/tmp/idx")
    assert s.model.name == "/m"
    assert s.llm.enabled and s.llm.model == "qwen"


def test_settings_defaults_have_no_llm() -> None:
    s = Settings.from_env({})
    assert not s.llm.enabled
    assert s.chunk.max_chars < 690  # the model reads 512 tokens ≈ 690 Chinese characters
