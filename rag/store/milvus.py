"""The Milvus backend of VectorStore and LexicalStore (`RAG_VECTOR_BACKEND=milvus`, `RAG_MILVUS_URI`).

The index folder stays the source of truth (chunk table, books, units, lexicon, manifest); `publish` copies
its sentence vectors and chunk terms into Milvus, and a server whose settings say "milvus" opens that folder
with the stores in Milvus instead of vectors.faiss and bm25/ (rag.store.index._open hands over to `open_index`).

One build = one pair of collections, `<alias>_<build id>_s` (one row per sentence vector: its row, its chunk
row, the vector) and `<alias>_<build id>_c` (one row per chunk: the BM25 terms and their sparse vector). The
build id is taken from the manifest's file checksums, so the same index always maps to the same pair. The
alias `<alias>` is switched to the new `_c` collection only once both are complete and loaded: a reader
resolves it once at load and keeps that build's pair (the previous pair is kept for readers still on it, the
ones before are dropped), so a rebuild is atomic for readers.

Dense search is a plain top-n search over the sentence vectors, as the FAISS store's: Index takes each chunk's
best sentence among them. BM25 runs over the pre-tokenised terms: each term (jieba + the book lexicon + bigrams,
rag.store.lexical.terms) is stored as its id in the build's sorted vocabulary ("t123"), so whichever analyzer
the server has (milvus-lite offers only "standard" and "jieba"; a cluster also "whitespace") sees exactly the
local tokens, one for one. Milvus scores BM25 as idf·tf·(k1+1)/(tf+k1·(…)); dividing by k1+1 gives bm25s's
"lucene" score. The query's term coverage comes from the vocabulary and document frequencies in bm25/ of the
folder (its two small files only). One book's candidates (a library) come from the same collections with a
filter on the row ranges of that book: the same dense candidates as FAISS, but BM25 statistics of the whole
collection, not of the book (bm25s keeps each book's; rag/store/lexical.py).
"""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from rag.config import Settings
from rag.errors import IndexCorruptError, IndexMismatchError
from rag.store import index as ix
from rag.store import manifest as mf
from rag.store.lexical import K1, TokenizerLike, read_word_list, terms
from rag.store.vectors import kind_for
from rag.text.tokenizer import Tokenizer

MAX_LIMIT = 16_384  # Milvus's largest top-k
INSERT_ROWS = 2_000
HNSW_PARAMS = {"M": 32, "efConstruction": 80}  # as rag/store/vectors.py
EF_SEARCH = 128
BUILD_PROPERTY = "rag.build"


# pymilvus pings the server every 10 s even with no call in flight; milvus-lite (and any gRPC server with the
# default ping policy) answers repeated idle pings with GOAWAY "too_many_pings" and the channel is dead for
# the next call (seen: a publish after a 30 s build). Pings only while a call is running.
GRPC_OPTIONS = {"grpc.keepalive_permit_without_calls": False}


def client(uri: str):
    from pymilvus import MilvusClient

    return MilvusClient(uri=uri, grpc_options=GRPC_OPTIONS)


def build_id(manifest: mf.Manifest) -> str:
    return hashlib.sha256(json.dumps(manifest["files"], sort_keys=True).encode()).hexdigest()[:16]


def collection_names(alias: str, build: str) -> tuple[str, str]:
    """(sentences, chunks) collections of one build."""
    return f"{alias}_{build}_s", f"{alias}_{build}_c"


def token(term_id: int) -> str:
    return f"t{term_id}"


# --- the stores ---------------------------------------------------------------------------------------------

def _ids_and_distances(found) -> tuple[np.ndarray, np.ndarray]:
    """One query's hits as arrays, read from the result's id and distance columns: iterating the hits builds
    a dict per hit (at 1000 hits ≈ 40 ms of the client's time per query here)."""
    return np.asarray(found.ids, np.int64), np.asarray(found.distances, np.float32)


