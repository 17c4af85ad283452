"""python -m rag mcp: an MCP server on stdio (search, ask, books, 目录, sections) over the shared Pipeline.

Point an MCP client at `.venv/bin/python -m rag mcp` (RAG_INDEX_DIR chooses the index). stdout carries the
protocol only; messages go to stderr.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rag.commands.api import loader


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("mcp", help="启动 MCP 服务器（stdio）：检索、问答、目录与章节原文，供大模型客户端调用")
    p.add_argument("--index", type=Path, default=None, metavar="DIR", help="索引文件夹（默认 embeddings/index）")
    p.add_argument("--model", default=None, metavar="PATH", help="嵌入模型目录（须与构建索引时一致）")


def run(args: argparse.Namespace) -> int:
    from rag.api.mcp_server import create_server

    load = loader(args)
    load()  # a missing or damaged index is told now (stderr, exit code 1)
    create_server(load).run("stdio")
    return 0
