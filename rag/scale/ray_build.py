"""The Ray build engine (`rag build --engine ray`): the local build's stages spread over a Ray cluster.

One BuildWorker actor per CPU of the cluster (one Ray CPU, one ONNX session with one thread each) does the
spread-out work, each call on whichever worker is free (ray.util.ActorPool): books read and chunked (one call
per corpus file), the BM25 terms (jieba + the book lexicon, rag.store.lexical.terms) in parts, and the
sentences encoded in batches. The driver keeps what is cheap and order-sensitive: the sentence units, the
lexicon, the BM25 matrix and the FAISS store, assembled exactly as rag/build.py does, so the index equals the
local build's (vectors bitwise: the encoder sees one text per run, so a vector depends on its text alone;
chunk ids and terms exactly). The folder is written by the same write_index, plus Parquet shards of
(chunk id, sentence span, vector) and (chunk id, terms), listed in the manifest, for engines that read the
library in parallel.

The embedding cache (embeddings/cache, keyed by model fingerprint and text hash) lives with the driver: a
re-run after one book changed sends only that book's new sentences to the workers.

Measured on this 2-core machine (bench/RESULTS.md, "Scale-out (issue 16)", `python -m bench.scale_out`).
"""

from __future__ import annotations

import os
import time
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from rag import build as local
from rag.config import ROOT, ModelSettings, ScaleSettings, Settings
from rag.errors import BuildError, CorpusError
from rag.ingest.corpus import no_documents, plan_corpus, read_file
from rag.store import index as ix
from rag.store import manifest as mf
from rag.store.lexical import Lexical, terms
from rag.store.vectors import make_vector_store
from rag.text.tokenizer import Tokenizer
from rag.types import Chunk, Document

SHARDS_DIR = "shards"
SHARD_ROWS = 100_000  # rows per Parquet file
ENCODE_BATCH = 16  # sentences per map_batches call: small enough that the actors share the work evenly
OBJECT_STORE_BYTES = 200 * 2**20  # a local cluster: the data moved is text and 1.5 kB per vector


@dataclass(frozen=True)
class RayBuildReport:
    report: local.BuildReport
    nodes: dict[str, tuple[str, ...]] = field(default_factory=dict)  # stage → node ids that ran it
    actors: int = 0
    # seconds from the first batch the actors began to the last they finished (started actors with their
    # models loaded: the rate that scales with the cluster, without the pool's start), and its rows
    encode_window_s: float = 0.0
    encode_window_rows: int = 0


# --- the Ray session ----------------------------------------------------------------------------------------

