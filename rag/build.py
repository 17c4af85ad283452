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

import datetime as dt
import hashlib
import json
import os
import shutil
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from rag.chunk import chunk_corpus, sentence_spans
from rag.config import Settings
from rag.errors import BuildError
from rag.files import file_table, remove_abandoned, swap_dir
from rag.ingest.corpus import LEXICON_FILE, load_corpus
from rag.model.embed import load_embedder
from rag.store import index as ix
from rag.store import manifest as mf
from rag.store.embedding_cache import EmbeddingCache
from rag.store.lexical import Lexical, build_lexicon, read_word_list
from rag.store.vectors import Kind, make_vector_store
from rag.text.numerals import ARTICLE_RE
from rag.text.tokenizer import Tokenizer
from rag.types import Book, Chunk, Document

HAND_LEXICON = LEXICON_FILE  # a hand-kept word list in a corpus folder, merged into the book lexicon


@dataclass(frozen=True)
class BookReport:
    """What the index holds of one book (`rag build` prints a line each)."""

    id: str
    title: str
    files: int
    chunks: int
    pages: int  # printed page numbers (arabic or roman) its passages carry
    articles: int  # 「第…条」 articles, the citation anchor of a 章/节/条 text without pages
    toc: int  # 目录 entries
    sentences: int  # sentence vectors
    encoded: int = 0  # of those, encoded by this build; the others came from the embedding cache

    @property
    def reused(self) -> int:
        return self.sentences - self.encoded


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
    books: tuple[BookReport, ...] = ()  # per book, in corpus order


def stopwatch(timings: dict[str, float]) -> Callable[[str], None]:
    """`lap(name)` records the seconds since the previous lap (or since now) under `name` in `timings`."""
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[name] = round(now - clock, 3)
        clock = now

    return lap


def build(settings: Settings, *, embedder=None, progress: bool = False, force: bool = False) -> BuildReport:
    timings: dict[str, float] = {}
    lap = stopwatch(timings)

    if not force:
        current = mf.current(settings, embedder)
        lap("check")
        if current is not None:
            return _unchanged_report(settings.index_dir, current, timings)
    corpus = load_corpus(list(settings.corpus))
    docs = corpus.documents  # the root lexicon.txt is a word list, set aside by load_corpus
    chunks = chunk_corpus(docs, settings.chunk)
    lap("ingest+chunk")
    if embedder is None:
        embedder = load_embedder(settings.model)
    lap("model")
    cache = settings.index_dir.parent / "cache" / "embeddings" / embedder.fingerprint[:16]
    fresh: set[str] = set()
    index, computed = make_index(docs, chunks, embedder, settings.corpus, cache, progress,
                                 titles=corpus.titles, fresh=fresh)
    lap("embed+lexical")
    skipped = tuple(f"{name}：{reason}" for name, reason in corpus.skipped)
    manifest = base_manifest(settings, embedder, index, docs, skipped)
    write_index(settings.index_dir, index, manifest)
    lap("write")
    return BuildReport(settings.index_dir, len(docs), len(chunks), len(index.units), computed,
                       len(index.units) - computed, len(index.lexicon), skipped, timings,
                       books=book_reports(manifest, encoded_by_book(chunks, index.units.tolist(), fresh)))


def encoded_by_book(chunks: Sequence[Chunk], units: Sequence[Sequence[int]], fresh: set[str]) -> Counter:
    """How many sentence units of each book were encoded by this build (their texts are in `fresh`)."""
    return Counter(chunks[r].book for r, a, b in units if chunks[r].text[a:b] in fresh)


def _unchanged_report(folder: Path, manifest: mf.Manifest, timings: dict[str, float]) -> BuildReport:
    counts = manifest.get("counts", {})
    sentences = int(counts.get("sentences", 0))
    return BuildReport(folder, int(counts.get("documents", 0)), int(counts.get("chunks", 0)), sentences, 0,
                       sentences, int(manifest.get("lexicon", {}).get("words", 0)),
                       tuple(manifest.get("corpus", {}).get("skipped", ())), timings, up_to_date=True,
                       books=book_reports(manifest, {}))


def book_reports(manifest: mf.Manifest, encoded: dict[str, int]) -> tuple[BookReport, ...]:
    """The manifest's per-book counts, with how many sentences of each book were encoded now."""
    return tuple(BookReport(b["id"], b["title"], len(b.get("files", ())), int(b.get("chunks", 0)),
                            int(b.get("pages", 0)), int(b.get("articles", 0)), int(b.get("toc", 0)),
                            int(b.get("sentences", 0)), int(encoded.get(b["id"], 0)))
                 for b in manifest.get("books", ()))


