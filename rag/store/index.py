"""The index: a self-describing folder with FAISS vectors, a BM25 index, the chunk table and a manifest.

Layout of `embeddings/index/` (every file is listed in manifest.json with its size and sha256):
    manifest.json   model (name, weights fingerprint, dim, prompts), chunk settings, corpus checksums …
    vectors.faiss   FAISS IndexFlatIP (HNSW for very large corpora, rag/ann.py) over the sentence vectors;
                    row j is row j of units.npy
    units.npy       int32 (chunk row, start, end): which chunk each vector's sentence belongs to, and where
    chunks.json     the chunk table (text, section path, pages, offsets)
    book.json       the 目录 rows and the 版权页 fields
    lexicon.txt     the jieba user dictionary the BM25 index was built with (loaded again at query time)
    bm25/           the bm25s index files (BM25 over section path + chunk text)

Dense retrieval scores a chunk by its best-matching sentence. Measured (bench/RESULTS.md): with the 4-bit
e5-small model a whole-chunk vector blurs a 300-character passage into its general topic (book questions: R@5
0.685), while the best sentence finds the passage that says it (R@5 0.945; CMRC R@1 0.954 → 0.972).

Loading checks the manifest against the configured model and settings and every file against its checksum; it
never rebuilds. Building lives in rag/build.py (`build_index` below is its entry point).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from rag.store.vectors import search_depth
from rag.config import DEFAULT_MODEL_DIR, ROOT, Settings
from rag.errors import (REBUILD_COMMAND, IndexCorruptError, IndexError_, IndexMismatchError,
                        IndexMissingError)
from rag.store.lexical import Lexical, read_word_list, write_lexicon
from rag.text.sentences import split_sentences
from rag.types import BookInfo, Chunk, TocEntry

FORMAT = 1
# What is embedded: each sentence of a chunk on its own (shorter ones joined to the next), and what BM25
# indexes: section path + chunk text. Part of the manifest, so a change of recipe makes old indexes refuse to
# load instead of silently mixing two kinds of vectors.
PASSAGE_RECIPE = "sentences/v1"
LOAD_ATTEMPTS = 3  # reads of a folder that a rebuild keeps swapping, before giving up
MIN_UNIT_CHARS = 8  # "具体来说：" alone would match every vague question
NO_DENSE = -1.0  # dense score of a chunk none of whose sentences was returned (the lowest cosine)
MANIFEST, VECTORS, UNITS, CHUNKS, BOOK, LEXICON, BM25_DIR = (
    "manifest.json", "vectors.faiss", "units.npy", "chunks.json", "book.json", "lexicon.txt", "bm25")


def passage_text(chunk: Chunk) -> str:
    """The text BM25 indexes for a chunk: the section path gives a short passage its topic."""
    path = " › ".join(chunk.section)
    return f"{path}\n{chunk.text}" if path else chunk.text


def sentence_units(chunk: Chunk) -> list[tuple[int, int]]:
    """(start, end) offsets in chunk.text of the sentences embedded for it; a very short sentence (a lead-in
    such as "具体来说：") is joined to the next one."""
    units: list[tuple[int, int]] = []
    pending: int | None = None
    for start, end in split_sentences(chunk.text):
        start = start if pending is None else pending
        if end - start < MIN_UNIT_CHARS:
            pending = start
            continue
        units.append((start, end))
        pending = None
    if pending is not None:
        if units:
            units[-1] = (units[-1][0], len(chunk.text.rstrip()))
        else:
            units.append((pending, len(chunk.text.rstrip())))
    return units or [(0, len(chunk.text))]


def sha256_file(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


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


class Index:
    """A loaded (or freshly built) index, read-only and safe to share between threads."""

    def __init__(self, chunks: tuple[Chunk, ...], vectors, units: np.ndarray, lexical: Lexical, tokenizer,
                 lexicon: Sequence[str] = (), toc: tuple[TocEntry, ...] = (), info: BookInfo | None = None,
                 manifest: dict[str, Any] | None = None, folder: Path | None = None) -> None:
        self.chunks = chunks
        self.units = units  # int32 rows (chunk row, start, end), one per vector
        self.lexicon = tuple(lexicon)  # the words the tokenizer was given (saved as lexicon.txt)
        self.toc = toc
        self.info = info
        self.manifest = manifest or {}
        self.folder = folder
        self.tokenizer = tokenizer  # the jieba tokenizer with the book lexicon (also used for highlighting)
        self._faiss = vectors
        self._lexical = lexical
        self._row = {c.id: i for i, c in enumerate(chunks)}

    def __len__(self) -> int:
        return len(self.chunks)

    def chunk(self, chunk_id: str) -> Chunk:
        return self.chunks[self._row[chunk_id]]

    def dense_scores(self, qvec: np.ndarray) -> np.ndarray:
        """Per chunk, the cosine of the query with its best sentence (NO_DENSE for a chunk without one).

        An exact index searches every sentence vector: a book has a few thousand at most, so this takes well
        under a millisecond and every chunk gets a dense score for fusion. An HNSW index (rag/ann.py) returns
        the best HNSW_DEPTH sentences, so only their chunks get a score."""
        out = np.full(len(self.chunks), NO_DENSE, dtype=np.float32)
        if self._faiss.ntotal:
            query = np.asarray(qvec, dtype=np.float32).reshape(1, -1)
            sims, rows = self._faiss.search(query, search_depth(self._faiss))  # all vectors unless HNSW
            found = rows[0] >= 0
            np.maximum.at(out, self.units[rows[0][found], 0], sims[0][found])
        return out

    @property
    def vector_index(self):
        """The FAISS index of the sentence vectors (flat or HNSW, see rag.store.vectors)."""
        return self._faiss

    def dense(self, qvec: np.ndarray, n: int) -> list[tuple[int, float]]:
        """Top-n (chunk row, cosine of its best sentence), best first."""
        scores = self.dense_scores(qvec)
        return [(r, float(scores[r])) for r in top_rows(scores, n, minimum=NO_DENSE)]

    def sentence_vectors(self, chunk_id: str) -> tuple[list[tuple[int, int]], np.ndarray]:
        """The embedded sentences of a chunk: (start, end) offsets in its text and their passage vectors
        (L2-normalised rows), so later stages can score sentences without encoding them again."""
        row = self._row[chunk_id]
        lo, hi = np.searchsorted(self.units[:, 0], [row, row + 1])  # units are stored in chunk order
        spans = [(int(a), int(b)) for _, a, b in self.units[lo:hi]]
        if hi == lo:
            return spans, np.zeros((0, self._faiss.d), dtype=np.float32)
        return spans, self._faiss.reconstruct_n(int(lo), int(hi - lo))

    def lexical_query(self, query: str) -> tuple[np.ndarray, float]:
        """BM25 score of every chunk, and the query's term coverage (see Lexical.query)."""
        return self._lexical.query(query)

    def lexical(self, query: str, n: int) -> list[tuple[int, float]]:
        """Top-n (chunk row, BM25 score) with a positive score."""
        scores = self._lexical.scores(query)
        return [(r, float(scores[r])) for r in top_rows(scores, n, minimum=0.0)]

    def neighbours(self, chunk_id: str) -> tuple[Chunk, ...]:
        """The chunks just before and after this one in the same document (either may be missing)."""
        row = self._row[chunk_id]
        me = self.chunks[row]
        around = (self.chunks[r] for r in (row - 1, row + 1) if 0 <= r < len(self.chunks))
        return tuple(c for c in around if c.source == me.source and abs(c.ordinal - me.ordinal) == 1)

    def save(self, folder: Path) -> None:
        """Write the data files (not the manifest) into an existing folder; same index → same bytes."""
        import faiss

        faiss.write_index(self._faiss, str(folder / VECTORS))
        np.save(folder / UNITS, np.asarray(self.units, dtype=np.int32), allow_pickle=False)
        _write_rows(folder / CHUNKS, [chunk_to_dict(c) for c in self.chunks])
        (folder / BOOK).write_text(json.dumps(book_to_dict(self.toc, self.info), ensure_ascii=False) + "\n",
                                   encoding="utf-8")
        write_lexicon(self.lexicon, folder / LEXICON)
        self._lexical.save(folder / BM25_DIR)

    @classmethod
    def load(cls, folder: Path, settings: Settings, embedder) -> Index:
        """Open an index folder after checking it was built for this model and these settings.

        A rebuild may swap a new folder in while this one is being read: the files would then come from two
        builds (and fail their checksums). When manifest.json changed during the load, it is read again from
        the start, so a load never mixes builds nor calls a healthy index damaged."""
        for attempt in range(1, LOAD_ATTEMPTS + 1):
            before = manifest_stamp(folder)
            try:
                manifest = read_manifest(folder, settings)
                check_manifest(manifest, folder, settings, embedder)
                verify_files(manifest, folder, settings)
                index = _open(folder, manifest, settings)
            except IndexError_:
                if manifest_stamp(folder) == before or attempt == LOAD_ATTEMPTS:
                    raise
                continue
            if manifest_stamp(folder) == before:
                return index
        raise IndexCorruptError(f"索引 {folder} 在读取期间连续被重建 {LOAD_ATTEMPTS} 次，请等构建结束后重试。")


