"""Building the index folder: corpus → chunks → vectors (cached by content) + BM25 → a new folder, swapped in.

The new index is written into a sibling folder (`index.building-<pid>`) and only renamed into place once
every file and the manifest are complete, so a failed or interrupted build leaves the previous index serving.
On Linux the swap is one atomic renameat2(RENAME_EXCHANGE); elsewhere two renames, with the old folder kept
until the new one is in place. Same inputs give the same chunk ids, the same files and therefore the same
manifest checksums.

A build whose inputs are those the index on disk was built from (corpus checksums, chunk settings, embedder
fingerprint, code and library versions) and whose files still match their manifest checksums is skipped:
the index is reported up to date without loading the model or jieba (`force=True` builds anyway).
"""

from __future__ import annotations

import ctypes
import datetime as dt
import hashlib
import json
import os
import platform
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from rag.store import index as ix
from rag.store.vectors import Kind
from rag.store.vectors import describe as describe_vector_index
from rag.store.vectors import make_vector_index
from rag.config import DEFAULT_MODEL_DIR, ModelSettings, Settings
from rag.errors import BuildError, IndexError_
from rag.store.lexical import Lexical, build_lexicon, read_word_list
from rag.types import Chunk, Document

HAND_LEXICON = "lexicon.txt"  # a hand-kept word list in a corpus folder, merged into the book lexicon
LIBRARIES = ("faiss-cpu", "bm25s", "jieba", "numpy", "sentence-transformers", "transformers", "torch",
             "onnxruntime", "tokenizers")
CODE_DIR = Path(__file__).resolve().parent  # the rag package: its sources are part of the build recipe


@dataclass(frozen=True)
class BuildReport:
    index_dir: Path
    documents: int
    chunks: int
    sentences: int  # vectors in the index (one per sentence unit)
    embedded: int  # distinct sentences encoded now
    cached: int  # vectors that came from the embedding cache (or repeated a sentence encoded now)
    lexicon_words: int
    skipped: tuple[str, ...] = ()
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage
    up_to_date: bool = False  # the index on disk already was this build's result: nothing was written


def build(settings: Settings, *, embedder=None, progress: bool = False, force: bool = False) -> BuildReport:
    from rag.chunk import chunk_corpus
    from rag.ingest.corpus import load_corpus

    timings: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[name] = round(now - clock, 3)
        clock = now

    if not force:
        current = current_manifest(settings, embedder)
        lap("check")
        if current is not None:
            return _unchanged_report(settings.index_dir, current, timings)
    corpus = load_corpus(list(settings.corpus))
    docs = tuple(d for d in corpus.documents if d.source != HAND_LEXICON)  # a word list, not a book
    chunks = chunk_corpus(docs, settings.chunk)
    lap("ingest+chunk")
    if embedder is None:
        from rag.model.embed import load_embedder

        embedder = load_embedder(settings.model)
    lap("model")
    cache = settings.index_dir.parent / "cache" / "embeddings" / embedder.fingerprint[:16]
    index, computed = make_index(docs, chunks, embedder, settings.corpus, cache, progress)
    lap("embed+lexical")
    skipped = tuple(f"{name}：{reason}" for name, reason in corpus.skipped)
    manifest = base_manifest(settings, embedder, index, docs, skipped)
    write_index(settings.index_dir, index, manifest)
    lap("write")
    return BuildReport(settings.index_dir, len(docs), len(chunks), len(index.units), computed,
                       len(index.units) - computed, len(index.lexicon), skipped, timings)


# --- skipping a build that would write the index already on disk -----------------------------------------

def current_manifest(settings: Settings, embedder=None) -> dict[str, Any] | None:
    """The manifest of settings.index_dir when a build now would produce that same index, else None.

    Same recipe (format, passage recipe, rag sources, library versions), chunk settings, model (name and
    fingerprint; computed without loading it, see planned_fingerprint) and corpus files (sha256), and every
    index file still has its recorded size and sha256 (the check Index.load makes)."""
    folder = settings.index_dir
    try:
        manifest = ix.read_manifest(folder, settings)
    except IndexError_:
        return None
    recipe = {"format": ix.FORMAT, "passage_recipe": ix.PASSAGE_RECIPE, "chunk": asdict(settings.chunk),
              "code": code_checksum(), "libraries": library_versions()}
    try:
        if any(manifest.get(key) != value for key, value in recipe.items()):
            return None
        if not _same_model(manifest["model"], settings, embedder):
            return None
        if manifest["corpus"]["files"] != ix.corpus_files(settings.corpus):
            return None
        ix.verify_files(manifest, folder, settings)
    except (OSError, IndexError_, KeyError, TypeError, AttributeError):  # a hand-edited or foreign manifest
        return None
    return manifest


def _same_model(built: dict[str, Any], settings: Settings, embedder) -> bool:
    """The manifest's model entry is what a build would write now (by fingerprint, without loading)."""
    if embedder is not None:
        return built == ix.expected_model(embedder)
    if built.get("name") != settings.model.name:
        return False
    # dim and prompts are read from the model's own files, which its fingerprint covers
    fingerprint = planned_fingerprint(settings.model)
    return fingerprint is not None and built.get("fingerprint") == fingerprint