# --- building ---------------------------------------------------------------------------------------------

def make_index(docs: Sequence[Document], chunks: Sequence[Chunk], embedder, corpus_roots: Sequence[Path] = (),
               cache: Path | None = None, progress: bool = False,
               vector_kind: Kind | None = None, titles: dict[str, str] | None = None,
               fresh: set[str] | None = None) -> tuple[ix.Index, int]:
    """The index in memory (also used by the benchmarks), and how many sentences had to be embedded (their
    texts are added to `fresh` when it is given). `vector_kind` forces a vector store type (tests); by
    default it follows the vector count (rag/store/vectors.py)."""
    def lexical_side() -> tuple[list[str], Tokenizer, Lexical]:
        words = book_lexicon(docs, corpus_roots)
        tokenizer = Tokenizer(words)
        parts = list(ix.runs_of([c.book for c in chunks]).values())  # BM25 statistics per book as well
        return words, tokenizer, Lexical.build([ix.passage_text(c) for c in chunks], tokenizer, parts)

    # The lexical side (jieba's dictionary, BM25) is pure Python while the encoder spends its time in ONNX
    # Runtime / torch with the GIL released: run both at once (measured: the build costs the encoding plus
    # ≈ 0.1 s instead of plus the ≈ 0.5–1 s of the lexical side; bench/RESULTS.md, Performance).
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="rag-lexical") as pool:
        lexical_job = pool.submit(lexical_side)
        units = [(row, a, b) for row, c in enumerate(chunks) for a, b in ix.sentence_units(c)]
        texts = [chunks[row].text[a:b] for row, a, b in units]
        vectors, computed = embed_texts(texts, embedder, cache, progress, fresh)
        words, tokenizer, lexical = lexical_job.result()  # re-raises the lexical side's error, if any
    # Inner product over L2-normalised rows = cosine similarity. A book is a few thousand sentences: exact
    # (flat) search answers in well under a millisecond with no recall loss; HNSW only from ann.HNSW_FROM up.
    store = make_vector_store(embedder.dim, len(vectors), force=vector_kind)
    store.add(vectors)
    table = np.asarray(units, dtype=np.int32).reshape(-1, 3)
    books = books_of(docs, titles)
    passages = embed_passages(answer_passages(chunks, books, units), embedder, cache)
    return ix.Index(tuple(chunks), store, table, lexical, tokenizer, words, books, passages=passages), computed


def answer_passages(chunks: Sequence[Chunk], books: Sequence[Book], units: Sequence[Sequence[int]]) -> list[str]:
    """The other texts the answer stage scores by meaning, distinct and sorted: every 目录 title and the answer
    sentences of each chunk (rag.chunk.sentence_spans) that are not one of its sentence units. Stored with the
    index, so the first question after a start encodes only itself (issue 12: cold start)."""
    embedded = {tuple(u) for u in units}
    texts = {e.title for b in books for e in b.toc if e.title}
    for row, c in enumerate(chunks):
        texts.update(c.text[a:b] for a, b in sentence_spans(c) if (row, a, b) not in embedded)
    return sorted(texts)


def embed_passages(texts: Sequence[str], embedder, cache: Path | None) -> dict[str, np.ndarray]:
    vectors, _ = embed_texts(texts, embedder, cache)
    return dict(zip(texts, vectors))


def books_of(docs: Sequence[Document], titles: dict[str, str] | None = None) -> tuple[Book, ...]:
    """The books of the corpus in corpus order: the documents sharing a book id make one book, titled by its
    metadata file (`titles`) or from its first document (版权页 书名, PDF title, first `#` heading or file
    name), with the 目录 and 版权页 of its files."""
    grouped: dict[str, list[Document]] = {}
    for d in docs:
        grouped.setdefault(d.book, []).append(d)
    books = []
    for book_id, parts in grouped.items():
        toc = tuple(t for d in parts for t in d.toc)
        info = next((d.info for d in parts if d.info is not None), None)
        title = (titles or {}).get(book_id) or parts[0].title
        books.append(Book(book_id, title, tuple(d.source for d in parts), toc, info))
    return tuple(books)


def book_lexicon(documents: Sequence[Document], corpus_roots: Sequence[Path]) -> list[str]:
    """Quoted terms, short headings and 目录 titles of the books, plus each corpus folder's lexicon.txt."""
    headings = [d.text[b.start:b.end] for d in documents for b in d.blocks if b.is_heading]
    headings += [t.title for d in documents for t in d.toc]
    hand = [w for root in corpus_roots if (root / HAND_LEXICON).is_file()
            for w in read_word_list(root / HAND_LEXICON)]
    return build_lexicon((d.text for d in documents), headings, hand)