def manifest_stamp(folder: Path) -> tuple[int, int, int] | None:
    """(inode, size, mtime) of manifest.json: every build writes a new one, so a swap changes it."""
    try:
        info = (folder / MANIFEST).stat()
    except OSError:
        return None
    return (info.st_ino, info.st_size, info.st_mtime_ns)


def build_index(settings: Settings, *, embedder=None, progress: bool = False, force: bool = False):
    """Build the index of settings.corpus into settings.index_dir (atomic swap), or report it up to date
    when it already is what the build would write (unless force); see rag.build."""
    from rag.build import build  # ingest, chunking and the model are needed to build, not to load

    return build(settings, embedder=embedder, progress=progress, force=force)


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


def corpus_stale(settings: Settings, manifest: dict[str, Any] | None = None) -> str | None:
    """What changed in the corpus folders since the index was built (added/removed/changed files), or None."""
    if manifest is None:
        manifest = read_manifest(settings.index_dir, settings)
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

def read_manifest(folder: Path, settings: Settings) -> dict[str, Any]:
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


def differences(manifest: dict[str, Any], settings: Settings, embedder) -> list[str]:
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


def check_manifest(manifest: dict[str, Any], folder: Path, settings: Settings, embedder) -> None:
    found = differences(manifest, settings, embedder)
    if found:
        raise IndexMismatchError(f"索引 {folder / MANIFEST} 与当前配置不一致：" + "；".join(found)
                                 + f"。请重建索引：{rebuild_command(settings)}")


