"""python -m rag eval: Recall@1, Recall@5 and MRR@10 by question type on tests/data/questions.jsonl."""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, replace
from pathlib import Path

from rag.commands.build import settings_from_args
from rag.config import ROOT
from rag.eval.questions import format_report, load_questions
from rag.eval.run import GROUPS, evaluate
from rag.pipeline import Pipeline

QUESTIONS = ROOT / "tests" / "data" / "questions.jsonl"  # the project's question set (the CLI's default)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("eval", help="在问题集上评测检索质量（按题型给出 R@1、R@5、MRR@10）")
    p.add_argument("--questions", type=Path, default=QUESTIONS, metavar="FILE", help="问题集（JSONL）")
    p.add_argument("--index", type=Path, default=None, metavar="DIR", help="索引文件夹（默认 embeddings/index）")
    p.add_argument("--model", default=None, metavar="PATH", help="嵌入模型目录（须与构建索引时一致）")
    p.add_argument("--group", action="append", choices=sorted(GROUPS), default=None,
                   help="评测组（可重复；默认 retrieval）")
    p.add_argument("--fusion", choices=("zscore", "rrf", "dense", "lexical"), default=None,
                   help="检索融合方式（默认 zscore；其余用于对比）")
    p.add_argument("--json", action="store_true", help="输出 JSON")


def run(args: argparse.Namespace) -> int:
    questions = load_questions(args.questions)
    settings = settings_from_args(args)
    if args.fusion:
        settings = replace(settings, retrieve=replace(settings.retrieve, fusion=args.fusion))
    pipeline = Pipeline.load(settings)
    start = time.perf_counter()
    reports = evaluate(pipeline, questions, args.group or ["retrieval"])
    seconds = time.perf_counter() - start
    if args.json:
        print(json.dumps([asdict(r) for r in reports], ensure_ascii=False, indent=2))
        return 0
    print(f"问题集 {args.questions}：{len(questions)} 题，用时 {seconds:.1f} 秒\n")
    print("\n\n".join(format_report(r) for r in reports))
    return 0
