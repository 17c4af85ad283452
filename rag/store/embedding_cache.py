"""The build's embedding cache: sentence vectors already computed, keyed by the sha256 of their text.

One SQLite file per model fingerprint (`embeddings/cache/embeddings/<fingerprint>/vectors.sqlite3`, the
folder the build names), a row per distinct text. A library re-built after one book changed reads every
cached vector back: one file and a few indexed SELECTs instead of a file per sentence (6.6M files for the
1,000-book library of issue 16). 3,794 vectors: read 0.07 s against 0.76–0.81 s from .npy files, written
0.25 s against 0.72–0.80 s (bench/RESULTS.md). Vectors cached by earlier versions as `<key>.npy` in the same
folder are still read, and copied into the database.

The cache only saves time: a read-only or full disk, a locked or damaged database, and a row of the wrong
size all mean "not cached" — the vector is computed again and the build goes on.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Iterable

import numpy as np

DATABASE = "vectors.sqlite3"
_BATCH = 500  # keys per SELECT (SQLite allows 32,766 parameters; small batches keep statements cheap)


class EmbeddingCache:
    """get/put of float32 rows of one dimension; `folder` None is a cache that holds nothing."""

    def __init__(self, folder: Path | None, dim: int) -> None:
        self.folder, self.dim = folder, dim
        self._db: sqlite3.Connection | None = None
        if folder is not None:
            self._db = _open(folder / DATABASE)
        # earlier versions' one file per row: looked up only where there are any
        self._legacy_files = folder is not None and folder.is_dir() and any(folder.glob("*.npy"))

    def get(self, keys: Iterable[str]) -> dict[str, np.ndarray]:
        """The cached rows of these keys (those not cached are left out)."""
        wanted = sorted(set(keys))
        found: dict[str, np.ndarray] = {}
        if self._db is not None:
            try:
                for lo in range(0, len(wanted), _BATCH):
                    part = wanted[lo:lo + _BATCH]
                    marks = ",".join("?" * len(part))
                    for key, blob in self._db.execute(f"SELECT key, vector FROM vectors WHERE key IN ({marks})",
                                                      part):
                        if len(blob) == 4 * self.dim:
                            found[key] = np.frombuffer(blob, dtype=np.float32).copy()
            except sqlite3.Error:
                found = {}
        legacy = {k: row for k in wanted if k not in found and (row := self._legacy(k)) is not None}
        if legacy:
            self.put(legacy.items())
        return found | legacy

    def first(self, n: int) -> dict[str, np.ndarray]:
        """Up to n cached rows, by key, .npy entries of earlier versions included (a sample of the model's
        vectors for the benchmarks)."""
        keys: list[str] = []
        if self._db is not None:
            try:
                keys = [k for (k,) in self._db.execute("SELECT key FROM vectors ORDER BY key LIMIT ?", (n,))]
            except sqlite3.Error:
                keys = []
        if self._legacy_files and self.folder is not None:
            keys += [p.stem for p in self.folder.glob("*.npy")]
        return self.get(sorted(set(keys))[:n])

    def put(self, rows: Iterable[tuple[str, np.ndarray]]) -> None:
        if self._db is None:
            return
        data = [(k, np.ascontiguousarray(v, dtype=np.float32).tobytes()) for k, v in rows]
        try:
            with self._db:
                self._db.executemany("INSERT OR REPLACE INTO vectors (key, vector) VALUES (?, ?)", data)
        except sqlite3.Error:
            pass  # a read-only or full disk must not fail the build

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def __enter__(self) -> EmbeddingCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _legacy(self, key: str) -> np.ndarray | None:
        """A row an earlier version cached as its own .npy file."""
        path = self.folder / f"{key}.npy" if self._legacy_files and self.folder is not None else None
        if path is None or not path.is_file():
            return None
        try:
            row = np.load(path, allow_pickle=False)
        except (OSError, ValueError):
            return None  # a damaged cache entry is simply recomputed
        return row if row.shape == (self.dim,) and row.dtype == np.float32 else None


def _open(path: Path) -> sqlite3.Connection | None:
    """The database, created when missing; a damaged file is set aside and a new one started."""
    for attempt in range(2):
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(path, timeout=30, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")  # parallel builds: readers never wait for a writer
            db.execute("CREATE TABLE IF NOT EXISTS vectors (key TEXT PRIMARY KEY, vector BLOB NOT NULL) "
                       "WITHOUT ROWID")
            return db
        except sqlite3.OperationalError:
            return _read_only(path)  # a read-only disk (or a lock held too long): read what is there
        except sqlite3.DatabaseError:
            if attempt or not path.is_file():
                return None
            _set_aside(path)  # not a database: start a new one
        except OSError:
            return _read_only(path)
    return None


def _read_only(path: Path) -> sqlite3.Connection | None:
    if not path.is_file():
        return None
    try:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=30, check_same_thread=False)
        db.execute("SELECT 1 FROM vectors LIMIT 1").fetchall()
        return db
    except sqlite3.Error:
        return None


def _set_aside(path: Path) -> None:
    """Move a damaged database (and its WAL files) out of the way; keep it for a look, once."""
    for suffix in ("", "-wal", "-shm"):
        with_suffix = Path(f"{path}{suffix}")
        if with_suffix.exists():
            try:
                os.replace(with_suffix, Path(f"{path}.damaged{suffix}"))
            except OSError:
                pass

