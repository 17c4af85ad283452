"""python -m rag serve: the chat page (`streamlit run app.py`), the model and index loading from the start.

Streamlit runs app.py only when the first browser session arrives, so with `streamlit run` the model and the
index start loading then. Here a background thread loads them (Pipeline.shared) as soon as the server answers
its health check, while the browser fetches and starts the page; the page's first run finds them ready or
waits for that same load. (Loading while the server itself starts slowed both: the two compete for the GIL.)
Anything that goes wrong in the preload is left to the page, which shows it in Chinese with what to do.
"""

from __future__ import annotations

import argparse
import logging
import socket
import subprocess
import threading
import time
import urllib.request

log = logging.getLogger("rag.serve")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("serve", help="启动问答网页（Streamlit），模型与索引在服务器启动时即开始加载")
    p.add_argument("--address", default="127.0.0.1", help="监听地址（默认只在本机：127.0.0.1；局域网共享：0.0.0.0）")
    p.add_argument("--port", type=int, default=8501, help="端口（默认 8501）")


def health_url(address: str, port: int) -> str:
    host = "127.0.0.1" if address in ("0.0.0.0", "::", "") else address
    return f"http://{'[' + host + ']' if ':' in host else host}:{port}/_stcore/health"


def wait_healthy(url: str, timeout: float = 60.0, proc: subprocess.Popen | None = None) -> bool:
    """True as soon as Streamlit's health check at `url` answers "ok", False after `timeout` seconds; with
    `proc` (a server started by the caller), RuntimeError if that process ends first. Also used by the
    browser test and the benchmarks that start servers."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"streamlit exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.read().strip() == b"ok":
                    return True
        except OSError:
            time.sleep(0.05)
    return False


def stop(proc: subprocess.Popen, timeout: float = 20.0) -> None:
    """Stop a server the caller started: SIGTERM, then SIGKILL after `timeout` seconds."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def preload(address: str, port: int) -> None:
    wait_healthy(health_url(address, port))  # then load; if the check never answers, load anyway
    from rag.config import Settings
    from rag.errors import RagError
    from rag.store.manifest import manifest_stamp
    from rag.pipeline import Pipeline

    try:
        settings = Settings.from_env()
        Pipeline.shared(settings, manifest_stamp(settings.index_dir))
    except (RagError, OSError, ValueError) as exc:  # the page reports it to the user
        log.warning("预加载未完成（网页会显示原因）：%s", exc)


def run(args: argparse.Namespace) -> int:
    from rag.config import ROOT

    threading.Thread(target=preload, args=(args.address, args.port), name="rag-preload", daemon=True).start()
    from streamlit.web import cli

    return cli.main(["run", str(ROOT / "app.py"), "--server.headless", "true",
                     "--server.address", args.address, "--server.port", str(args.port),
                     "--browser.gatherUsageStats", "false"],
                    prog_name="streamlit", standalone_mode=False) or 0
