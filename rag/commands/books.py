"""python -m rag books: the books of the index — title, files, chunks, pages, and which 目录 entries have text."""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path
from typing import Any

from rag.answer.library import Library
from rag.commands.build import settings_from_args
from rag.pipeline import Pipeline
from rag.render import toc_label


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("books", help="列出索引中的书：书名、文件、段落数、页码来源、目录中哪些章节有正文")
    p.add_argument("--index", type=Path, default=None, metavar="DIR", help="索引文件夹（默认 embeddings/index）")
    p.add_argument("--model", default=None, metavar="PATH", help="嵌入模型目录（须与构建索引时一致）")
    p.add_argument("--json", action="store_true", help="输出 JSON（每本书一行）")


def describe(pipeline: Pipeline) -> list[dict[str, Any]]:
    library = Library(pipeline.books, pipeline.index.chunks)
    out = []
    for book in pipeline.books:
        chunks = [c for c in pipeline.index.chunks if c.book == book.id]
        pages = {c.page for c in chunks if c.page and (c.page.isdigit() or c.page.lower().strip("ivxlcdm") == "")}
        estimated = Counter(c.page_estimated for c in chunks if c.page in pages)
        facts = library.facts[book.id]
        out.append({"id": book.id, "title": book.title, "files": list(book.files), "chunks": len(chunks),
                    "pages": len(pages), "pages_estimated": bool(estimated[True]) and not estimated[False],
                    "toc": [{"entry": toc_label(e), "has_text": facts.is_loaded(e)} for e in book.toc]})
    return out


def run(args: argparse.Namespace) -> int:
    pipeline = Pipeline.load(settings_from_args(args))
    for b in describe(pipeline):
        if args.json:
            print(json.dumps(b, ensure_ascii=False))
            continue
        kind = "估计页码" if b["pages_estimated"] else "印刷页码"
        print(f"{b['id']}：《{b['title']}》  {b['chunks']} 段，{b['pages']} 页（{kind}），文件 {'、'.join(b['files'])}")
        for row in b["toc"]:
            print(f"    {'✓ 有正文' if row['has_text'] else '  仅目录'}  {row['entry']}")
    return 0
