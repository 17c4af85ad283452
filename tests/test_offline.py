"""No network: the suite refuses outbound connections and name lookups, the page and the CLI commands work
under that guard and never even try, and the app and the CLI switch the model hubs offline themselves.

The CLI runs in subprocesses whose interpreter is guarded by a sitecustomize.py (every non-Unix connect and
every non-local name lookup is recorded and refused) and whose environment has no HF_*/TRANSFORMERS_*
variables, so what the commands do is exactly what a user's shell would see on a machine with no network.
Every address used to prove a refusal is on this machine (127.0.0.2): a broken guard sends nothing out.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from pytest_socket import SocketBlockedError, SocketConnectBlockedError
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parent.parent
APP = ROOT / "app.py"
HUB_VARIABLES = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HUB_DISABLE_TELEMETRY")

GUARD = '''
"""Loaded at interpreter start (PYTHONPATH): refuse and record any network use of this process."""
import atexit, errno, json, os, socket

_log = os.environ["RAG_NET_LOG"]
_attempts = []
_connect, _connect_ex, _getaddrinfo = socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo


def _refuse(what):
    _attempts.append(what)
    raise OSError(errno.ENETUNREACH, "network use refused by the test guard: " + what)


def connect(self, address):
    if self.family != socket.AF_UNIX:
        _refuse(f"connect {address!r}")
    return _connect(self, address)


def connect_ex(self, address):
    if self.family != socket.AF_UNIX:
        _refuse(f"connect_ex {address!r}")
    return _connect_ex(self, address)


def getaddrinfo(host, *args, **kwargs):
    if host not in (None, "", "localhost", b"localhost"):
        _refuse(f"getaddrinfo {host!r}")
    return _getaddrinfo(host, *args, **kwargs)


socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo = connect, connect_ex, getaddrinfo


@atexit.register
def _report():
    with open(_log, "a", encoding="utf-8") as fh:
        fh.write(json.dumps({"attempts": _attempts, **{k: os.environ.get(k) for k in
                 ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}}) + "\\n")
'''


# --- inside the suite ---------------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:A test tried:UserWarning")
def test_the_suite_refuses_outbound_connections_and_lookups() -> None:
    with pytest.raises(SocketConnectBlockedError):  # pytest-socket, from pyproject's addopts
        socket.create_connection(("127.0.0.2", 9), timeout=1)
    assert socket.getaddrinfo.__name__ == "_local_getaddrinfo"  # the conftest guard is in place …
    with pytest.raises(SocketBlockedError):  # … so this lookup is refused before any resolver is asked
        socket.getaddrinfo("huggingface.co", 443)
    assert socket.getaddrinfo("localhost", 80)  # loopback stays usable (the fake LLM, streamlit run)


def test_the_page_answers_without_any_network_use(built, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """The page, started with no HF_* variables, sets them itself and answers without one connect attempt."""
    attempts: list[str] = []
    real_connect = socket.socket.connect

    def recording_connect(self, address):
        attempts.append(repr(address))
        return real_connect(self, address)

    for name in HUB_VARIABLES + ("RAG_CORPUS", "RAG_MODEL", "RAG_LLM_BASE_URL", "RAG_LLM_MODEL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("RAG_INDEX_DIR", str(built.index_dir))
    monkeypatch.setenv("RAG_FEEDBACK_PATH", str(tmp_path / "feedback.jsonl"))
    monkeypatch.setattr(socket.socket, "connect", recording_connect)
    at = AppTest.from_file(str(APP), default_timeout=180)
    at.run()
    at.chat_input[0].set_value("群众工作的核心是什么？").run()
    assert not at.exception, at.exception
    assert at.session_state["turns"][0].answer.citations
    assert attempts == []
    assert os.environ["HF_HUB_OFFLINE"] == "1" and os.environ["TRANSFORMERS_OFFLINE"] == "1"


def test_the_cli_sets_the_hubs_offline_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    from rag.__main__ import main

    for name in HUB_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(SystemExit):
        main(["ask", "--help"])
    assert os.environ["HF_HUB_OFFLINE"] == "1" and os.environ["TRANSFORMERS_OFFLINE"] == "1"


# --- the CLI in guarded subprocesses ------------------------------------------------------------------------


@pytest.fixture
def guarded(tmp_path: Path) -> tuple[dict[str, str], Path]:
    """An environment whose Python refuses all network use and logs it; no hub variables set."""
    (tmp_path / "guard").mkdir()
    (tmp_path / "guard" / "sitecustomize.py").write_text(GUARD, encoding="utf-8")
    log = tmp_path / "net.jsonl"
    env = {k: v for k, v in os.environ.items() if k not in HUB_VARIABLES and not k.startswith("RAG_")}
    env |= {"PYTHONPATH": f"{tmp_path / 'guard'}{os.pathsep}{ROOT}", "RAG_NET_LOG": str(log)}
    return env, log


def _run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300, stdin=subprocess.DEVNULL)


def _reports(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]


def test_the_guard_refuses_network_use_in_a_subprocess(guarded) -> None:
    env, log = guarded
    probe = _run(env, "-c", "import socket; socket.create_connection(('127.0.0.2', 9), timeout=1)")
    assert probe.returncode != 0 and "refused by the test guard" in probe.stderr
    (report,) = _reports(log)
    assert report["attempts"] and report["HF_HUB_OFFLINE"] is None  # plain Python: nothing sets it


def test_build_search_and_ask_run_with_no_network_and_never_try(built, guarded) -> None:
    env, log = guarded
    index = built.index_dir.parent / "index-offline"  # beside the session index: its embedding cache
    shutil.rmtree(index, ignore_errors=True)
    try:
        build = _run(env, "-m", "rag", "build", "--index", str(index), "--quiet")
        assert build.returncode == 0, build.stderr
        assert "索引已写入" in build.stdout and (index / "manifest.json").is_file()
        search = _run(env, "-m", "rag", "search", "什么是党的群众工作？", "--index", str(index), "--json")
        assert search.returncode == 0, search.stderr
        assert json.loads(search.stdout)["hits"]
        ask = _run(env, "-m", "rag", "ask", "群众工作的核心是什么？", "--index", str(index), "--json")
        assert ask.returncode == 0, ask.stderr
        assert "正确处理人民内部矛盾" in json.loads(ask.stdout)["answer"]
    finally:
        shutil.rmtree(index, ignore_errors=True)
    reports = _reports(log)
    assert len(reports) == 3
    for report in reports:  # not one connect or lookup was even attempted; the hubs were set offline
        assert report == {"attempts": [], "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
