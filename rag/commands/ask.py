"""python -m rag ask: an answer with numbered, checkable sources — the same pipeline as the chat page.

JSON per question: rag/schema.py (`answer_json`), the same shape the HTTP API returns. In --batch mode a line
that cannot be asked keeps its place in the output with an added "error".
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from rag.commands.search import book_arg, open_pipeline, read_batch
from rag.errors import InputError
from rag.pipeline import Pipeline
from rag.render import locator, visible, where_of
from rag.schema import answer_error_json, answer_json
from rag.store.manifest import rebuild_command
from rag.types import Answer, Citation, QueryParams


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("ask", help="回答问题，并给出可核对的出处（章节与页码）")
    p.add_argument("question", nargs="?", help="问题，如“第一章讲什么？”")
    p.add_argument("--history", action="append", default=[], metavar="上一问",
                   help="此前的提问（可重复，按时间顺序），用于理解“它”“这一章”等追问")
    p.add_argument("--index", type=Path, default=None, metavar="DIR", help="索引文件夹（默认 embeddings/index）")
    p.add_argument("--model", default=None, metavar="PATH", help="嵌入模型目录（须与构建索引时一致）")
    p.add_argument("--book", default=None, metavar="ID", help="只依据这本书回答（书的 id 见 python -m rag books）")
    p.add_argument("--json", action="store_true", help="输出 JSON（每个问题一行）")
    p.add_argument("--batch", type=Path, default=None, metavar="FILE",
                   help='批量提问：每行一个 JSON 对象 {"question": …, "history": […]} 或一行一个问题')


def source_line(c: Citation, book_title: str | None = None) -> str:
    """「[1] 第一章 › 第一节 › 二、… ，第3页（约）」; front matter by its name (「[2] 版权页 ，版权页」); an
    article for a text without pages (「第六十条」); the book's title first when several are loaded."""
    ch = c.chunk
    page = ch.page or locator(c)
    if page.isdigit():
        span = page if not ch.page_end or ch.page_end == page else f"{page}–{ch.page_end}"
        page = f"第{span}页" + ("（约）" if ch.page_estimated else "")
    flag = "（未能核实）" if c.flagged else ""
    return f"[{c.n}] {where_of(c, book_title)} ，{page}{flag}"


def print_answer(answer: Answer, streamed: bool = False, titles: dict[str, str] | None = None) -> None:
    for notice in answer.notices:
        print(f"提示：{notice}", file=sys.stderr)
    if answer.resolved_question:
        print(f"（结合上文理解为：{answer.resolved_question}）")
    if streamed:
        print("\n—— 核实后的回答 ——")
    print(visible(answer.text))  # book text never drives the terminal (escapes, bidi controls)
    if answer.pointer:
        print(f"可参阅{answer.pointer}")
    if answer.citations:
        print("\n出处：")
    for c in answer.citations:
        print(visible(source_line(c, (titles or {}).get(c.chunk.book))))
        print(f"    “{visible(c.quote)}”")


def ask_one(pipeline: Pipeline, question: str, history: list[str], as_json: bool,
            params: QueryParams = QueryParams()) -> None:
    if as_json:
        print(json.dumps(answer_json(pipeline.ask(question, history, params)), ensure_ascii=False))
        return
    streamed = False
    titles = {b.id: b.title for b in pipeline.books} if len(pipeline.books) > 1 else {}
    for item in pipeline.ask_stream(question, history, params):
        if isinstance(item, Answer):
            print_answer(item, streamed, titles)
        else:
            print(visible(item), end="", flush=True)
            streamed = True


def warn_if_stale(pipeline: Pipeline) -> None:
    """An index older than the corpus still answers, from the old text: say so, with the rebuild command."""
    status = pipeline.status()
    if status.stale:
        print(f"警告：索引与语料不一致（{status.stale_reason}），回答仍来自旧索引。"
              f"请重建索引：{rebuild_command(pipeline.settings)}", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    pipeline = open_pipeline(args)
    warn_if_stale(pipeline)
    params = QueryParams(book=book_arg(pipeline, args))
    if args.batch is None:
        ask_one(pipeline, args.question, args.history, args.json, params)
        return 0
    for question, history in read_batch(args.batch):
        try:
            out = answer_json(pipeline.ask(question, history, params))
        except InputError as exc:
            out = answer_error_json(question, str(exc))
        print(json.dumps(out, ensure_ascii=False), flush=True)
    return 0
