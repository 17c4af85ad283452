"""Test-wide settings: offline model hubs, and shared session fixtures for the real model and a real index.

Fixtures (all session-scoped, built once):
- `settings`  — default Settings (shipped corpus, converted model), index in a temp folder
- `embedder`  — the shipped model, loaded once (rag.model.embed.load_embedder)
- `built`     — `settings` after `rag.store.index.build_index` wrote a real index of corpus/ into its index_dir
- `pipeline`  — rag.pipeline.Pipeline loaded on `built`, the same object the CLI and the app use
"""

from __future__ import annotations

import os
import socket
import tempfile
from dataclasses import replace

import pytest
from pytest_socket import SocketBlockedError

# Before anything imports huggingface_hub / transformers: no hub, ever.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
# Conversations the tests' pages keep go to a folder of their own, never to embeddings/history.sqlite3.
os.environ.setdefault("RAG_HISTORY_PATH", os.path.join(tempfile.mkdtemp(prefix="rag-history-"), "history.sqlite3"))

from rag.config import Settings  # noqa: E402

# pytest-socket (pyproject addopts) refuses connect() to anything but loopback. A name lookup goes through
# libc, not connect(), so it would still ask a DNS server: refuse every lookup of a non-local name as well.
_LOCAL_NAMES = {None, "", "localhost", "::1", "0.0.0.0"}
_real_getaddrinfo = socket.getaddrinfo


def _local_getaddrinfo(host, *args, **kwargs):
    name = host.decode() if isinstance(host, bytes) else host
    if name not in _LOCAL_NAMES and not str(name).startswith("127."):
        raise SocketBlockedError(f"A test tried to look up the host name {name!r} (only loopback allowed).")
    return _real_getaddrinfo(host, *args, **kwargs)


socket.getaddrinfo = _local_getaddrinfo


@pytest.fixture(scope="session")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    base = Settings.from_env({})
    tmp = tmp_path_factory.mktemp("rag")
    return replace(base, index_dir=tmp / "index", feedback_path=tmp / "feedback.jsonl")


@pytest.fixture(scope="session")
def embedder(settings: Settings):
    from rag.model.embed import load_embedder

    return load_embedder(settings.model)


@pytest.fixture(scope="session")
def built(settings: Settings, embedder) -> Settings:
    from rag.build import build as build_index

    build_index(settings, embedder=embedder)
    return settings


@pytest.fixture(scope="session")
def pipeline(built: Settings, embedder):
    from rag.pipeline import Pipeline

    return Pipeline.load(built, embedder=embedder)
