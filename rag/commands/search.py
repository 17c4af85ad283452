"""python -m rag search: ranked passages for a question (or a batch of them), as text or JSON.

JSON per query: rag/schema.py (`search_json`), the same shape the HTTP API returns.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Iterator

from rag.commands.build import settings_from_args
from rag.errors import InputError
from rag.pipeline import Pipeline
from rag.render import visible
from rag.retrieve.query import prepare
from rag.schema import search_error_json, search_json
from rag.text.fold import one_line
from rag.types import Hit, QueryParams


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("search", help="检索与问题最相关的段落（不生成回答）")
    p.add_argument("question", nargs="?", help="问题，如“第一章讲什么？”")
    p.add_argument("-k", type=int, default=None, help="返回的段落数（默认 5）")
    p.add_argument("--book", default=None, metavar="ID", help="只在这本书中检索（书的 id 见 python -m rag books）")
    p.add_argument("--index", type=Path, default=None, metavar="DIR", help="索引文件夹（默认 embeddings/index）")
    p.add_argument("--model", default=None, metavar="PATH", help="嵌入模型目录（须与构建索引时一致）")
    p.add_argument("--history", action="append", default=[], metavar="上一问",
                   help="此前的提问（可重复，按时间顺序），用于理解“它”“这一章”等追问")
    p.add_argument("--json", action="store_true", help="输出 JSON（每个问题一行）")
    p.add_argument("--batch", type=Path, default=None, metavar="FILE",
                   help='批量检索：每行一个 JSON 对象 {"question": …, "history": […]} 或一行一个问题')


def read_batch(path: Path) -> Iterator[tuple[str, list[str]]]:
    """(question, history) per non-blank line: a JSON object, or the line itself as the question."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"无法读取批量问题文件 {path}：{exc}。请提供 UTF-8 编码的文本文件。") from exc
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        if line.lstrip().startswith("{"):
            try:
                item = json.loads(line)
                yield str(item["question"]), [str(h) for h in item.get("history") or []]
            except (ValueError, KeyError, TypeError) as exc:
                raise InputError(f"{path} 第 {n} 行不是有效的 JSON 问题对象（{type(exc).__name__}）："
                                 '应为 {"question": "…", "history": ["…"]}。') from exc
        else:
            yield line.strip(), []


def open_pipeline(args: argparse.Namespace) -> Pipeline:
    """The Pipeline for `search`/`ask`, once the arguments are known to be usable (one question xor --batch;
    a blank question is told at once, before the model is loaded). One load serves a whole batch."""
    if (args.question is None) == (args.batch is None):
        raise InputError("请给出一个问题，或用 --batch FILE 指定批量问题文件（二者选一）。")
    settings = settings_from_args(args)
    if args.question is not None:
        prepare(args.question, settings.answer.max_question_chars)
    return Pipeline.load(settings)


def run(args: argparse.Namespace) -> int:
    pipeline = open_pipeline(args)
    if args.batch is None:
        show(pipeline, args.question, args.history, QueryParams(k=args.k, book=book_arg(pipeline, args)),
             args.json)
        return 0
    params = QueryParams(k=args.k, book=book_arg(pipeline, args))
    for question, history in read_batch(args.batch):
        try:
            found = pipeline.search(question, history, params)
        except InputError as exc:  # one bad line must not stop the batch; it keeps its place in the output
            print(json.dumps(search_error_json(question, str(exc)), ensure_ascii=False))
            continue
        print(json.dumps(search_json(question, found.hits), ensure_ascii=False))
    return 0


def page_label(hit: Hit) -> str:
    """"第 3–4 页（估计）", or a named page such as "版权页"."""
    c = hit.chunk
    if not c.page:
        return "页码未知"
    if not c.page.isdigit():
        return c.page
    pages = c.page if not c.page_end or c.page_end == c.page else f"{c.page}–{c.page_end}"
    return f"第 {pages} 页" + ("（估计）" if c.page_estimated else "")


def book_arg(pipeline: Pipeline, args: argparse.Namespace) -> str | None:
    """--book, checked against the loaded books (InputError naming them when it is not one of them)."""
    book = getattr(args, "book", None)
    if book is not None and all(b.id != book for b in pipeline.books):
        ids = "、".join(f"{b.id}（{b.title}）" for b in pipeline.books)
        raise InputError(f"没有 id 为 {book} 的书。已载入的书：{ids}。")
    return book


def show(pipeline: Pipeline, question: str, history: list[str], params: QueryParams, as_json: bool) -> None:
    found = pipeline.search(question, history, params)
    query, hits = found.query, found.hits
    if as_json:
        print(json.dumps(search_json(question, hits), ensure_ascii=False))
        return
    for notice in query.notices:
        print(f"提示：{notice}", file=sys.stderr)
    if query.expanded:
        print(f"（结合上文理解为：{query.text}）")
    if not hits:
        print("没有找到相关段落。")
    for h in hits:
        where = h.chunk.section_path or h.chunk.source
        # book text never drives the terminal (escapes, bidi controls)
        print(visible(f"[{h.rank}] {h.score:.4f}  {where}  {page_label(h)}  [{h.chunk.kind}]"))
        print(f"    {visible(one_line(h.chunk.text)[:160])}")
