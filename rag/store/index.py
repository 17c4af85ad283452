"""The index: a self-describing folder with a vector store, a lexical store, the chunk table, the books, a manifest.

Layout of `embeddings/index/` (every file is listed in manifest.json with its size and sha256):
    manifest.json   model (name, weights fingerprint, dim, prompts), chunk settings, corpus checksums …
                    (rag/store/manifest.py)
    vectors.faiss   the vector store (rag/store/vectors.py: FAISS flat, HNSW for very large corpora) of the
                    sentence vectors; row j is row j of units.npy
    units.npy       int32 (chunk row, start, end): which chunk each vector's sentence belongs to, and where
    chunks.json     the chunk table (text, section path, pages, offsets, book id)
    book.json       the books: id, title, files, 目录 rows and 版权页 fields of each
    lexicon.txt     the jieba user dictionary the BM25 index was built with (loaded again at query time)
    passages.npy    float32 passage vectors of the other texts the answer stage scores — the 目录 titles and
    passages.json   the answer's sentences (rag.chunk.sentence_spans) that are not a sentence unit — and
                    their texts, so a question encodes only itself (rag/build.py answer_passages)
    bm25/           the lexical store (rag/store/lexical.py: bm25s over section path + chunk text; with two
                    or more books also book_scores.npy, the same matrix scored with each book's statistics)

Dense retrieval scores a chunk by its best-matching sentence. Measured (bench/RESULTS.md): with the 4-bit
e5-small model a whole-chunk vector blurs a 300-character passage into its general topic (book questions: R@5
0.685), while the best sentence finds the passage that says it (R@5 0.945; CMRC R@1 0.954 → 0.972).
Retrieval asks each store for its best candidates only (`dense`, `lexical`), never for a score of every chunk;
in a library, for each book's own (`dense_books`, `lexical_books`: the candidates, BM25 statistics and term
coverage an index of that book alone would give), so that other books never change a book's ranking.

Loading checks the manifest against the configured model and settings and every file against its checksum; it
never rebuilds (rag/build.py builds).
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from rag.config import Settings
from rag.errors import IndexCorruptError, IndexError_
from rag.store import manifest as mf
from rag.store.lexical import Lexical, LexicalStore, read_word_list, write_lexicon
from rag.store.vectors import VectorStore, load_vector_store
from rag.text.sentences import split_sentences
from rag.text.tokenizer import Tokenizer
from rag.types import Book, BookInfo, Chunk, TocEntry

LOAD_ATTEMPTS = 3  # reads of a folder that a rebuild keeps swapping, before giving up
MIN_UNIT_CHARS = 8  # "具体来说：" alone would match every vague question
UNITS, CHUNKS, BOOKS, LEXICON, BM25_DIR = ("units.npy", "chunks.json", "book.json", "lexicon.txt", "bm25")
PASSAGES, PASSAGE_TEXTS = "passages.npy", "passages.json"


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


class Index:
    """A loaded (or freshly built) index, read-only and safe to share between threads."""

    def __init__(self, chunks: tuple[Chunk, ...], vectors: VectorStore, units: np.ndarray,
                 lexical: LexicalStore, tokenizer: Tokenizer, lexicon: Sequence[str] = (),
                 books: Sequence[Book] = (), manifest: mf.Manifest | None = None,
                 folder: Path | None = None, passages: dict[str, np.ndarray] | None = None) -> None:
        self.chunks = chunks
        self.passages = passages or {}  # text → passage vector of the answer stage's other texts
        self.units = units  # int32 rows (chunk row, start, end), one per vector
        self.lexicon = tuple(lexicon)  # the words the tokenizer was given (saved as lexicon.txt)
        self.books = tuple(books)
        self.manifest: mf.Manifest = manifest or {}
        self.folder = folder
        self.tokenizer = tokenizer  # the jieba tokenizer with the book lexicon (also used for highlighting)
        self.vectors = vectors
        self.lexical_store = lexical
        self._row = {c.id: i for i, c in enumerate(chunks)}
        # Each book's chunk rows and sentence-vector rows as (start, end) ranges (one range unless a book's
        # files lie in two corpus folders), books in corpus order.
        self.book_rows = runs_of([c.book for c in chunks])
        self._book_units = {b: tuple(_unit_range(self.units, a, z) for a, z in runs)
                            for b, runs in self.book_rows.items()}
        self._book_size = {b: sum(hi - lo for lo, hi in runs) for b, runs in self._book_units.items()}
        self._exact = vectors.describe().get("type") == "flat"
        self._book_number = {b: i for i, b in enumerate(self.book_rows)}
        self._book_label = np.asarray([self._book_number[c.book] for c in chunks], dtype=np.int64)

    def __len__(self) -> int:
        return len(self.chunks)

    def chunk(self, chunk_id: str) -> Chunk:
        return self.chunks[self._row[chunk_id]]

    def book(self, book_id: str) -> Book | None:
        return next((b for b in self.books if b.id == book_id), None)

    def dense(self, qvec: np.ndarray, depth: int) -> dict[int, float]:
        """Chunk row → cosine of the query with its best sentence, over the `depth` best sentence vectors
        (a book has a few hundred: then every chunk gets its score)."""
        rows, sims = self._best_sentence(*self.vectors.search(qvec, depth))
        return dict(zip(rows.tolist(), sims))

    def dense_books(self, qvec: np.ndarray, depth: int, books: Sequence[str]) -> dict[str, dict[int, float]]:
        """`dense` for each of these books on its own: over that book's `depth` best sentence vectors, the
        candidates an index of that book alone would give, whatever else is loaded. When those are all
        of every book's sentences and the store is exact (it scores every row anyway), one search gives
        them; otherwise each book is searched within its own rows."""
        if len(self.book_rows) == 1 or len(self.vectors) <= depth:
            return self._by_book(*self._best_sentence(*self.vectors.search(qvec, depth)), books)
        if self._exact and set(books) == set(self.book_rows) and max(self._book_size.values()) <= depth:
            return self._by_book(*self._best_sentence(*self.vectors.search(qvec, len(self.vectors))), books)
        out = {}
        for b in books:
            found = [p for run in self._book_units.get(b, ())
                     for p in zip(*self.vectors.search(qvec, depth, run))]
            best = sorted(found, key=lambda p: (-p[0], p[1]))[:depth]  # of its ranges' results
            rows, sims = self._best_sentence(np.asarray([s for s, _ in best], np.float32),
                                             np.asarray([r for _, r in best], np.int64))
            out[b] = dict(zip(rows.tolist(), sims))
        return out

    def _by_book(self, rows: np.ndarray, sims: np.ndarray,
                 books: Sequence[str]) -> dict[str, dict[int, float]]:
        label = self._book_label[rows]
        order = np.argsort(label, kind="stable")  # grouped by book, each best first, as found
        bounds = np.searchsorted(label[order], np.arange(len(self.book_rows) + 1))
        out = {}
        for b in books:
            i = self._book_number.get(b)
            mine = order[bounds[i]:bounds[i + 1]] if i is not None else order[:0]
            out[b] = dict(zip(rows[mine].tolist(), sims[mine]))
        return out

    def _best_sentence(self, sims: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(chunk rows, the score of each one's best sentence), best first, from search results that come
        best first (float32 scores kept)."""
        found = rows >= 0
        chunk_rows, sims = self.units[rows[found], 0], sims[found]
        _, first = np.unique(chunk_rows, return_index=True)  # a chunk's first (best) sentence
        first.sort()
        return chunk_rows[first], sims[first]

    def lexical(self, query: str, n: int) -> tuple[dict[int, float], float]:
        """The best n chunk rows by BM25 (positive scores only), and the query's term coverage."""
        rows, scores, coverage = self.lexical_store.search(query, n)
        return dict(zip(rows.tolist(), scores)), coverage

    def lexical_books(self, query: str, n: int,
                      books: Sequence[str]) -> dict[str, tuple[dict[int, float], float]]:
        """`lexical` for each of these books on its own: its best n rows by BM25 with that book's own
        statistics (IDF, mean length, coverage) where the lexical store keeps them."""
        found = self.lexical_store.search_parts(query, n, [self.book_rows.get(b, ()) for b in books])
        return {b: (dict(zip(rows.tolist(), scores)), coverage)
                for b, (rows, scores, coverage) in zip(books, found)}

    def sentence_vectors(self, chunk_id: str) -> tuple[list[tuple[int, int]], np.ndarray]:
        """The embedded sentences of a chunk: (start, end) offsets in its text and their passage vectors
        (L2-normalised rows), so later stages can score sentences without encoding them again."""
        row = self._row[chunk_id]
        lo, hi = np.searchsorted(self.units[:, 0], [row, row + 1])  # units are stored in chunk order
        spans = [(int(a), int(b)) for _, a, b in self.units[lo:hi]]
        return spans, self.vectors.vectors(range(int(lo), int(hi)))

    def neighbours(self, chunk_id: str) -> tuple[Chunk, ...]:
        """The chunks just before and after this one in the same document (either may be missing)."""
        row = self._row[chunk_id]
        me = self.chunks[row]
        around = (self.chunks[r] for r in (row - 1, row + 1) if 0 <= r < len(self.chunks))
        return tuple(c for c in around if c.source == me.source and abs(c.ordinal - me.ordinal) == 1)

    def save(self, folder: Path) -> None:
        """Write the data files (not the manifest) into an existing folder; same index → same bytes."""
        self.vectors.save(folder)
        np.save(folder / UNITS, np.asarray(self.units, dtype=np.int32), allow_pickle=False)
        _write_rows(folder / CHUNKS, [chunk_to_dict(c) for c in self.chunks])
        (folder / BOOKS).write_text(json.dumps(books_to_dict(self.books), ensure_ascii=False) + "\n",
                                    encoding="utf-8")
        write_lexicon(self.lexicon, folder / LEXICON)
        self.lexical_store.save(folder / BM25_DIR)
        write_passages(folder, self.passages)

    @classmethod
    def load(cls, folder: Path, settings: Settings, embedder, opener=None) -> Index:
        """Open an index folder after checking it was built for this model and these settings.

        A rebuild may swap a new folder in while this one is being read: the files would then come from two
        builds (and fail their checksums). When manifest.json changed during the load, it is read again from
        the start, so a load never mixes builds nor calls a healthy index damaged. `opener(folder, manifest,
        settings)` reads the checked folder (default: its FAISS and bm25s files; rag.store.milvus serves the
        same folder's stores from Milvus)."""
        for attempt in range(1, LOAD_ATTEMPTS + 1):
            before = mf.manifest_stamp(folder)
            try:
                manifest = mf.read(folder, settings)
                mf.check_manifest(manifest, folder, settings, embedder)
                mf.verify_files(manifest, folder, settings)
                index = (opener or _open)(folder, manifest, settings)
            except IndexError_:
                if mf.manifest_stamp(folder) == before or attempt == LOAD_ATTEMPTS:
                    raise
                continue
            if mf.manifest_stamp(folder) == before:
                return index
        raise IndexCorruptError(f"索引 {folder} 在读取期间连续被重建 {LOAD_ATTEMPTS} 次，请等构建结束后重试。")