@contextmanager
def ray_session(scale: ScaleSettings) -> Iterator[Any]:
    """Ray, connected to `scale.ray_address` or to a cluster started here (stopped again on exit). A driver
    already connected (a test's cluster) is used as it is."""
    import ray

    if ray.is_initialized():
        yield ray
        return
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # before the first Ray call: no usage report
    workers = {"PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p),
               "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    address = scale.ray_address
    loopback = address is None or address.split(":")[0] in ("127.0.0.1", "localhost")
    # Without a node IP Ray finds its own by opening a UDP socket towards a public resolver.
    ip = scale.ray_node_ip or ("127.0.0.1" if loopback else None)
    if ip == "127.0.0.1":
        stay_on_loopback()
    options: dict[str, Any] = {"runtime_env": {"env_vars": workers}, "log_to_driver": False,
                               "_node_ip_address": ip}
    if address is None:
        options |= {"num_cpus": len(os.sched_getaffinity(0)), "include_dashboard": False,
                    "object_store_memory": OBJECT_STORE_BYTES}
    ray.init(address=address, **options)
    try:
        yield ray
    finally:
        ray.shutdown()


def stay_on_loopback() -> None:
    """Make this driver address a cluster on 127.0.0.1 as 127.0.0.1: ray.init(address="127.0.0.1:P")
    otherwise rewrites a loopback address to the machine's network address, found by opening a UDP socket
    towards a public resolver (and then cannot reach a cluster that listens on loopback only). Ray's switch
    for this is the one it uses on macOS/Windows; on Linux it changes nothing else for a driver."""
    from ray._private import ray_constants

    ray_constants.ENABLE_RAY_CLUSTER = False


CLUSTER_ATTEMPTS = 3  # a node whose raylet does not register within Ray's fixed 30 s is started again


@contextmanager
def local_cluster(nodes: int, object_store_bytes: int = 150 * 2**20) -> Iterator[Any]:
    """A cluster of `nodes` one-CPU nodes on this machine (loopback only, no dashboard, no usage report), this
    driver connected to it; stopped on exit. For benchmarks and tests of the Ray engine. A node that fails to
    start (Ray waits a fixed 30 s for its raylet to register; on a loaded 2-core machine that has run out) is
    cleaned up — the processes it started, killed — and the whole cluster started again, up to
    CLUSTER_ATTEMPTS times; the last failure is raised with the tail of Ray's own logs."""
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    import psutil
    import ray
    from ray.cluster_utils import Cluster

    stay_on_loopback()
    node = {"num_cpus": 1, "node_ip_address": "127.0.0.1", "object_store_memory": object_store_bytes}
    workers = {"PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    me = psutil.Process()
    for attempt in range(1, CLUSTER_ATTEMPTS + 1):
        before = {p.pid for p in me.children(recursive=True)}
        c = Cluster()
        try:
            c.add_node(**node, include_dashboard=False)
            for _ in range(nodes - 1):
                c.add_node(**node)
            ray.init(address=c.address, _node_ip_address="127.0.0.1", log_to_driver=False,
                     runtime_env={"env_vars": workers})
            break
        except Exception as exc:
            ray.shutdown()
            c.shutdown()
            for p in me.children(recursive=True):
                if p.pid not in before:
                    with suppress(psutil.NoSuchProcess):  # gone on its own meanwhile
                        p.kill()
            if attempt == CLUSTER_ATTEMPTS:
                raise RuntimeError(f"{exc}\n{_ray_log_tail()}") from exc
    try:
        yield c
    finally:
        ray.shutdown()
        c.shutdown()


def _ray_log_tail(lines: int = 20) -> str:
    logs = Path("/tmp/ray/session_latest/logs")
    parts = []
    for name in ("raylet.out", "raylet.err", "gcs_server.out", "gcs_server.err"):
        f = logs / name
        if f.is_file():
            tail = f.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:]
            parts.append(f"--- {f} ---\n" + "\n".join(tail))
    return "\n".join(parts) or f"(no Ray logs under {logs})"


def _node() -> str:
    import ray

    return ray.get_runtime_context().get_node_id()


# --- the workers: one actor per CPU does every stage ------------------------------------------------------

def _read_and_chunk(path: Path, root: Path, chunking) -> tuple[Document | None, list[Chunk], list[str]]:
    """One book file of the corpus plan → (document, its chunks, skip reasons or notices): what load_corpus
    and chunk_corpus do for that file."""
    from rag.chunk import chunk_document

    try:
        doc, notices = read_file(path, root)
    except CorpusError as exc:
        return None, [], [str(exc)]
    return doc, chunk_document(doc, chunking), notices


def _one_thread_embedder(model: ModelSettings):
    """An embedder whose engine uses one thread (the actor holds one Ray CPU): for the ONNX backends the same
    session rag.model.embed builds, with intra-op threads 1 instead of one per CPU of the machine; vectors do
    not depend on the thread count. torch reads OMP_NUM_THREADS=1, which Ray sets for a one-CPU actor."""
    from rag.model import embed as em
    from rag.model.fingerprint import model_fingerprint, onnx_fingerprint
    from rag.model.onnx import OnnxEncoder, provision_onnx

    backend = em.resolve_backend(model)
    path = em._local_dir(model.name)
    if backend == "torch" or path is None:
        return em.load_embedder(model)
    source = model_fingerprint(path)
    onnx_file, sha256, _ = provision_onnx(path, source, backend)
    encoder = OnnxEncoder(path, onnx_file, threads=1, one_per_run=backend == "onnx-int8")
    return em.Embedder(encoder, model.name, onnx_fingerprint(backend, source, sha256), model.batch_size, backend)


class BuildWorker:
    """The build's actor, one per CPU of the cluster (one Ray CPU each): it reads and chunks book files,
    computes BM25 terms and encodes sentences with its own one-thread model. One process per CPU, started
    and its model loaded once for the whole build: separate tasks for reading and terms, then a Ray Data
    actor pool for encoding, started a worker process per stage (≈ 6 s of a 44 s build, bench/RESULTS.md).
    Refuses a model other than the driver's. Every call also says which node ran it."""

    def __init__(self, model: ModelSettings, fingerprint: str) -> None:
        self.embedder = _one_thread_embedder(model)
        if self.embedder.fingerprint != fingerprint:
            raise BuildError(f"Ray 节点 {_node()} 上的模型 {model.name} 与驱动程序的不同"
                             f"（{self.embedder.fingerprint[:12]} ≠ {fingerprint[:12]}）。请在每台机器上执行 make model。")
        self.node = _node()

    def read(self, path: Path, root: Path, chunking) -> tuple[tuple[Document | None, list[Chunk], list[str]], str]:
        return _read_and_chunk(path, root, chunking), self.node

    def terms(self, words: Sequence[str], texts: Sequence[str]) -> tuple[list[list[str]], str]:
        tokenizer = Tokenizer(words)
        return [terms(tokenizer, t) for t in texts], self.node

    def encode(self, texts: Sequence[str]) -> tuple[np.ndarray, str, float, float]:
        began = time.time()  # wall clock: comparable between the actors of one machine or NTP-synced ones
        vectors = self.embedder.encode_passages(list(texts))
        return vectors, self.node, began, time.time()


class Workers:
    """The pool of BuildWorker actors; `map` runs calls on whichever actor is free, results in input order."""

    def __init__(self, ray, model: ModelSettings, fingerprint: str, actors: int) -> None:
        from ray.util import ActorPool

        worker = ray.remote(num_cpus=1)(BuildWorker).options(scheduling_strategy="SPREAD")
        self.actors = [worker.remote(model, fingerprint) for _ in range(actors)]
        self.pool = ActorPool(self.actors)

    def map(self, method: str, items: Sequence[tuple]) -> list:
        return list(self.imap(method, items))

    def imap(self, method: str, items: Sequence[tuple]) -> Iterator:
        return self.pool.map(lambda actor, args: getattr(actor, method).remote(*args), items)

    def stop(self, ray) -> None:
        for actor in self.actors:
            ray.kill(actor)


def read_corpus(workers: Workers, settings: Settings) -> tuple[list[Document], list[Chunk], list[tuple[str, str]],
                                                               set, dict[str, str]]:
    """The documents (in corpus order, as rag.ingest.corpus.plan_corpus sorts the files), their chunks, the
    skipped files and page notices, the nodes that read them, and the titles from metadata files."""
    plan = plan_corpus(list(settings.corpus))
    results = workers.map("read", [(p, r, settings.chunk) for p, r in plan.files])
    docs, chunks, skipped, nodes = [], [], list(plan.skipped), set()
    for (path, root), ((doc, doc_chunks, notes), node) in zip(plan.files, results):
        nodes.add(node)
        skipped += [(doc.source if doc else path.relative_to(root).as_posix(), n) for n in notes]
        if doc is not None:
            docs.append(doc)
            chunks.extend(doc_chunks)
    if not docs:
        raise no_documents(list(settings.corpus), skipped)
    return docs, chunks, skipped, nodes, plan.titles


def remote_terms(ray, workers: Workers, words: Sequence[str], texts: Sequence[str]) -> tuple[list[list[str]], set]:
    """BM25 terms of every text, in order, computed by the workers in parts (4 per actor, for balance)."""
    words_ref = ray.put(list(words))
    size = -(-len(texts) // max(1, 4 * len(workers.actors))) or 1
    results = workers.map("terms", [(words_ref, texts[lo:lo + size]) for lo in range(0, len(texts), size)])
    return [d for docs, _ in results for d in docs], {node for _, node in results}


class RayEncoder:
    """What embed_texts needs of an embedder (dim, fingerprint, encode_passages), encoding on the workers in
    batches of ENCODE_BATCH sentences, each batch on whichever worker is free."""

    def __init__(self, embedder, workers: Workers, progress: bool = False) -> None:
        self.dim, self.fingerprint = embedder.dim, embedder.fingerprint
        self.workers, self.progress = workers, progress
        self.nodes: set[str] = set()
        self.encoded = 0
        self.window_s, self.window_rows = 0.0, 0  # summed over the calls: see RayBuildReport

    def encode_passages(self, texts: Sequence[str], progress: bool = False) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        from tqdm import tqdm

        batches = [(list(texts[lo:lo + ENCODE_BATCH]),) for lo in range(0, len(texts), ENCODE_BATCH)]
        out = []
        with tqdm(total=len(texts), desc="编码", unit="句", disable=not (self.progress or progress)) as bar:
            for got in self.workers.imap("encode", batches):
                out.append(got)
                bar.update(len(got[0]))
        self.nodes |= {node for _, node, _, _ in out}
        self.encoded += len(texts)
        self.window_s += max(end for *_, end in out) - min(began for _, _, began, _ in out)
        self.window_rows += len(texts)
        return np.concatenate([np.asarray(v, dtype=np.float32) for v, *_ in out])


# --- the index, with its Parquet shards ----------------------------------------------------------------

class ShardedIndex(ix.Index):
    """An Index that also writes Parquet shards of its sentence vectors and chunk terms when saved."""

    def __init__(self, *args: Any, raw_vectors: np.ndarray, terms: Sequence[Sequence[str]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.raw_vectors = raw_vectors
        self.terms = terms

    def save(self, folder: Path) -> None:
        super().save(folder)
        write_shards(folder / SHARDS_DIR, self.chunks, self.units, self.raw_vectors, self.terms)


def write_shards(folder: Path, chunks: Sequence[Chunk], units: np.ndarray, vectors: np.ndarray,
                 docs: Sequence[Sequence[str]]) -> list[str]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder.mkdir(parents=True, exist_ok=True)
    names = []
    ids = [c.id for c in chunks]
    for lo in range(0, max(1, len(units)), SHARD_ROWS):
        part = units[lo:lo + SHARD_ROWS]
        flat = pa.array(np.ascontiguousarray(vectors[lo:lo + SHARD_ROWS]).reshape(-1), pa.float32())
        table = pa.table({"chunk_id": [ids[r] for r in part[:, 0]], "start": pa.array(part[:, 1], pa.int32()),
                          "end": pa.array(part[:, 2], pa.int32()),
                          "vector": pa.FixedSizeListArray.from_arrays(flat, vectors.shape[1])})
        names.append(f"sentences-{lo // SHARD_ROWS:05d}.parquet")
        pq.write_table(table, folder / names[-1])
    for lo in range(0, max(1, len(chunks)), SHARD_ROWS):
        table = pa.table({"chunk_id": ids[lo:lo + SHARD_ROWS],
                          "terms": pa.array([list(d) for d in docs[lo:lo + SHARD_ROWS]], pa.list_(pa.string()))})
        names.append(f"terms-{lo // SHARD_ROWS:05d}.parquet")
        pq.write_table(table, folder / names[-1])
    return [f"{SHARDS_DIR}/{n}" for n in names]


# --- the build --------------------------------------------------------------------------------------------

def build_ray(settings: Settings, *, embedder=None, progress: bool = False, force: bool = False) -> RayBuildReport:
    """rag.build.build on a Ray cluster (settings.scale: address, actors); the same index folder results."""
    timings: dict[str, float] = {}
    lap = local.stopwatch(timings)

    if not force and (current := mf.current(settings, embedder)) is not None:
        lap("check")
        return RayBuildReport(local._unchanged_report(settings.index_dir, current, timings))
    with ray_session(settings.scale) as ray:
        cpus = int(ray.cluster_resources().get("CPU", 1))
        actors = settings.scale.ray_actors or cpus
        if embedder is None:
            embedder = local.load_embedder(settings.model)  # the fingerprint and dim; the actors encode
        workers = Workers(ray, settings.model, embedder.fingerprint, actors)  # they start while we go on
        lap("ray")
        try:
            docs, chunks, skipped_files, read_nodes, titles = read_corpus(workers, settings)
            lap("ingest+chunk")
            words = local.book_lexicon(docs, settings.corpus)
            docs_terms, term_nodes = remote_terms(ray, workers, words, [ix.passage_text(c) for c in chunks])
            lap("terms")
            units = [(row, a, b) for row, c in enumerate(chunks) for a, b in ix.sentence_units(c)]
            texts = [chunks[row].text[a:b] for row, a, b in units]
            encoder = RayEncoder(embedder, workers, progress)
            cache = settings.index_dir.parent / "cache" / "embeddings" / embedder.fingerprint[:16]
            fresh: set[str] = set()
            books = local.books_of(docs, titles)
            extra = local.answer_passages(chunks, books, units)  # in the same pass as the sentences
            vectors, _ = local.embed_texts(texts + extra, encoder, cache, fresh=fresh)
            vectors, passages = vectors[:len(texts)], dict(zip(extra, vectors[len(texts):]))
            computed = len(fresh.intersection(texts))  # sentences encoded now, as the local build counts them
            lap("embed")
        finally:
            workers.stop(ray)
    tokenizer = Tokenizer(words)
    # the same BM25 as the local build: library-wide statistics, and each book's own (Lexical.from_terms)
    lexical = Lexical.from_terms(docs_terms, tokenizer, list(ix.runs_of([c.book for c in chunks]).values()))
    store = make_vector_store(embedder.dim, len(vectors))
    store.add(vectors)
    table = np.asarray(units, dtype=np.int32).reshape(-1, 3)
    index = ShardedIndex(tuple(chunks), store, table, lexical, tokenizer, words, books,
                         passages=passages, raw_vectors=vectors, terms=docs_terms)
    skipped = tuple(f"{name}：{reason}" for name, reason in skipped_files)
    manifest = local.base_manifest(settings, embedder, index, docs, skipped)
    manifest["engine"] = {"name": "ray", "actors": actors, "cpus": cpus}
    manifest["shards"] = {"dir": SHARDS_DIR, "rows": SHARD_ROWS,
                          "sentences": "chunk_id, start, end, vector", "terms": "chunk_id, terms"}
    local.write_index(settings.index_dir, index, manifest)
    lap("write")
    report = local.BuildReport(settings.index_dir, len(docs), len(chunks), len(units), computed,
                               len(units) - computed, len(words), skipped, timings,
                               books=local.book_reports(manifest, local.encoded_by_book(chunks, units, fresh)))
    nodes = {"read+chunk": tuple(sorted(read_nodes)), "terms": tuple(sorted(term_nodes)),
             "encode": tuple(sorted(encoder.nodes))}
    return RayBuildReport(report, nodes, actors, encoder.window_s, encoder.window_rows)