def verify_files(manifest: dict[str, Any], folder: Path, settings: Settings) -> None:
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


def _open(folder: Path, manifest: dict[str, Any], settings: Settings) -> Index:
    import faiss

    from rag.text.tokenizer import Tokenizer

    fix = f"请重建索引：{rebuild_command(settings)}"
    try:
        chunks = tuple(chunk_from_dict(d) for d in json.loads((folder / CHUNKS).read_text(encoding="utf-8")))
        toc, info = book_from_dict(json.loads((folder / BOOK).read_text(encoding="utf-8")))
        vectors = faiss.read_index(str(folder / VECTORS))
        units = np.load(folder / UNITS, allow_pickle=False)
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as exc:
        raise IndexCorruptError(f"索引 {folder} 的文件无法读取（{type(exc).__name__}: {str(exc)[:120]}）。{fix}") from exc
    if vectors.ntotal != len(units) or (len(units) and int(units[:, 0].max()) >= len(chunks)):
        raise IndexCorruptError(f"索引文件 {folder / VECTORS}（{vectors.ntotal} 个向量）与 {UNITS}（{len(units)} 行）"
                                f"或 {CHUNKS}（{len(chunks)} 段）不一致。{fix}")
    words = read_word_list(folder / LEXICON)
    tokenizer = Tokenizer(words)
    lexical = Lexical.load(folder / BM25_DIR, tokenizer)
    return Index(chunks, vectors, units, lexical, tokenizer, words, toc, info, manifest, folder)


def top_rows(scores: np.ndarray, n: int, minimum: float) -> list[int]:
    """Rows of the n best scores above `minimum`; ties broken by row (results never depend on sort order)."""
    if n <= 0:
        return []
    rows = np.flatnonzero(scores > minimum)
    if len(rows) > n:  # a million chunks: sort only those at or above the n-th best score (ties kept)
        kth = np.partition(scores[rows], len(rows) - n)[len(rows) - n]
        rows = rows[scores[rows] >= kth]
    return [int(r) for r in rows[np.lexsort((rows, -scores[rows]))][:n]]


# --- (de)serialising the tables -----------------------------------------------------------------------------

def _write_rows(path: Path, rows: list[dict[str, Any]]) -> None:
    """A JSON array with one row per line: readable, diffable, byte-for-byte reproducible."""
    body = ",\n".join(json.dumps(r, ensure_ascii=False) for r in rows)
    path.write_text(f"[\n{body}\n]\n", encoding="utf-8")


def chunk_to_dict(chunk: Chunk) -> dict[str, Any]:
    d = asdict(chunk)
    d["section"] = list(chunk.section)
    return d


def chunk_from_dict(d: dict[str, Any]) -> Chunk:
    return Chunk(**{**d, "section": tuple(d["section"])})


def book_to_dict(toc: tuple[TocEntry, ...], info: BookInfo | None) -> dict[str, Any]:
    return {"toc": [asdict(t) for t in toc], "info": asdict(info) if info else None}


def book_from_dict(d: dict[str, Any]) -> tuple[tuple[TocEntry, ...], BookInfo | None]:
    toc = tuple(TocEntry(**t) for t in d.get("toc", []))
    info = BookInfo(**d["info"]) if d.get("info") else None
    return toc, info