def embed_texts(texts: Sequence[str], embedder, cache: Path | None, progress: bool = False,
                fresh: set[str] | None = None) -> tuple[np.ndarray, int]:
    """Passage vectors, reusing cached rows keyed by model fingerprint (the folder) + text hash
    (rag.store.embedding_cache); each distinct text is encoded once. Returns the vectors and how many texts
    were encoded now (added to `fresh`)."""
    keys = [hashlib.sha256(t.encode("utf-8")).hexdigest() for t in texts]
    with EmbeddingCache(cache, embedder.dim) as store:
        found = store.get(keys)
        todo = sorted({k: t for k, t in zip(keys, texts) if k not in found}.items())
        if todo:
            encoded = embedder.encode_passages([t for _, t in todo], progress=progress)
            new = [(key, row) for (key, _), row in zip(todo, encoded)]
            found.update(new)
            store.put(new)
            if fresh is not None:
                fresh.update(t for _, t in todo)
    vectors = np.stack([found[k] for k in keys]) if keys else np.zeros((0, embedder.dim))
    return np.ascontiguousarray(vectors, dtype=np.float32), len(todo)


# --- the manifest -----------------------------------------------------------------------------------------

def base_manifest(settings: Settings, embedder, index: ix.Index, docs: Sequence[Document],
                  skipped: Sequence[str]) -> mf.Manifest:
    files = mf.corpus_files(settings.corpus)
    kinds: dict[str, int] = {}
    for c in index.chunks:
        kinds[c.kind] = kinds.get(c.kind, 0) + 1
    return {
        "format": mf.FORMAT,
        "model": mf.expected_model(embedder),
        "chunk": asdict(settings.chunk),
        "passage_recipe": mf.PASSAGE_RECIPE,
        "vector_index": index.vectors.describe(),
        "corpus": {"files": files, "checksum": mf.corpus_checksum(files),
                   "documents": {d.source: d.checksum for d in docs}, "skipped": list(skipped)},
        "books": [{"id": b.id, "title": b.title, "files": list(b.files), **book_counts(index, b, docs)}
                  for b in index.books],
        "lexicon": {"file": ix.LEXICON, "words": len(index.lexicon)},
        "counts": {"documents": len(docs), "chunks": len(index.chunks), "sentences": len(index.units),
                   "kinds": dict(sorted(kinds.items())), "toc_entries": sum(len(b.toc) for b in index.books)},
        "code": mf.code_checksum(),
        "libraries": mf.library_versions(),
        "built_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }


def book_counts(index: ix.Index, book: Book, docs: Sequence[Document]) -> dict[str, int]:
    """A book's chunks, printed pages (as `rag books` counts them), 「第…条」 articles, 目录 entries and
    sentence vectors."""
    runs = index.book_rows.get(book.id, ())
    chunks = [index.chunks[r] for a, b in runs for r in range(a, b)]
    pages = {c.page for c in chunks if c.page and (c.page.isdigit() or not c.page.lower().strip("ivxlcdm"))}
    articles = {m.group(1) for d in docs if d.book == book.id for m in ARTICLE_RE.finditer(d.text)}
    units = index.units[:, 0]
    sentences = sum(int(np.searchsorted(units, b) - np.searchsorted(units, a)) for a, b in runs)
    return {"chunks": len(chunks), "pages": len(pages), "articles": len(articles), "toc": len(book.toc),
            "sentences": sentences}


# --- writing and swapping ---------------------------------------------------------------------------------

def write_index(target: Path, index: ix.Index, manifest: mf.Manifest) -> None:
    """Write every file into a fresh sibling folder, then swap it in; on any failure the old index stays."""
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_abandoned(target)
    tmp = target.with_name(f"{target.name}.building-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir()
        index.save(tmp)
        manifest = {**manifest, "files": file_table(tmp)}
        manifest["lexicon"]["sha256"] = manifest["files"][ix.LEXICON]["sha256"]
        text = json.dumps(manifest, ensure_ascii=False, indent=2) + "\n"
        (tmp / mf.MANIFEST).write_text(text, encoding="utf-8")
        swap_dir(tmp, target)
    except (OSError, RuntimeError) as exc:  # a full disk, a read-only folder (FAISS reports RuntimeError)
        kept = f"原有索引 {target} 未改动，仍可使用" if target.exists() else f"{target} 尚无索引"
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)[-160:]
        raise BuildError(f"无法写入新索引 {tmp}：{reason}。{kept}。"
                         f"请检查磁盘空间和写入权限后重新构建。") from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # after a swap it holds the previous index (or nothing)