def _open(folder: Path, manifest: mf.Manifest, settings: Settings) -> Index:
    fix = f"请重建索引：{mf.rebuild_command(settings)}"
    try:
        chunks = tuple(chunk_from_dict(d) for d in json.loads((folder / CHUNKS).read_text(encoding="utf-8")))
        books = books_from_dict(json.loads((folder / BOOKS).read_text(encoding="utf-8")))
        vectors = load_vector_store(folder, manifest.get("vector_index", {}))
        units = np.load(folder / UNITS, allow_pickle=False)
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as exc:
        raise IndexCorruptError(f"索引 {folder} 的文件无法读取（{type(exc).__name__}: {str(exc)[:120]}）。{fix}") from exc
    if len(vectors) != len(units) or (len(units) and int(units[:, 0].max()) >= len(chunks)):
        raise IndexCorruptError(f"索引 {folder} 的向量（{len(vectors)} 个）与 {UNITS}（{len(units)} 行）"
                                f"或 {CHUNKS}（{len(chunks)} 段）不一致。{fix}")
    words = read_word_list(folder / LEXICON)
    tokenizer = Tokenizer(words)
    lexical = Lexical.load(folder / BM25_DIR, tokenizer)
    return Index(chunks, vectors, units, lexical, tokenizer, words, books, manifest, folder, read_passages(folder))


