"""python -m rag chunks: print the chunks of the corpus with section path and pages, for a person to check."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

from rag.chunk import chunk_corpus
from rag.config import Settings
from rag.ingest.corpus import load_corpus
from rag.text.fold import one_line
from rag.types import Chunk


def add_parser(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser("chunks", help="列出语料切分出的段落（章节路径、页码），便于人工检查")
    p.add_argument("--corpus", type=Path, action="append", help="语料文件或文件夹（可重复）；默认 corpus/")
    p.add_argument("--section", help="只显示章节路径中包含该文字的段落，如“第一节”")
    p.add_argument("--book", metavar="ID", help="只显示这本书的段落（书的 id：文件名或文件夹名，见 python -m rag books）")
    p.add_argument("--kind", choices=("body", "caption", "footnote", "toc", "front"), help="只显示该类型")
    p.add_argument("--json", action="store_true", help="每行输出一个 JSON 对象")
    p.add_argument("--full", action="store_true", help="显示完整正文（默认每段只显示一行摘要）")


def run(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    corpus = load_corpus(tuple(args.corpus) if args.corpus else settings.corpus)
    for name, reason in corpus.skipped:
        print(f"已跳过 {name}：{reason}", file=sys.stderr)
    chunks = [c for c in chunk_corpus(corpus.documents, settings.chunk) if _wanted(c, args)]
    for c in chunks:
        if args.json:
            print(json.dumps(asdict(c) | {"section_path": c.section_path}, ensure_ascii=False))
        else:
            print(_render(c, args.full))
    print(f"共 {len(chunks)} 段（{len(corpus.documents)} 个文件）", file=sys.stderr)
    return 0


def _wanted(c: Chunk, args: argparse.Namespace) -> bool:
    if args.kind and c.kind != args.kind:
        return False
    if args.book and c.book != args.book:
        return False
    return not args.section or any(args.section in s for s in c.section)


def page_text(c: Chunk) -> str:
    """"第3页", "第3–4页", "约第3页" (estimated), "版权页" (front matter named), "" (no page known)."""
    if c.page is None:
        return ""
    span = c.page if c.page_end in (None, c.page) else f"{c.page}–{c.page_end}"
    if not c.page[0].isdigit() and not c.page[0].lower() in "ivxlcdm":
        return span
    return f"{'约' if c.page_estimated else ''}第{span}页"


def _render(c: Chunk, full: bool) -> str:
    head = f"[{c.ordinal}] {c.source} · {c.kind} · {page_text(c) or '无页码'} · {len(c.text)}字 · {c.id}"
    body = c.text if full else _preview(one_line(c.text))
    return f"{head}\n    {c.section_path or '（无章节）'}\n    {body}\n"


def _preview(s: str, width: int = 60) -> str:
    return s if len(s) <= 2 * width else f"{s[:width]} …… {s[-width // 2:]}"
