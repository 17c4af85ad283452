"""python -m rag {model,chunks,build,search,ask,eval,serve,api,mcp,…}: thin argparse over rag.commands.*.

Each command lives in rag/commands/<name>.py with `add_parser(subparsers)` and `run(args) -> int`.
Domain errors (RagError) are printed to stderr in Chinese and give exit code 1; nothing else is caught.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from rag.config import offline_environment
from rag.errors import RagError

COMMANDS = ("model", "chunks", "build", "books", "search", "ask", "eval", "serve", "api", "mcp", "quiz")


def main(argv: list[str] | None = None) -> int:
    offline_environment()
    parser = argparse.ArgumentParser(prog="python -m rag", description="教材问答：构建索引、检索、问答与评测")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{" + ",".join(COMMANDS) + "}")
    modules = {}
    for name in COMMANDS:
        module = importlib.import_module(f"rag.commands.{name}")
        module.add_parser(sub)
        modules[name] = module
    args = parser.parse_args(argv)
    try:
        return int(modules[args.command].run(args) or 0)
    except RagError as exc:
        print(f"错误：{exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("已中断。", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
