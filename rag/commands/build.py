"""python -m rag build: corpus → chunks → vectors + BM25 → embeddings/index/ (atomic swap; skipped when the
index is already up to date, unless --force)."""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

from rag.config import Settings


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("build", help="构建（或重建）检索索引：分段、向量化、BM25，原子替换旧索引")
    p.add_argument("--corpus", type=Path, action="append", default=None, metavar="PATH",
                   help="教材文件或文件夹（可重复；默认 corpus/）")
    p.add_argument("--index", type=Path, default=None, metavar="DIR", help="索引文件夹（默认 embeddings/index）")
    p.add_argument("--model", default=None, metavar="PATH", help="sentence-transformers 模型目录（默认内置模型）")
    p.add_argument("--quiet", action="store_true", help="不显示进度条")
    p.add_argument("--force", action="store_true", help="即使语料、设置和模型都未变化也重新构建")
    p.add_argument("--engine", choices=("local", "ray"), default=None,
                   help="构建引擎：local（本机单进程，默认）或 ray（Ray 集群，见 docs/scale-out.md；RAG_BUILD_ENGINE）")
    p.add_argument("--ray-address", default=None, metavar="HOST:PORT",
                   help="已运行的 Ray 集群地址（默认在本机启动一个；RAG_RAY_ADDRESS）")


def settings_from_args(args: argparse.Namespace) -> Settings:
    """Settings from the environment, with --corpus/--index/--model on top (shared by build/search/eval)."""
    s = Settings.from_env()
    name = getattr(args, "model", None)
    model = replace(s.model, name=name) if name else None  # the rest (RAG_BACKEND, batch, device) is kept
    corpus = tuple(args.corpus) if getattr(args, "corpus", None) else None
    return s.with_overrides(index_dir=getattr(args, "index", None), model=model, corpus=corpus)


def book_line(book, fresh: bool = True) -> str:
    """One book of a build report (rag.build.BookReport): id, title, files, passages, pages or 条, 目录."""
    where = (f"{book.pages} 页" if book.pages else "") + ("，" if book.pages and book.articles else "") \
        + (f"{book.articles} 条" if book.articles else "")
    vectors = f"句向量 {book.sentences} 个" + (f"（新编码 {book.encoded}，缓存复用 {book.reused}）" if fresh else "")
    return (f"  书 {book.id}《{book.title}》：文件 {book.files} 个，段落 {book.chunks} 个，{where or '无页码'}，"
            f"目录 {book.toc} 项，{vectors}")


def run(args: argparse.Namespace) -> int:
    from rag.build import build  # the model and the build stage load only when building

    settings = settings_from_args(args)
    scale = replace(settings.scale, build_engine=args.engine or settings.scale.build_engine,
                    ray_address=args.ray_address or settings.scale.ray_address)
    settings = replace(settings, scale=scale)
    start = time.perf_counter()
    if scale.build_engine == "ray":
        from rag.scale.ray_build import build_ray

        result = build_ray(settings, progress=not args.quiet, force=args.force)
        report = result.report
        for stage, nodes in result.nodes.items():
            print(f"  Ray {stage}：{len(nodes)} 个节点（{', '.join(n[:8] for n in nodes)}）")
    else:
        report = build(settings, progress=not args.quiet, force=args.force)
    if scale.vector_backend == "milvus":  # copy the folder into Milvus and switch the alias (rag/store/milvus.py)
        from rag.store.milvus import publish

        published = publish(settings)
        print(f"  Milvus {scale.milvus_uri}：别名 {published['alias']} → {published['chunks']}"
              f"（{published['rows']} 个句向量）")
    total = time.perf_counter() - start
    if report.up_to_date:
        print(f"索引已是最新，未重建：{report.index_dir}")
        print(f"  语料、分段设置、模型和程序均未变化，索引文件完好（文档 {report.documents} 个，"
              f"段落 {report.chunks} 个，句向量 {report.sentences} 个）")
        for book in report.books:
            print(book_line(book, fresh=False))
        print(f"  用时 {total:.1f} 秒。如需强制重建，请在命令后加 --force")
        return 0
    print(f"索引已写入 {report.index_dir}")
    print(f"  文档 {report.documents} 个，段落 {report.chunks} 个，句向量 {report.sentences} 个（新编码 "
          f"{report.embedded}，缓存复用 {report.cached}），词典 {report.lexicon_words} 个词")
    for book in report.books:
        print(book_line(book))
    for skipped in report.skipped:
        print(f"  跳过 {skipped}")
    timings = "，".join(f"{k} {v:.1f} 秒" for k, v in report.timings.items())
    print(f"  用时 {total:.1f} 秒（{timings}）")
    return 0
