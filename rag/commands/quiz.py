"""python -m rag quiz: a practice round made from the book (填空, 选择, 判断, 简答), printed with its answer
keys (verbatim passage, section path, page), as text or one JSON object per item.

The same bank and the same draw as the 练习 page: a seed gives the same round every time.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

from rag.commands.build import settings_from_args
from rag.errors import InputError
from rag.pipeline import Pipeline
from rag.render import visible
from rag.study.quiz import KIND_NAMES, KINDS, Item, bank, draw, to_json


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("quiz", help="由教材本身生成练习题（填空、选择、判断、简答），附答案出处与页码")
    p.add_argument("--book", default=None, metavar="ID", help="只出这本书的题（书的 id）")
    p.add_argument("--section", default=None, metavar="章节", help="只出该章或该节的题，如“第一节”“第一章”")
    p.add_argument("-n", type=int, default=10, help="题数（默认 10）")
    p.add_argument("--seed", type=int, default=None, help="随机种子：同一种子出同一组题（默认随机，并打印）")
    p.add_argument("--kind", action="append", choices=KINDS, default=None, help="只出这些题型（可重复）")
    p.add_argument("--index", type=Path, default=None, metavar="DIR", help="索引文件夹（默认 embeddings/index）")
    p.add_argument("--model", default=None, metavar="PATH", help="嵌入模型目录（须与构建索引时一致）")
    p.add_argument("--json", action="store_true", help="每题输出一行 JSON")


def run(args: argparse.Namespace) -> int:
    if args.n < 1:
        raise InputError(f"题数须至少为 1（收到 {args.n}）。")
    pipeline = Pipeline.load(settings_from_args(args))
    index = pipeline.index
    if args.book and index.book(args.book) is None:
        known = "、".join(b.id for b in index.books) or "（无）"
        raise InputError(f"没有 id 为 {args.book} 的书。已载入：{known}。")
    items = bank(index.chunks, index.lexicon, book=args.book, section=args.section)
    if not items:
        raise InputError(f"“{args.section or args.book}”范围内没有可出题的正文。试试 --section 第一节。")
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1_000_000)
    round_ = draw(items, args.n, seed, args.kind or KINDS)
    if args.json:
        for it in round_:
            print(json.dumps(to_json(it) | {"seed": seed}, ensure_ascii=False))
        return 0
    print(f"练习（种子 {seed}，题库 {len(items)} 题，本组 {len(round_)} 题；用 --seed {seed} 可重做这一组）\n")
    for i, it in enumerate(round_, 1):
        print(visible(show(i, it)))
    return 0


def show(i: int, it: Item) -> str:
    lines = [f"{i}.【{KIND_NAMES[it.kind]}】{it.prompt}"]
    if it.statement:
        lines.append(f"    {it.statement}")
    lines += [f"    {chr(ord('A') + j)}. {o}" for j, o in enumerate(it.options)]
    answer = chr(ord("A") + it.options.index(it.answer)) + f". {it.answer}" if it.options else it.answer
    lines.append(f"    答案：{answer}")
    for k in it.keys:
        lines.append(f"    出处：{' › '.join(k.section)} · {k.page}：“{k.text}”")
    return "\n".join(lines) + "\n"
