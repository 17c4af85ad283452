"""Load test: N users at once, for a bounded time, all on 127.0.0.1. Reports p50/p95 latency and errors.

    .venv/bin/python -m bench.load_test [--sessions 8] [--duration 60] [--threads 8] [--index DIR]

Two parts:
1. The running page. `streamlit run app.py` is started on a free loopback port, and N sessions talk to it
   over its websocket exactly as the browser does (Streamlit's own BackMsg/ForwardMsg protobufs): each session
   loads the page, submits questions from tests/data/questions.jsonl in the chat input one after another, and
   a question's latency is submit → the server's "script finished" for that run (the whole page re-rendered
   with the answer). A session opens a fresh connection every few questions so conversations stay short. An
   error is a Python exception shown on the page, a 「回答时出错」 message, a run without an answer or a
   refusal, a timeout, or a dropped connection.
2. The shared Pipeline. N threads call `Pipeline.ask` on one object for the same time, no page around it.

Nothing is retried; every loop stops at the deadline; the server is stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from rag.commands.serve import free_port, stop, wait_healthy

ROOT = Path(__file__).resolve().parent.parent
QUESTIONS = ROOT / "tests" / "data" / "questions.jsonl"
PER_CONNECTION = 5  # questions per websocket session before a fresh one (one conversation stays short)
RUN_TIMEOUT_S = 120.0


@dataclass
class Stats:
    latencies: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    sessions: int = 0

    def error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1

    def summary(self) -> dict[str, object]:
        xs = sorted(self.latencies)
        p95 = xs[min(len(xs) - 1, max(0, int(round(0.95 * len(xs))) - 1))] if xs else float("nan")
        return {"requests": len(xs) + sum(self.errors.values()), "ok": len(xs),
                "errors": dict(sorted(self.errors.items())), "sessions": self.sessions,
                "p50_s": round(statistics.median(xs), 3) if xs else None,
                "p95_s": round(p95, 3) if xs else None,
                "max_s": round(xs[-1], 3) if xs else None}


def questions() -> list[str]:
    rows = [json.loads(line) for line in QUESTIONS.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [r["question"] for r in rows if not r.get("history")]


# --- the running page ---------------------------------------------------------------------------------------


def start_server(port: int, env: dict[str, str]) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"), "--server.port", str(port),
           "--server.address", "127.0.0.1", "--server.headless", "true",
           "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"]
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL)


def ready_after(port: int, server: subprocess.Popen, timeout_s: float = 120.0) -> float:
    start = time.perf_counter()
    try:
        healthy = wait_healthy(f"http://127.0.0.1:{port}/_stcore/health", timeout_s, server)
    except RuntimeError:
        raise SystemExit(f"streamlit exited: {server.stderr.read().decode()[-2000:]}") from None
    if not healthy:
        raise SystemExit("streamlit did not become healthy")
    return time.perf_counter() - start


class PageSession:
    """One browser tab's worth of protocol: rerun requests out, deltas and "script finished" in."""

    def __init__(self, ws) -> None:
        self.ws = ws
        self.chat_id: str | None = None

    async def run(self, widget_states) -> dict[str, object]:
        """Send one rerun request; collect what the run showed until the server says it finished."""
        from streamlit.proto.BackMsg_pb2 import BackMsg
        from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

        msg = BackMsg()
        msg.rerun_script.query_string = ""
        msg.rerun_script.page_script_hash = ""
        if widget_states is not None:
            msg.rerun_script.widget_states.CopyFrom(widget_states)
        await self.ws.send(msg.SerializeToString())
        seen: dict[str, object] = {"exception": False, "answer": False, "refused": False, "failed": False}
        while True:
            raw = await asyncio.wait_for(self.ws.recv(), RUN_TIMEOUT_S)
            fwd = ForwardMsg.FromString(raw)
            kind = fwd.WhichOneof("type")
            if kind == "delta" and fwd.delta.WhichOneof("type") == "new_element":
                self._look(fwd.delta.new_element, seen)
            elif kind == "script_finished":
                return seen

    def _look(self, element, seen: dict[str, object]) -> None:
        which = element.WhichOneof("type")
        if which == "chat_input":
            self.chat_id = element.chat_input.id
        elif which == "exception":
            seen["exception"] = True
        elif which == "markdown" and "[1]" in element.markdown.body:
            seen["answer"] = True
        elif which == "alert":
            body = element.alert.body
            seen["refused"] = seen["refused"] or "未能从书中找到依据" in body
            seen["failed"] = seen["failed"] or "出错" in body

    def ask(self, question: str):
        from streamlit.proto.WidgetStates_pb2 import WidgetStates

        states = WidgetStates()
        state = states.widgets.add()
        state.id = self.chat_id or ""
        state.chat_input_value.data = question
        return self.run(states)


