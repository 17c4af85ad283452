"""HTTP API benchmark: p50/p95 of /v1/search and /v1/ask at 1, 8 and 32 concurrent clients, against the same
calls on the in-process Pipeline in the same run (the ratio API / in-process at 1 client is the API's cost).

    .venv/bin/python -m bench.api [--index DIR] [--requests 160] [--rounds 20] [--clients 1 8 32] [--no-write]
                                  [--json]

The server is `python -m rag api` in its own process on a free 127.0.0.1 port (as deployed: its own GIL),
the clients are threads here with one keep-alive httpx2 connection each (at 1 client also a stdlib
http.client one, which costs next to nothing itself: the API's own share); the questions are the project's
question set (tests/data/questions.jsonl), the same ones in the same order for both sides. The requests of a
row are sent in rounds that alternate between the API and the in-process pipeline (API first, then
in-process first, …), so that both sides see the same load on a shared machine (fewer rounds at high
concurrency: each round gives every client at least 4 requests). Every loop is bounded by its
request count; the server is stopped at the end. Writes the section "HTTP API (issue 15)" of
bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Callable

import httpx2

from bench.common import ROOT, load, machine, pct, questions, stamp, write_section
from rag.commands.serve import free_port, stop

ENDPOINTS = ("search", "ask")


def run_clients(jobs: list[tuple[str, list[str]]], call: Callable[[object, str, list[str]], None],
                sessions: list[object]) -> tuple[list[float], float]:
    """Latencies (ms) of every job, shared out to one thread per session, and the wall time of the run."""
    latencies: list[float] = []
    lock = threading.Lock()
    todo = iter(jobs)

    def worker(s: object) -> None:
        while True:
            with lock:
                job = next(todo, None)
            if job is None:
                break
            t = time.perf_counter()
            call(s, *job)
            ms = (time.perf_counter() - t) * 1000
            with lock:
                latencies.append(ms)

    start = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(s,)) for s in sessions]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return latencies, time.perf_counter() - start


def start_server(index: Path, port: int) -> subprocess.Popen:
    env = os.environ | {"HF_HUB_OFFLINE": "1", "RAG_INDEX_DIR": str(index)}
    env.pop("RAG_API_KEY", None)
    proc = subprocess.Popen([sys.executable, "-m", "rag", "api", "--port", str(port)], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"python -m rag api exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2):
                return proc
        except OSError:
            time.sleep(0.1)
    stop(proc)
    raise RuntimeError("python -m rag api did not answer /healthz within 120 s")


class StdlibClient:
    """One keep-alive `http.client` connection: the HTTP round trip with next to no client-library cost of its
    own (httpx2 spends about 1 ms of CPU per request here), to tell the API's cost from the client's."""

    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)

    def post(self, path: str, body: dict) -> bytes:
        self.conn.request("POST", path, json.dumps(body).encode(), {"Content-Type": "application/json"})
        response = self.conn.getresponse()
        data = response.read()
        if response.status >= 400:
            raise RuntimeError(f"{path}: HTTP {response.status}")
        return data

    def close(self) -> None:
        self.conn.close()


def post(client: object, path: str, body: dict) -> None:
    if isinstance(client, StdlibClient):
        client.post(path, body)
    else:
        client.post(path, json=body).raise_for_status()


CLIENTS = {"httpx2": lambda port: httpx2.Client(base_url=f"http://127.0.0.1:{port}", timeout=120),
           "http.client": StdlibClient}

Side = tuple[Callable, list[object]]  # (call, one session per client) as run_clients takes them


def alternate(rounds: int, jobs: list[tuple[str, list[str]]],
              sides: dict[str, Side]) -> dict[str, tuple[list[float], float]]:
    """Every side's latencies and wall time over `rounds` rounds of the jobs, the order of the sides turning
    each round (so a change of load on the machine falls on both alike)."""
    out: dict[str, tuple[list[float], float]] = {name: ([], 0.0) for name in sides}
    step = -(-len(jobs) // rounds)
    for r in range(rounds):
        names = list(sides) if r % 2 == 0 else list(reversed(sides))
        for name in names:
            latencies, wall = run_clients(jobs[r * step:(r + 1) * step], *sides[name])
            out[name] = (out[name][0] + latencies, out[name][1] + wall)
    return out


def rounds_for(rounds: int, clients: int, n_jobs: int) -> int:
    """At most `rounds`, but each round gives every client at least 4 requests (else it measures ramp-up)."""
    return max(1, min(rounds, n_jobs // (4 * clients)))


def level(port: int, calls: tuple[Callable, Callable], clients: int, jobs: list[tuple[str, list[str]]],
          rounds: int, client: str = "httpx2") -> tuple[tuple[list[float], float], tuple[list[float], float]]:
    """(latencies, wall) of the API and of the in-process calls, in alternating rounds; each client keeps
    its one connection across the rounds."""
    sessions = [CLIENTS[client](port) for _ in range(clients)]
    sides = {"api": (calls[0], sessions), "local": (calls[1], [None] * clients)}
    try:
        got = alternate(rounds_for(rounds, clients, len(jobs)), jobs, sides)
    finally:
        for session in sessions:
            session.close()
    return got["api"], got["local"]


def measure(index: Path, n_requests: int, levels: list[int], rounds: int) -> dict:
    from rag.config import Settings
    from rag.pipeline import Pipeline

    settings = Settings.from_env({k: v for k, v in os.environ.items() if k != "RAG_LLM_BASE_URL"})
    pipeline = Pipeline.load(settings.with_overrides(index_dir=index))
    pipeline.answerer.warm()
    qs = questions()
    jobs = [qs[i % len(qs)] for i in range(n_requests)]
    port = free_port()
    server = start_server(index, port)
    rows = []
    try:
        def api_call(endpoint: str) -> Callable:
            return lambda client, q, h: post(client, f"/v1/{endpoint}", {"question": q, "history": h})

        def local_call(endpoint: str) -> Callable:
            fn = pipeline.search if endpoint == "search" else pipeline.ask
            return lambda _, q, h: fn(q, h)

        for endpoint in ENDPOINTS:
            calls = api_call(endpoint), local_call(endpoint)
            level(port, calls, 2, jobs[:20], 1)  # warm both sides
            runs = [(n, "httpx2") for n in levels] + [(1, "http.client")] * (1 in levels)
            for clients, client in runs:
                (api, api_wall), (local, local_wall) = level(port, calls, clients, jobs, rounds, client)
                rows.append({"endpoint": endpoint, "clients": clients, "client": client, "requests": len(jobs),
                             "api_ms": pct(api), "local_ms": pct(local),
                             "api_rps": len(api) / api_wall, "local_rps": len(local) / local_wall})
                print(f"{endpoint} ×{clients} ({client}): API p50 {rows[-1]['api_ms'][0]:.1f} ms, in-process "
                      f"{rows[-1]['local_ms'][0]:.1f} ms", file=sys.stderr, flush=True)
    finally:
        stop(server)
    return {"rows": rows, "load": load(), "questions": len(qs)}


def table(result: dict) -> str:
    lines = ["| endpoint | clients | client | API p50 / p95 (ms) | in-process p50 / p95 (ms) | API / in-process p50 "
             "| API req/s | in-process req/s |", "|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        (a50, a95), (l50, l95) = r["api_ms"], r["local_ms"]
        lines.append(f"| /v1/{r['endpoint']} | {r['clients']} | {r['client']} | {a50:.1f} / {a95:.1f} "
                     f"| {l50:.1f} / {l95:.1f} "
                     f"| {a50 / l50:.2f} | {r['api_rps']:.0f} | {r['local_rps']:.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", type=Path, default=ROOT / "embeddings" / "index")
    parser.add_argument("--requests", type=int, default=160,
                        help="requests per endpoint and concurrency level")
    parser.add_argument("--rounds", type=int, default=20,
                        help="alternating API / in-process rounds the requests of a row are split into")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON line at the end")
    args = parser.parse_args(argv)
    if not (args.index / "manifest.json").is_file():
        print(f"没有找到索引 {args.index}：请先运行 make index", file=sys.stderr)
        return 1
    start = time.monotonic()
    result = measure(args.index, args.requests, args.clients, args.rounds)
    body = "\n".join([
        f"Run {stamp()} with `.venv/bin/python -m bench.api --requests {args.requests} --rounds "
        f"{args.rounds}`: `python -m rag api` in its own process on 127.0.0.1, N client threads here (one "
        f"keep-alive httpx2 connection each) sending {args.requests} requests per row from the question set "
        f"({result['questions']} questions, with their history); the in-process columns are the same calls "
        f"on a Pipeline in this process, in the same run, in up to {args.rounds} rounds that alternate with "
        "the API's (so both sides see the same load; each round gives every client at least 4 requests). "
        "On 2 cores the clients, the server and the in-process pipeline share the CPUs, so from 8 clients on "
        "latency is queueing: throughput (req/s) is the figure to compare. The 1-client row is run twice: "
        "with httpx2 (the client library the official openai client is built on), and with one keep-alive "
        "stdlib `http.client` connection, whose own CPU cost is next to nothing, so the difference between "
        "the two rows is the client library's and the second row's ratio is what the API itself adds.  ",
        f"Machine: {machine()}.  ",
        f"Load average at the end: {result['load']}; total {time.monotonic() - start:.0f} s.", "",
        table(result)])
    print(table(result))
    if not args.no_write:
        write_section("HTTP API (issue 15)", body)
    if args.json:
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
