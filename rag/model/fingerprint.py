"""What identifies a model: sha256 over its directory's files, remembered next to it by size and mtime."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Sequence

from rag.files import sha256_file

SKIP_IN_FINGERPRINT = frozenset({"provenance.json", "README.md"})


def onnx_fingerprint(backend: str, source: str, onnx_sha256: str) -> str:
    """What an index records for vectors of an ONNX backend: the backend, the source weights' fingerprint and
    the graph file's sha256; int8 also says its texts are encoded one per run (rag/model/onnx.py)."""
    recipe = f"{backend}\0{source}\0{onnx_sha256}" + ("\0one-per-run" if backend == "onnx-int8" else "")
    return hashlib.sha256(recipe.encode()).hexdigest()


def _model_files(path: Path) -> list[Path]:
    """The files that make the model (hidden files, the receipt and README aside), in a fixed order."""
    files = []
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        rel = file.relative_to(path)
        if rel.as_posix() not in SKIP_IN_FINGERPRINT and not any(part.startswith(".") for part in rel.parts):
            files.append(file)
    return files


def fingerprint_of(digests: Sequence[tuple[str, str]]) -> str:
    """The directory fingerprint from (relative path, sha256 hex) pairs in _model_files order."""
    digest = hashlib.sha256()
    for rel, sha in digests:
        digest.update(rel.encode() + b"\0" + bytes.fromhex(sha))
    return digest.hexdigest()


def dir_fingerprint(path: Path) -> str:
    """sha256 over the directory's files (weights, tokenizer, configs), so an index knows its exact model."""
    return fingerprint_of([(file.relative_to(path).as_posix(), sha256_file(file)) for file in _model_files(path)])


def _stamp_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.fingerprint.json")


def _listing(path: Path) -> dict[str, list[int]]:
    stats = {f.relative_to(path).as_posix(): f.stat() for f in _model_files(path)}
    return {rel: [st.st_size, st.st_mtime_ns] for rel, st in stats.items()}


def write_stamp(path: Path, fingerprint: str, listing: dict[str, list[int]] | None = None) -> None:
    """Remember the fingerprint next to the directory, keyed by every file's size and mtime."""
    stamp = _stamp_path(path)
    try:
        tmp = stamp.with_name(f"{stamp.name}.{os.getpid()}")
        tmp.write_text(json.dumps({"fingerprint": fingerprint, "files": listing or _listing(path)}),
                       encoding="utf-8")
        os.replace(tmp, stamp)
    except OSError:
        pass  # a read-only place: the fingerprint is simply hashed again next time


def model_fingerprint(path: Path) -> str:
    """dir_fingerprint without reading ~490 MB on every load: the stamp written next to the directory (by the
    converter from its receipt's checksums, or after the last full hash) is trusted while every file keeps its
    size and mtime, as make and rsync judge files; any copy, edit or added file means hashing again."""
    listing = _listing(path)
    try:
        saved = json.loads(_stamp_path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        saved = {}
    if saved.get("files") == listing and isinstance(saved.get("fingerprint"), str):
        return saved["fingerprint"]
    fingerprint = dir_fingerprint(path)
    write_stamp(path, fingerprint, listing)
    return fingerprint