def write_passages(folder: Path, passages: dict[str, np.ndarray]) -> None:
    texts = sorted(passages)
    rows = np.stack([passages[t] for t in texts]) if texts else np.zeros((0, 0))
    np.save(folder / PASSAGES, np.asarray(rows, dtype=np.float32), allow_pickle=False)
    (folder / PASSAGE_TEXTS).write_text(json.dumps(texts, ensure_ascii=False) + "\n", encoding="utf-8")


def read_passages(folder: Path) -> dict[str, np.ndarray]:
    """The stored passage vectors; none for an index built before they were stored (the answer stage then
    encodes those texts on first use). Raises IndexCorruptError when the two files disagree."""
    if not (folder / PASSAGE_TEXTS).is_file():
        return {}
    try:
        texts = json.loads((folder / PASSAGE_TEXTS).read_text(encoding="utf-8"))
        rows = np.load(folder / PASSAGES, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise IndexCorruptError(f"索引 {folder} 的 {PASSAGES} 无法读取（{type(exc).__name__}）。") from exc
    if not isinstance(texts, list) or len(texts) != len(rows):
        raise IndexCorruptError(f"索引 {folder} 的 {PASSAGE_TEXTS} 与 {PASSAGES} 不一致。请重建索引。")
    return {str(t): row for t, row in zip(texts, rows)}


def runs_of(labels: Sequence[str]) -> dict[str, tuple[tuple[int, int], ...]]:
    """Each label's rows as (start, end) ranges of consecutive rows, labels in order of first appearance."""
    runs: dict[str, list[tuple[int, int]]] = {}
    start = 0
    for row in range(1, len(labels) + 1):
        if row == len(labels) or labels[row] != labels[start]:
            runs.setdefault(labels[start], []).append((start, row))
            start = row
    return {label: tuple(r) for label, r in runs.items()}


def _unit_range(units: np.ndarray, start: int, end: int) -> tuple[int, int]:
    """The vector rows of chunk rows start..end-1 (units are stored in chunk order)."""
    lo, hi = np.searchsorted(units[:, 0], [start, end]) if len(units) else (0, 0)
    return int(lo), int(hi)


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


def books_to_dict(books: Sequence[Book]) -> dict[str, Any]:
    return {"books": [{**asdict(b), "files": list(b.files)} for b in books]}


def books_from_dict(d: dict[str, Any]) -> tuple[Book, ...]:
    out = []
    for b in d.get("books", []):
        toc = tuple(TocEntry(**t) for t in b.get("toc", []))
        info = BookInfo(**b["info"]) if b.get("info") else None
        out.append(Book(b["id"], b["title"], tuple(b.get("files", ())), toc, info))
    return tuple(out)