def planned_fingerprint(model: ModelSettings) -> str | None:
    """The fingerprint load_embedder(model) would give, without loading the model: for the ONNX backends of
    the default model, from its fingerprint stamp and the ONNX receipt (as rag/embed.py:_load_onnx forms it).
    None when that takes a load (torch backend, another model, ONNX files missing or from other weights)."""
    from rag.model.embed import model_fingerprint, onnx_fingerprint, resolve_backend
    from rag.model.convert import ensure_default_model
    from rag.model.onnx import EXPORT_VERSION, FILES, needed_files, onnx_dir, read_receipt, unchanged

    backend = resolve_backend(model)
    if backend not in FILES or Path(model.name).expanduser().resolve() != DEFAULT_MODEL_DIR.resolve():
        return None
    path = ensure_default_model(DEFAULT_MODEL_DIR.parent)  # what loading does first (a no-op when current)
    source = model_fingerprint(path)
    folder = onnx_dir(path)
    receipt = read_receipt(folder)
    if receipt.get("source_fingerprint") != source or receipt.get("export_version") != EXPORT_VERSION:
        return None
    files = receipt.get("files") or {}
    if not all(n in files and unchanged(folder / FILES[n], files[n]) for n in needed_files(backend)):
        return None
    return onnx_fingerprint(backend, source, files[backend]["sha256"])


def code_checksum() -> str:
    """sha256 over the rag package's Python sources: a change to chunking, BM25 or the file layout (or any
    other code) makes the next build a real one."""
    digest = hashlib.sha256()
    for path in sorted(CODE_DIR.rglob("*.py")):
        digest.update(path.relative_to(CODE_DIR).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def library_versions() -> dict[str, str | None]:
    return {"python": platform.python_version(), **{n: _version(n) for n in LIBRARIES}}


def _unchanged_report(folder: Path, manifest: dict[str, Any], timings: dict[str, float]) -> BuildReport:
    counts = manifest.get("counts", {})
    sentences = int(counts.get("sentences", 0))
    return BuildReport(folder, int(counts.get("documents", 0)), int(counts.get("chunks", 0)), sentences, 0,
                       sentences, int(manifest.get("lexicon", {}).get("words", 0)),
                       tuple(manifest.get("corpus", {}).get("skipped", ())), timings, up_to_date=True)


# --- building ---------------------------------------------------------------------------------------------

def make_index(docs: Sequence[Document], chunks: Sequence[Chunk], embedder, corpus_roots: Sequence[Path] = (),
               cache: Path | None = None, progress: bool = False,
               vector_kind: Kind | None = None) -> tuple[ix.Index, int]:
    """The index in memory (also used by the benchmarks), and how many sentences had to be embedded.
    `vector_kind` forces a FAISS index type (tests); by default it follows the vector count (rag/ann.py)."""
    from rag.text.tokenizer import Tokenizer

    def lexical_side() -> tuple[list[str], Tokenizer, Lexical]:
        words = book_lexicon(docs, corpus_roots)
        tokenizer = Tokenizer(words)
        return words, tokenizer, Lexical.build([ix.passage_text(c) for c in chunks], tokenizer)

    # The lexical side (jieba's dictionary, BM25) is pure Python while the encoder spends its time in ONNX
    # Runtime / torch with the GIL released: run both at once (measured: the build costs the encoding plus
    # ≈ 0.1 s instead of plus the ≈ 0.5–1 s of the lexical side; bench/RESULTS.md, Performance).
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="rag-lexical") as pool:
        lexical_job = pool.submit(lexical_side)
        units = [(row, a, b) for row, c in enumerate(chunks) for a, b in ix.sentence_units(c)]
        texts = [chunks[row].text[a:b] for row, a, b in units]
        vectors, computed = embed_texts(texts, embedder, cache, progress)
        words, tokenizer, lexical = lexical_job.result()  # re-raises the lexical side's error, if any
    # Inner product over L2-normalised rows = cosine similarity. A book is a few thousand sentences: exact
    # (flat) search answers in well under a millisecond with no recall loss; HNSW only from ann.HNSW_FROM up.
    vector_index = make_vector_index(embedder.dim, len(vectors), force=vector_kind)
    vector_index.add(vectors)
    toc = tuple(t for d in docs for t in d.toc)
    info = next((d.info for d in docs if d.info is not None), None)
    table = np.asarray(units, dtype=np.int32).reshape(-1, 3)
    return ix.Index(tuple(chunks), vector_index, table, lexical, tokenizer, words, toc, info), computed


def book_lexicon(documents: Sequence[Document], corpus_roots: Sequence[Path]) -> list[str]:
    """Quoted terms, short headings and 目录 titles of the books, plus each corpus folder's lexicon.txt."""
    headings = [d.text[b.start:b.end] for d in documents for b in d.blocks if b.is_heading]
    headings += [t.title for d in documents for t in d.toc]
    hand = [w for root in corpus_roots if (root / HAND_LEXICON).is_file()
            for w in read_word_list(root / HAND_LEXICON)]
    return build_lexicon((d.text for d in documents), headings, hand)


