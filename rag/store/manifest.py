"""The index manifest: what an index folder was built from, read and checked in one place.

manifest.json records the format, the model (name, weights fingerprint, dim, prompts), the chunk settings, the
passage recipe, the vector store, the corpus files with their sha256, the books, counts, the code and library
versions, the build time, and every file of the folder with its size and sha256. Loading checks it against the
configuration and every file against its checksum; a build whose inputs equal what a manifest records (and
whose files still match it) is skipped (`current`).
"""

from __future__ import annotations

import hashlib
import json
import platform
from dataclasses import asdict
from pathlib import Path
from typing import Any, Sequence, TypedDict

from rag.config import DEFAULT_MODEL_DIR, ROOT, Settings
from rag.errors import (REBUILD_COMMAND, IndexCorruptError, IndexError_, IndexMismatchError,
                        IndexMissingError)
from rag.files import sha256_file, version
from rag.model.embed import planned_fingerprint

FORMAT = 2
# What is embedded: each sentence of a chunk on its own (shorter ones joined to the next), and what BM25
# indexes: section path + chunk text. Part of the manifest, so a change of recipe makes old indexes refuse to
# load instead of silently mixing two kinds of vectors.
PASSAGE_RECIPE = "sentences/v1"
MANIFEST = "manifest.json"
LIBRARIES = ("faiss-cpu", "bm25s", "jieba", "numpy", "sentence-transformers", "transformers", "torch",
             "onnxruntime", "tokenizers")
CODE_DIR = Path(__file__).resolve().parent.parent  # the rag package: its sources are part of the build recipe


class Manifest(TypedDict, total=False):
    """manifest.json as read: JSON objects keyed as rag.build writes them."""

    format: int
    model: dict[str, Any]  # name, fingerprint, dim, prompts
    chunk: dict[str, Any]  # ChunkSettings
    passage_recipe: str
    vector_index: dict[str, Any]  # VectorStore.describe()
    corpus: dict[str, Any]  # files {key: sha256}, checksum, documents, skipped
    books: list[dict[str, Any]]  # id, title, files
    lexicon: dict[str, Any]  # file, words, sha256
    counts: dict[str, Any]
    code: str
    libraries: dict[str, str | None]
    built_at: str
    files: dict[str, dict[str, Any]]  # {relative path: {"bytes", "sha256"}}


def rebuild_command(settings: Settings) -> str:
    """The exact command that rebuilds the index these settings point at."""
    parts = []
    if settings.index_dir.resolve() != (ROOT / "embeddings" / "index").resolve():
        parts.append(f"--index {settings.index_dir}")
    if Path(settings.model.name).expanduser().resolve() != DEFAULT_MODEL_DIR.resolve():
        parts.append(f"--model {settings.model.name}")
    if tuple(p.resolve() for p in settings.corpus) != ((ROOT / "corpus").resolve(),):
        parts.extend(f"--corpus {p}" for p in settings.corpus)
    if not parts:
        return REBUILD_COMMAND
    return " ".join([".venv/bin/python -m rag build", *parts])



def manifest_stamp(folder: Path) -> tuple[int, int, int] | None:
    """(inode, size, mtime) of manifest.json: every build writes a new one, so a swap changes it."""
    try:
        info = (folder / MANIFEST).stat()
    except OSError:
        return None
    return (info.st_ino, info.st_size, info.st_mtime_ns)



def corpus_files(roots: Sequence[Path]) -> dict[str, str]:
    """sha256 of every file under the corpus roots (hidden files aside), keyed "<root name>/<path>"."""
    found: dict[str, str] = {}
    for root in roots:
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for path in files:
            rel = path.relative_to(root.parent if root.is_file() else root)
            if not any(part.startswith(".") for part in rel.parts):
                key = f"{root.name}/{rel.as_posix()}" if root.is_dir() else rel.as_posix()
                found[key] = sha256_file(path)
    return found


def corpus_checksum(files: dict[str, str]) -> str:
    return hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()


def corpus_stale(settings: Settings, manifest: Manifest | None = None) -> str | None:
    """What changed in the corpus folders since the index was built (added/removed/changed files), or None."""
    if manifest is None:
        manifest = read(settings.index_dir, settings)
    built = manifest.get("corpus", {}).get("files", {})
    try:
        now = corpus_files(settings.corpus)
    except OSError as exc:
        return f"无法读取语料 {', '.join(map(str, settings.corpus))}：{exc}"
    changed = {n for n in now.keys() & built.keys() if now[n] != built[n]}
    parts = [f"{label} {'、'.join(sorted(names))}" for label, names in
             (("新增", now.keys() - built.keys()), ("删除", built.keys() - now.keys()), ("修改", changed)) if names]
    return "语料已变化：" + "；".join(parts) if parts else None



# --- loading and checking ---------------------------------------------------------------------------------

def read(folder: Path, settings: Settings) -> Manifest:
    path = folder / MANIFEST
    if not path.is_file():
        raise IndexMissingError(f"没有找到索引：{path} 不存在。请先构建索引：{rebuild_command(settings)}")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        manifest["files"]  # noqa: B018 — a manifest without its file list is as broken as unreadable JSON
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise IndexCorruptError(f"索引清单 {path} 无法读取（{type(exc).__name__}）。"
                                f"请重建索引：{rebuild_command(settings)}") from exc
    return manifest