async def page_user(n: int, url: str, deadline: float, qs: list[str], stats: Stats) -> None:
    import websockets

    i = n * 7  # each user starts at another question
    while time.perf_counter() < deadline:
        try:
            async with websockets.connect(url, subprotocols=["streamlit"], max_size=None,
                                          open_timeout=30) as ws:
                page = PageSession(ws)
                await page.run(None)  # the page as first loaded: the chat input gets its id
                stats.sessions += 1
                for _ in range(PER_CONNECTION):
                    if time.perf_counter() >= deadline:
                        return
                    question = qs[i % len(qs)]
                    i += 1
                    start = time.perf_counter()
                    seen = await page.ask(question)
                    took = time.perf_counter() - start
                    if seen["exception"]:
                        stats.error("exception on the page")
                    elif seen["failed"]:
                        stats.error("回答时出错")
                    elif not (seen["answer"] or seen["refused"]):
                        stats.error("no answer")
                    else:
                        stats.latencies.append(took)
        except asyncio.TimeoutError:
            stats.error("timeout")
        except (OSError, websockets.WebSocketException) as exc:
            stats.error(f"connection: {type(exc).__name__}")
            await asyncio.sleep(0.5)


async def first_visit(port: int) -> float:
    import websockets

    start = time.perf_counter()
    async with websockets.connect(f"ws://127.0.0.1:{port}/_stcore/stream", subprotocols=["streamlit"],
                                  max_size=None, open_timeout=30) as ws:
        await PageSession(ws).run(None)
    return time.perf_counter() - start


async def drive_page(port: int, users: int, duration: float, qs: list[str]) -> Stats:
    stats = Stats()
    deadline = time.perf_counter() + duration
    url = f"ws://127.0.0.1:{port}/_stcore/stream"
    await asyncio.gather(*(page_user(n, url, deadline, qs, stats) for n in range(users)))
    return stats


def page_part(args: argparse.Namespace, qs: list[str]) -> dict[str, object]:
    port = free_port()
    env = dict(os.environ)
    if args.index:
        env["RAG_INDEX_DIR"] = str(args.index)
    env["RAG_FEEDBACK_PATH"] = str(Path(args.index).parent / "feedback.jsonl")
    server = start_server(port, env)
    try:
        ready = ready_after(port, server)
        first = asyncio.run(first_visit(port))  # the Pipeline loads for the first visitor, as in production
        stats = asyncio.run(drive_page(port, args.sessions, args.duration, qs))
    finally:
        stop(server)
    return {"server_ready_s": round(ready, 2), "first_page_load_s": round(first, 2), **stats.summary(),
            "users": args.sessions, "duration_s": args.duration}


# --- the shared Pipeline ------------------------------------------------------------------------------------


def pipeline_part(args: argparse.Namespace, qs: list[str]) -> dict[str, object]:
    from rag.config import Settings, offline_environment

    offline_environment()
    from rag.errors import RagError
    from rag.pipeline import Pipeline

    settings = Settings.from_env()
    if args.index:
        settings = settings.with_overrides(index_dir=Path(args.index))
    pipeline = Pipeline.load(settings)
    pipeline.ask(qs[0])  # the answer stage is built on first use
    stats = Stats()
    lock = threading.Lock()
    deadline = time.perf_counter() + args.duration

    def user(n: int) -> None:
        i = n * 7
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            try:
                pipeline.ask(qs[i % len(qs)])
                with lock:
                    stats.latencies.append(time.perf_counter() - start)
            except RagError as exc:
                with lock:
                    stats.error(type(exc).__name__)
            except Exception as exc:  # noqa: BLE001 — a load test counts every failure, it does not stop
                with lock:
                    stats.error(f"crash: {type(exc).__name__}")
            i += 1

    threads = [threading.Thread(target=user, args=(n,)) for n in range(args.threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {**stats.summary(), "threads": args.threads, "duration_s": args.duration}


def ensure_index(folder: Path | None) -> Path:
    """The index to serve: the one given, else a private one in the temp dir, (re)built when it does not load
    with the current model (the shared embeddings/index/ is left alone)."""
    from rag.config import Settings, offline_environment

    offline_environment()
    from rag.errors import IndexError_
    from rag.build import build as build_index
    from rag.pipeline import Pipeline

    settings = Settings.from_env()
    private = Path(tempfile.gettempdir()) / "rag-load-test" / "index"
    settings = settings.with_overrides(index_dir=folder or private)
    try:
        Pipeline.load(settings)
    except IndexError_:
        if folder is not None:
            raise
        build_index(settings)
    return settings.index_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="N concurrent users on 127.0.0.1 for a bounded time")
    parser.add_argument("--sessions", type=int, default=8, help="concurrent page sessions (websocket)")
    parser.add_argument("--threads", type=int, default=8, help="concurrent threads on one Pipeline")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds per part")
    parser.add_argument("--index", type=Path, default=None,
                        help="index folder (default: a private one in the temp dir, built if needed)")
    parser.add_argument("--skip-page", action="store_true")
    parser.add_argument("--skip-pipeline", action="store_true")
    args = parser.parse_args(argv)
    qs = questions()
    args.index = ensure_index(args.index)
    report: dict[str, object] = {"load_avg_before": [round(x, 2) for x in os.getloadavg()],
                                 "cpus": os.cpu_count()}
    if not args.skip_page:
        report["page"] = page_part(args, qs)
    if not args.skip_pipeline:
        report["pipeline"] = pipeline_part(args, qs)
    report["load_avg_after"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(report, ensure_ascii=False, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
