"""Many users at once: one shared Pipeline, 8 threads × 50 mixed requests, exactly the serial run's answers.

The concurrent run uses a freshly loaded Pipeline, so its lazily built parts (the answer stage, the per-chunk
sentence caches) are populated by racing threads, as on a page that was just started. Every result is compared
in full (the whole Answer as JSON, every Hit, every error message) with the serial run on another Pipeline.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import threading
import time
from pathlib import Path

from rag.errors import RagError
from rag.pipeline import Pipeline
from rag.types import Answer, QueryParams

QUESTION_FILE = Path(__file__).parent / "data" / "questions.jsonl"
THREADS, PER_THREAD = 8, 50


def mixed_requests() -> list[tuple[str, str, tuple[str, ...]]]:
    """(operation, question, history): every type of the question set, follow-ups with their history, and odd
    input (Traditional, noise, a long paste, blank, English), through ask, ask_stream and search."""
    rows = [json.loads(line) for line in QUESTION_FILE.open(encoding="utf-8") if line.strip()]
    by_type: dict[str, list[dict]] = {}
    for row in rows:
        by_type.setdefault(row["type"], []).append(row)
    picked = [r for kind in sorted(by_type) for r in by_type[kind][:3]]
    requests = [("ask", r["question"], tuple(r["history"])) for r in picked]
    requests += [
        ("ask", "什麼是黨的群眾工作？", ()),
        ("ask", "\x1b[1m群众工作的\u200b核心\x00是什么？", ()),
        ("ask", "粘贴的文字。" * 3000 + "群众工作的核心是什么？", ()),
        ("ask", " \u3000\t\n", ()),
        ("ask", "😀😀", ()),
        ("ask", "What is the core of mass work?", ()),
        ("stream", "群众工作的作用有哪些？", ()),
        ("stream", "它的作用呢？", ("什么是党的群众工作？",)),
        ("search", "网络群工是第几章？", ()),
        ("search", "它的出发点和落脚点是什么？", ("什么是党的群众工作？",)),
    ]
    return requests


def run(pipeline: Pipeline, op: str, question: str, history: tuple[str, ...]) -> str:
    """The complete result of one request as canonical JSON (an error counts as a result)."""
    try:
        if op == "search":
            result: object = [dataclasses.asdict(h) for h in pipeline.search(question, history, params=QueryParams(k=8))]
        elif op == "stream":
            items = list(pipeline.ask_stream(question, history))
            assert isinstance(items[-1], Answer)
            result = [i if isinstance(i, str) else dataclasses.asdict(i) for i in items]
        else:
            result = dataclasses.asdict(pipeline.ask(question, history))
    except RagError as exc:
        result = {"error": type(exc).__name__, "message": str(exc)}
    return json.dumps(result, ensure_ascii=False, sort_keys=True, default=str)


def test_eight_threads_get_exactly_the_serial_answers(pipeline, built, embedder) -> None:
    requests = mixed_requests()
    assert len(requests) >= 30
    start = time.perf_counter()
    expected = {r: run(pipeline, *r) for r in requests}
    serial_s = time.perf_counter() - start
    assert sum('"error"' in v[:10] for v in expected.values()) == 2  # blank and emoji: InputError, as results

    shared = Pipeline.load(built, embedder=embedder)  # cold: lazy parts get built by racing threads
    barrier = threading.Barrier(THREADS)
    results: list[list[tuple[tuple, str]]] = [[] for _ in range(THREADS)]
    crashes: list[BaseException] = []

    def worker(n: int) -> None:
        order = random.Random(n).choices(requests, k=PER_THREAD)  # each thread its own mix and order
        barrier.wait()
        try:
            for r in order:
                results[n].append((r, run(shared, *r)))
        except BaseException as exc:  # anything but a RagError is a crash of the shared object
            crashes.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(THREADS)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    concurrent_s = time.perf_counter() - start
    print(f"\nserial: {len(requests)} requests in {serial_s:.1f} s; "
          f"concurrent: {THREADS}×{PER_THREAD} requests in {concurrent_s:.1f} s")

    assert not crashes, crashes
    assert sum(len(r) for r in results) == THREADS * PER_THREAD
    wrong = [(r[:2], got[:120]) for rows in results for r, got in rows if got != expected[r]]
    assert not wrong, wrong[:3]


def test_shared_pipeline_is_loaded_once_and_follows_a_rebuild(built, tmp_path: Path) -> None:
    """`rag serve` preloads Pipeline.shared while pages open: callers racing it get the one object, warmed;
    a rebuilt index (a new manifest stamp) gets a new Pipeline on the next call."""
    import shutil

    from rag.store.manifest import manifest_stamp

    folder = tmp_path / "index"
    shutil.copytree(built.index_dir, folder)
    settings = dataclasses.replace(built, index_dir=folder)
    got: list[Pipeline] = []
    threads = [threading.Thread(target=lambda: got.append(Pipeline.shared(settings, manifest_stamp(folder))))
               for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 4 and all(p is got[0] for p in got)
    assert got[0].ask("群众工作的核心是什么？").citations  # loaded and answering
    manifest = folder / "manifest.json"
    manifest.write_bytes(manifest.read_bytes())  # what a rebuild's swap does to the stamp (new mtime)
    os.utime(manifest, ns=(time.time_ns(), time.time_ns() + 10**9))
    fresh = Pipeline.shared(settings, manifest_stamp(folder))
    assert fresh is not got[0] and Pipeline.shared(settings, manifest_stamp(folder)) is fresh
