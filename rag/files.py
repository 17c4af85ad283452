"""Files on disk, one home for each job: checksums and file tables, atomic writes, folder swaps, locks, versions.

Every folder the project writes (the index, the converted model, its ONNX export) is written beside its target
and swapped in whole, and described by one kind of file table: {relative path: {"bytes", "sha256"}} (plus
"mtime_ns" where a later run trusts size and mtime instead of hashing again, as make and rsync do).
"""

from __future__ import annotations

import ctypes
import fcntl
import hashlib
import os
import shutil
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any, Iterator


def sha256_file(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def file_record(path: Path, sha256: str | None = None, *, mtime: bool = False) -> dict[str, Any]:
    """What a file table says of one file: its size and sha256 (and its mtime, with `mtime`)."""
    st = path.stat()
    record: dict[str, Any] = {"bytes": st.st_size, "sha256": sha256 or sha256_file(path)}
    if mtime:
        record["mtime_ns"] = st.st_mtime_ns
    return record


def file_table(folder: Path, *, skip: frozenset[str] = frozenset(), mtime: bool = False) -> dict[str, Any]:
    """The record of every file under `folder` (hidden files and `skip` aside), by relative path."""
    table = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = path.relative_to(folder).as_posix()
        if rel not in skip and not any(part.startswith(".") for part in Path(rel).parts):
            table[rel] = file_record(path, mtime=mtime)
    return table


def unchanged(path: Path, record: dict[str, Any]) -> bool:
    """The file is the one the record describes, judged by size and mtime (a copy or an edit changes the
    mtime, and then the caller hashes the bytes instead of trusting the record)."""
    try:
        st = path.stat()
    except OSError:
        return False
    return st.st_size == record.get("bytes") and st.st_mtime_ns == record.get("mtime_ns")


def write_atomic(path: Path, data: str | bytes) -> None:
    """Write a file whole or not at all: a temporary sibling, then a rename."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    try:
        if isinstance(data, str):
            tmp.write_text(data, encoding="utf-8")
        else:
            tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def swap_dir(new: Path, target: Path) -> None:
    """Put the folder `new` at `target`; the folder that was there ends up at `new` (or is removed)."""
    if not target.exists():
        os.rename(new, target)
    elif not _exchange(new, target):
        old = target.with_name(f"{target.name}.old-{os.getpid()}")
        os.rename(target, old)
        os.rename(new, target)
        shutil.rmtree(old, ignore_errors=True)


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two directories (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    return renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0


def remove_abandoned(target: Path, infix: str = "building") -> None:
    """`<target>.<infix>-<pid>` folders left by writers that were killed outright: their process is gone."""
    for path in target.parent.glob(f"{target.name}.{infix}-*"):
        pid = path.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """An exclusive lock held while the block runs: concurrent processes wait for one writer."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def version(distribution: str) -> str | None:
    """The installed version of a distribution, None when it is not installed."""
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None