class MilvusVectors:
    """VectorStore over a sentence collection: read-only (filled by `publish`)."""

    def __init__(self, milvus, name: str, dim: int, count: int, uri: str) -> None:
        self._milvus, self.name, self.dim, self._count, self._uri = milvus, name, dim, count, uri

    def __len__(self) -> int:
        return self._count

    def add(self, vectors: np.ndarray) -> None:
        raise TypeError("MilvusVectors 只读：请用 rag.store.milvus.publish 写入。")

    def search(self, query: np.ndarray, n: int,
               within: tuple[int, int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The best min(n, 16384) sentence rows and their scores, best first (ties by row), as the FAISS store
        gives them (Index turns them into chunks); `within` (start, end) keeps sentence rows start <= row < end
        (one book's). A plain top-n search: milvus-lite's grouping search on the chunk row took 3× as long
        (228 against 77 ms at n = 1000 on the CMRC trial set's 3,633 sentences) and scored other chunks."""
        start, end = within if within is not None else (0, self._count)
        n = min(n, end - start, self._count, MAX_LIMIT)
        if n <= 0:
            return np.zeros(0, np.float32), np.zeros(0, np.int64)
        where = {} if within is None else {"filter": f"id >= {int(start)} and id < {int(end)}"}
        params = {"metric_type": "IP", "params": {"ef": max(EF_SEARCH, n)}}
        found = self._milvus.search(self.name, [np.asarray(query, np.float32).tolist()], limit=n, **where,
                                    anns_field="vector", search_params=params)[0]
        rows, sims = _ids_and_distances(found)
        order = np.lexsort((rows, -sims))  # best first, ties by row
        return sims[order], rows[order]

    def vectors(self, rows: Sequence[int]) -> np.ndarray:
        rows = [int(r) for r in rows]
        if not rows:
            return np.zeros((0, self.dim), np.float32)
        got = {}
        for lo in range(0, len(rows), MAX_LIMIT):
            for r in self._milvus.query(self.name, ids=rows[lo:lo + MAX_LIMIT], output_fields=["vector"]):
                got[int(r["id"])] = np.asarray(r["vector"], np.float32)
        return np.stack([got[r] for r in rows])

    def save(self, folder: Path) -> list[Path]:
        return []  # the vectors live in Milvus

    def describe(self) -> dict[str, Any]:
        return {"type": "milvus", "collection": self.name, "uri": self._uri}


class MilvusLexical:
    """LexicalStore over a chunk collection: BM25 on the server, coverage from the folder's vocabulary."""

    def __init__(self, milvus, name: str, vocab: dict[str, int], df: np.ndarray, size: int,
                 tokenizer: TokenizerLike) -> None:
        self._milvus, self.name, self._vocab, self._df = milvus, name, vocab, df
        self.size, self._tokenizer = size, tokenizer

    @classmethod
    def open(cls, milvus, name: str, bm25_dir: Path, size: int, tokenizer: TokenizerLike) -> MilvusLexical:
        vocab = json.loads((bm25_dir / "vocab.index.json").read_text(encoding="utf-8"))
        df = np.diff(np.load(bm25_dir / "indptr.csc.index.npy", allow_pickle=False))
        return cls(milvus, name, {k: int(v) for k, v in vocab.items()}, df, size, tokenizer)

    def coverage(self, words: Sequence[str]) -> float:
        """As rag.store.lexical.Lexical.query: the IDF-weighted share of the query's terms in the corpus."""
        known = [t for t in words if t in self._vocab]
        if not known:
            return 0.0
        idf = {t: np.log1p(self.size / max(0.5, self._df[self._vocab[t]] if t in self._vocab else 0.0))
               for t in words}
        return float(sum(idf[t] for t in known) / sum(idf[t] for t in words))

    def search(self, query: str, n: int, runs: Sequence[tuple[int, int]] | None = None
               ) -> tuple[np.ndarray, np.ndarray, float]:
        """The best n chunk rows by the server's BM25 (of rows within `runs`, when given), and coverage."""
        words = terms(self._tokenizer, query)
        known = [token(self._vocab[t]) for t in words if t in self._vocab]
        n = min(n, self.size if runs is None else sum(b - a for a, b in runs), MAX_LIMIT)
        if not known or n <= 0:
            return np.zeros(0, np.int64), np.zeros(0, np.float32), self.coverage(words)
        where = {} if runs is None else {"filter": " or ".join(f"(id >= {a} and id < {b})" for a, b in runs)}
        found = self._milvus.search(self.name, [" ".join(known)], anns_field="sparse", limit=n, **where,
                                    search_params={"metric_type": "BM25"})[0]
        # milvus-lite reports BM25 as a negative distance, a cluster as a positive score
        rows, distances = _ids_and_distances(found)
        scores = (np.abs(distances.astype(np.float64)) / (K1 + 1)).astype(np.float32)
        keep = scores > 0
        order = np.lexsort((rows[keep], -scores[keep]))  # best first, ties by row (as top_rows)
        return rows[keep][order], scores[keep][order], self.coverage(words)

    def search_parts(self, query: str, n: int, parts: Sequence[Sequence[tuple[int, int]]]
                     ) -> list[tuple[np.ndarray, np.ndarray, float]]:
        """`search` within each part (a book's rows); scores and coverage are the collection's (see above)."""
        if len(parts) == 1 and list(parts[0]) == [(0, self.size)]:
            return [self.search(query, n)]
        return [self.search(query, n, runs) for runs in parts]

    def save(self, folder: Path) -> list[Path]:
        return []


# --- publishing an index folder -----------------------------------------------------------------------------

def _create(milvus, sentences: str, chunks: str, dim: int, count: int) -> None:
    """The two collections of a build; exact (FLAT) search below HNSW_FROM vectors, HNSW from there, as the
    FAISS store chooses (rag/store/vectors.py)."""
    from pymilvus import DataType, Function, FunctionType

    schema = milvus.create_schema(auto_id=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("chunk", DataType.INT64)
    schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dim)
    params = milvus.prepare_index_params()
    if kind_for(count) == "hnsw":
        params.add_index("vector", index_type="HNSW", metric_type="IP", params=HNSW_PARAMS)
    else:
        params.add_index("vector", index_type="FLAT", metric_type="IP")
    milvus.create_collection(sentences, schema=schema, index_params=params)
    schema = milvus.create_schema(auto_id=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    # the terms as vocabulary ids: any analyzer keeps "t123" whole and as it is
    schema.add_field("terms", DataType.VARCHAR, max_length=65_535, enable_analyzer=True,
                     analyzer_params={"tokenizer": "standard"})
    schema.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
    schema.add_function(Function(name="bm25", function_type=FunctionType.BM25, input_field_names=["terms"],
                                 output_field_names=["sparse"]))
    params = milvus.prepare_index_params()
    params.add_index("sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="BM25")
    milvus.create_collection(chunks, schema=schema, index_params=params)


def _complete(milvus, name: str, rows: int) -> bool:
    return milvus.has_collection(name) and int(milvus.get_collection_stats(name)["row_count"]) == rows


def publish(settings: Settings) -> dict[str, Any]:
    """Copy the index folder of `settings` into Milvus (skipped when that build is there already) and
    point the alias at it. Returns {"alias", "sentences", "chunks", "rows", "previous"}."""
    folder = settings.index_dir
    manifest = mf.read(folder, settings)
    mf.verify_files(manifest, folder, settings)
    alias = settings.scale.milvus_collection
    sentences, chunks_name = collection_names(alias, build_id(manifest))
    milvus = client(settings.scale.milvus_uri)
    units = np.load(folder / ix.UNITS, allow_pickle=False)
    chunks = [ix.chunk_from_dict(d) for d in json.loads((folder / ix.CHUNKS).read_text(encoding="utf-8"))]
    if not (_complete(milvus, sentences, len(units)) and _complete(milvus, chunks_name, len(chunks))):
        for name in (sentences, chunks_name):
            if milvus.has_collection(name):
                milvus.drop_collection(name)
        vectors = _folder_vectors(folder)
        _create(milvus, sentences, chunks_name, vectors.shape[1], len(vectors))
        _insert_sentences(milvus, sentences, units, vectors)
        _insert_terms(milvus, chunks_name, folder, chunks)
        for name in (sentences, chunks_name):
            milvus.flush(name)
            milvus.load_collection(name)
    previous = _switch_alias(milvus, alias, chunks_name)
    _drop_old(milvus, alias, keep={sentences, chunks_name, *_pair(previous)})
    return {"alias": alias, "sentences": sentences, "chunks": chunks_name, "rows": len(units),
            "previous": previous}


def _pair(chunks_name: str | None) -> tuple[str, ...]:
    return (chunks_name[:-2] + "_s", chunks_name) if chunks_name else ()


def _folder_vectors(folder: Path) -> np.ndarray:
    import faiss

    index = faiss.read_index(str(folder / "vectors.faiss"))
    return index.reconstruct_n(0, index.ntotal)


def _insert_sentences(milvus, name: str, units: np.ndarray, vectors: np.ndarray) -> None:
    for lo in range(0, len(units), INSERT_ROWS):
        rows = [{"id": i, "chunk": int(units[i, 0]), "vector": vectors[i].tolist()}
                for i in range(lo, min(len(units), lo + INSERT_ROWS))]
        milvus.insert(name, rows)


def chunk_terms(folder: Path, chunks: Sequence) -> list[list[str]]:
    """The BM25 terms of every chunk: from the Ray build's Parquet shard when there is one, else computed
    with the folder's lexicon exactly as the build did."""
    shards = sorted((folder / "shards").glob("terms-*.parquet"))
    if shards:
        import pyarrow.parquet as pq

        return [t for s in shards for t in pq.read_table(s, columns=["terms"]).column("terms").to_pylist()]
    tokenizer = Tokenizer(read_word_list(folder / ix.LEXICON))
    return [terms(tokenizer, ix.passage_text(c)) for c in chunks]


def _insert_terms(milvus, name: str, folder: Path, chunks: Sequence) -> None:
    vocab = json.loads((folder / ix.BM25_DIR / "vocab.index.json").read_text(encoding="utf-8"))
    docs = chunk_terms(folder, chunks)
    for lo in range(0, len(docs), INSERT_ROWS):
        milvus.insert(name, [{"id": i, "terms": " ".join(token(vocab[t]) for t in docs[i])}
                             for i in range(lo, min(len(docs), lo + INSERT_ROWS))])


def _switch_alias(milvus, alias: str, target: str) -> str | None:
    """Point `alias` at `target`; returns what it pointed at before (None: it is new)."""
    if alias not in milvus.list_aliases().get("aliases", []):
        milvus.create_alias(target, alias)
        return None
    before = milvus.describe_alias(alias)["collection_name"]
    if before != target:
        milvus.alter_alias(target, alias)
    return before if before != target else None


def _drop_old(milvus, alias: str, keep: set[str]) -> None:
    for name in milvus.list_collections():
        if name.startswith(f"{alias}_") and name.endswith(("_s", "_c")) and name not in keep:
            milvus.drop_collection(name)


# --- opening an index folder with its stores in Milvus -----------------------------------------------------

_clients: dict[str, Any] = {}
_clients_lock = threading.Lock()


def shared_client(uri: str):
    """One client per server and process (its gRPC channel is thread-safe)."""
    with _clients_lock:
        if uri not in _clients:
            _clients[uri] = client(uri)
        return _clients[uri]


def open_index(folder: Path, manifest: mf.Manifest, settings: Settings) -> ix.Index:
    """The Index of `folder`, searching the Milvus collections of this build (see the module docstring)."""
    fix = f"请发布索引：RAG_VECTOR_BACKEND=milvus {mf.rebuild_command(settings)}"
    try:
        chunks = tuple(ix.chunk_from_dict(d) for d in json.loads((folder / ix.CHUNKS).read_text(encoding="utf-8")))
        books = ix.books_from_dict(json.loads((folder / ix.BOOKS).read_text(encoding="utf-8")))
        units = np.load(folder / ix.UNITS, allow_pickle=False)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise IndexCorruptError(f"索引 {folder} 的文件无法读取（{type(exc).__name__}: {str(exc)[:120]}）。") from exc
    alias = settings.scale.milvus_collection
    sentences, chunks_name = collection_names(alias, build_id(manifest))
    milvus = shared_client(settings.scale.milvus_uri)
    try:
        live = milvus.describe_alias(alias)["collection_name"]
    except Exception:  # noqa: BLE001 — pymilvus raises its own exception types for a missing alias
        live = None
    if live != chunks_name and not (_complete(milvus, sentences, len(units))
                                    and _complete(milvus, chunks_name, len(chunks))):
        raise IndexMismatchError(f"Milvus {settings.scale.milvus_uri} 的别名 {alias} 指向 {live or '（不存在）'}，"
                                 f"不是索引 {folder} 的集合 {chunks_name}。{fix}")
    words = read_word_list(folder / ix.LEXICON)
    tokenizer = Tokenizer(words)
    dim = int(manifest.get("model", {}).get("dim", 0))
    vectors = MilvusVectors(milvus, sentences, dim, len(units), settings.scale.milvus_uri)
    lexical = MilvusLexical.open(milvus, chunks_name, folder / ix.BM25_DIR, len(chunks), tokenizer)
    return ix.Index(chunks, vectors, units, lexical, tokenizer, words, books, manifest, folder,
                    ix.read_passages(folder))