def embed_texts(texts: Sequence[str], embedder, cache: Path | None,
                progress: bool = False) -> tuple[np.ndarray, int]:
    """Passage vectors, reusing cached rows keyed by model fingerprint (the folder) + text hash; each distinct
    text is encoded once. Returns the vectors and how many texts were encoded now."""
    keys = [hashlib.sha256(t.encode("utf-8")).hexdigest() for t in texts]
    found = {k: row for k in set(keys) if (row := _cache_get(cache, k, embedder.dim)) is not None}
    todo = sorted({k: t for k, t in zip(keys, texts) if k not in found}.items())
    if todo:
        fresh = embedder.encode_passages([t for _, t in todo], progress=progress)
        for (key, _), row in zip(todo, fresh):
            found[key] = row
            _cache_put(cache, key, row)
    vectors = np.stack([found[k] for k in keys]) if keys else np.zeros((0, embedder.dim))
    return np.ascontiguousarray(vectors, dtype=np.float32), len(todo)


def _cache_get(cache: Path | None, key: str, dim: int) -> np.ndarray | None:
    if cache is None or not (cache / f"{key}.npy").is_file():
        return None
    try:
        row = np.load(cache / f"{key}.npy", allow_pickle=False)
    except (OSError, ValueError):
        return None  # a damaged cache entry is simply recomputed
    return row if row.shape == (dim,) and row.dtype == np.float32 else None


def _cache_put(cache: Path | None, key: str, row: np.ndarray) -> None:
    if cache is None:
        return
    try:
        cache.mkdir(parents=True, exist_ok=True)
        tmp = cache / f".{key}.{os.getpid()}.npy"
        np.save(tmp, np.asarray(row, dtype=np.float32), allow_pickle=False)
        os.replace(tmp, cache / f"{key}.npy")
    except OSError:
        pass  # the cache only saves time; a read-only disk must not fail the build


# --- the manifest -----------------------------------------------------------------------------------------

def base_manifest(settings: Settings, embedder, index: ix.Index, docs: Sequence[Document],
                  skipped: Sequence[str]) -> dict[str, Any]:
    files = ix.corpus_files(settings.corpus)
    kinds: dict[str, int] = {}
    for c in index.chunks:
        kinds[c.kind] = kinds.get(c.kind, 0) + 1
    return {
        "format": ix.FORMAT,
        "model": ix.expected_model(embedder),
        "chunk": asdict(settings.chunk),
        "passage_recipe": ix.PASSAGE_RECIPE,
        "vector_index": describe_vector_index(index.vector_index),
        "corpus": {"files": files, "checksum": ix.corpus_checksum(files),
                   "documents": {d.source: d.checksum for d in docs}, "skipped": list(skipped)},
        "lexicon": {"file": ix.LEXICON, "words": len(index.lexicon)},
        "counts": {"documents": len(docs), "chunks": len(index.chunks), "sentences": len(index.units),
                   "kinds": dict(sorted(kinds.items())), "toc_entries": len(index.toc)},
        "code": code_checksum(),
        "libraries": library_versions(),
        "built_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


# --- writing and swapping ---------------------------------------------------------------------------------

def write_index(target: Path, index: ix.Index, manifest: dict[str, Any]) -> None:
    """Write every file into a fresh sibling folder, then swap it in; on any failure the old index stays."""
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_abandoned(target)
    tmp = target.with_name(f"{target.name}.building-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir()
        index.save(tmp)
        manifest = {**manifest, "files": _file_table(tmp)}
        manifest["lexicon"]["sha256"] = manifest["files"][ix.LEXICON]["sha256"]
        text = json.dumps(manifest, ensure_ascii=False, indent=2) + "\n"
        (tmp / ix.MANIFEST).write_text(text, encoding="utf-8")
        _swap_in(tmp, target)
    except (OSError, RuntimeError) as exc:  # a full disk, a read-only folder (FAISS reports RuntimeError)
        kept = f"原有索引 {target} 未改动，仍可使用" if target.exists() else f"{target} 尚无索引"
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)[-160:]
        raise BuildError(f"无法写入新索引 {tmp}：{reason}。{kept}。"
                         f"请检查磁盘空间和写入权限后重新构建。") from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # after a swap it holds the previous index (or nothing)


def _file_table(folder: Path) -> dict[str, dict[str, Any]]:
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    return {p.relative_to(folder).as_posix(): {"bytes": p.stat().st_size, "sha256": ix.sha256_file(p)}
            for p in files}


def _swap_in(new: Path, target: Path) -> None:
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


def _remove_abandoned(target: Path) -> None:
    """Folders left by builds that were killed outright (SIGKILL, power loss): their process is gone."""
    for path in target.parent.glob(f"{target.name}.building-*"):
        pid = path.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
