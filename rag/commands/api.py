"""python -m rag api: the HTTP API (FastAPI on uvicorn) over the shared Pipeline, loaded before it listens.

OpenAI-compatible /v1/chat/completions, /v1/search and /v1/ask (the CLI's JSON), /v1/books, /healthz, and
offline docs at /docs. With RAG_API_KEY set, /v1/* wants `Authorization: Bearer <key>`.
"""

from __future__ import annotations

import argparse
import threading
import time
from pathlib import Path

from rag.commands.build import settings_from_args


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("api", help="启动 HTTP API（OpenAI 兼容的对话接口、检索、问答、目录；文档在 /docs）")
    p.add_argument("--host", default="127.0.0.1", help="监听地址（默认只在本机：127.0.0.1；局域网共享：0.0.0.0）")
    p.add_argument("--port", type=int, default=8000, help="端口（默认 8000）")
    p.add_argument("--index", type=Path, default=None, metavar="DIR", help="索引文件夹（默认 embeddings/index）")
    p.add_argument("--model", default=None, metavar="PATH", help="嵌入模型目录（须与构建索引时一致）")
    p.add_argument("--access-log", action="store_true",
                   help="逐条记录请求（默认关闭，省去每个请求写日志的时间；通常由前置的 nginx 记录）")


def loader(args: argparse.Namespace):
    """The shared Pipeline of the current index build: warm after the first call, a rebuilt index is loaded
    by the next request after the swap."""
    from rag.pipeline import Pipeline
    from rag.store.manifest import manifest_stamp, read

    settings = settings_from_args(args)
    read(settings.index_dir, settings)  # a missing index is told before the model is loaded
    return lambda: Pipeline.shared(settings, manifest_stamp(settings.index_dir))


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from rag.api.app import api_key_from_env, create_app

    load = loader(args)
    load()  # a missing or damaged index is told now (exit code 1), not by every request
    app = create_app(load, api_key=api_key_from_env())
    print(f"教材问答 API：http://{args.host}:{args.port}/v1 （文档：/docs）", flush=True)
    # uvloop and httptools (pinned in requirements.txt) rather than asyncio and h11: less time per request
    uvicorn.run(app, host=args.host, port=args.port, log_level="info", access_log=args.access_log,
                loop="uvloop", http="httptools")
    return 0


class ThreadedServer:
    """uvicorn serving an app from a background thread on 127.0.0.1 (tests, benchmarks); `stop()` ends it."""

    def __init__(self, app, port: int, host: str = "127.0.0.1") -> None:
        import uvicorn

        self.url = f"http://{host}:{port}"
        config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="rag-api", daemon=True)

    def start(self, timeout: float = 60.0) -> ThreadedServer:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the API server did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=20)