def expected_model(embedder) -> dict[str, Any]:
    return {"name": embedder.name, "fingerprint": embedder.fingerprint, "dim": embedder.dim,
            "prompts": embedder.prompts}


def differences(manifest: Manifest, settings: Settings, embedder) -> list[str]:
    """What differs between the index and the configuration, in words (empty when they agree)."""
    found = []
    if manifest.get("format") != FORMAT:
        found.append(f"索引格式版本 {manifest.get('format')}，程序需要 {FORMAT}")
    model, want = manifest.get("model", {}), expected_model(embedder)
    if model.get("fingerprint") != want["fingerprint"]:
        found.append(f"模型不同：索引用 {model.get('name')}（指纹 {str(model.get('fingerprint'))[:12]}），"
                     f"当前配置 {want['name']}（指纹 {want['fingerprint'][:12]}）")
    for key, label in (("dim", "向量维度"), ("prompts", "查询/段落前缀")):
        if model.get(key) != want[key]:
            found.append(f"{label}不同：索引 {model.get(key)!r}，当前 {want[key]!r}")
    chunk = manifest.get("chunk", {})
    for key, value in asdict(settings.chunk).items():
        if chunk.get(key) != value:
            found.append(f"分段设置 {key} 不同：索引 {chunk.get(key)!r}，当前 {value!r}")
    if manifest.get("passage_recipe") != PASSAGE_RECIPE:
        found.append(f"段落编码方式不同：索引 {manifest.get('passage_recipe')!r}，当前 {PASSAGE_RECIPE!r}")
    return found


def check_manifest(manifest: Manifest, folder: Path, settings: Settings, embedder) -> None:
    found = differences(manifest, settings, embedder)
    if found:
        raise IndexMismatchError(f"索引 {folder / MANIFEST} 与当前配置不一致：" + "；".join(found)
                                 + f"。请重建索引：{rebuild_command(settings)}")


def verify_files(manifest: Manifest, folder: Path, settings: Settings) -> None:
    """Every file of the manifest exists with its recorded size and checksum (a truncated copy is caught)."""
    for name, meta in sorted(manifest["files"].items()):
        path = folder / name
        fix = f"请重建索引：{rebuild_command(settings)}"
        if not path.is_file():
            raise IndexCorruptError(f"索引文件 {path} 缺失。{fix}")
        size = path.stat().st_size
        if size != meta["bytes"]:
            raise IndexCorruptError(f"索引文件 {path} 已损坏：大小 {size} 字节，清单记录 {meta['bytes']} 字节。{fix}")
        if sha256_file(path) != meta["sha256"]:
            raise IndexCorruptError(f"索引文件 {path} 已损坏：校验和与清单 {MANIFEST} 不符。{fix}")



# --- skipping a build that would write the index already on disk -----------------------------------------

def current(settings: Settings, embedder=None) -> dict[str, Any] | None:
    """The manifest of settings.index_dir when a build now would produce that same index, else None.

    Same recipe (format, passage recipe, rag sources, library versions), chunk settings, model (name and
    fingerprint; computed without loading it, see planned_fingerprint) and corpus files (sha256), and every
    index file still has its recorded size and sha256 (the check Index.load makes)."""
    folder = settings.index_dir
    try:
        manifest = read(folder, settings)
    except IndexError_:
        return None
    recipe = {"format": FORMAT, "passage_recipe": PASSAGE_RECIPE, "chunk": asdict(settings.chunk),
              "code": code_checksum(), "libraries": library_versions()}
    try:
        if any(manifest.get(key) != value for key, value in recipe.items()):
            return None
        if not _same_model(manifest["model"], settings, embedder):
            return None
        if manifest["corpus"]["files"] != corpus_files(settings.corpus):
            return None
        verify_files(manifest, folder, settings)
    except (OSError, IndexError_, KeyError, TypeError, AttributeError):  # a hand-edited or foreign manifest
        return None
    return manifest


def _same_model(built: dict[str, Any], settings: Settings, embedder) -> bool:
    """The manifest's model entry is what a build would write now (by fingerprint, without loading)."""
    if embedder is not None:
        return built == expected_model(embedder)
    if built.get("name") != settings.model.name:
        return False
    # dim and prompts are read from the model's own files, which its fingerprint covers
    fingerprint = planned_fingerprint(settings.model)
    return fingerprint is not None and built.get("fingerprint") == fingerprint



def code_checksum() -> str:
    """sha256 over the rag package's Python sources: a change to chunking, BM25 or the file layout (or any
    other code) makes the next build a real one."""
    digest = hashlib.sha256()
    for path in sorted(CODE_DIR.rglob("*.py")):
        digest.update(path.relative_to(CODE_DIR).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def library_versions() -> dict[str, str | None]:
    return {"python": platform.python_version(), **{n: version(n) for n in LIBRARIES}}
