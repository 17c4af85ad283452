"""The HTTP API (rag/api/app.py) over real HTTP on 127.0.0.1: the official openai client against
/v1/chat/completions, the CLI's JSON from /v1/search and /v1/ask, hostile input, many clients, the API key,
offline docs, and `python -m rag api` itself."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import replace
from pathlib import Path

import httpx2
import openai
import pytest

from rag.api.app import MAX_BODY_BYTES, create_app
from rag.api.openai_compat import DEFAULT_MODEL
from rag.commands.api import ThreadedServer
from rag.commands.serve import free_port, stop
from rag.schema import answer_json, search_json
from rag.types import QueryParams

ROOT = Path(__file__).resolve().parent.parent
BOOK = "qunzhong-gongzuo-excerpt"
CDN = re.compile(r"cdn\.jsdelivr|unpkg\.com|cdnjs|googleapis|fonts\.gstatic|tiangolo\.com", re.I)


def index_checksums(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def index_before(built) -> dict[str, str]:
    return index_checksums(built.index_dir)


@pytest.fixture(scope="module")
def server(pipeline, index_before):
    srv = ThreadedServer(create_app(pipeline), free_port()).start()
    yield srv.url
    srv.stop()


@pytest.fixture(scope="module")
def client(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server}/v1", api_key="unused", max_retries=0, timeout=60)


def post(url: str, body: bytes | dict, headers: dict[str, str] | None = None) -> tuple[int, dict]:
    data = body if isinstance(body, bytes) else json.dumps(body, ensure_ascii=False).encode()
    req = urllib.request.Request(url, data=data, method="POST",
                                 headers={"Content-Type": "application/json", **(headers or {})})
    return _open(req)


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict]:
    return _open(urllib.request.Request(url, headers=headers or {}))


def _open(req: urllib.request.Request) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        raw = e.read()
        assert b"Traceback" not in raw
        return e.code, json.loads(raw)


def without_book(citations: list[dict]) -> list[dict]:
    """The completion's citations are the CLI's (rag/schema.py, which carries the book id too)."""
    return citations


# --- the OpenAI-compatible chat --------------------------------------------------------------------------


def test_a_completion_carries_the_answer_and_the_cli_citations(client, pipeline, built, capsys) -> None:
    from rag.__main__ import main

    q = "群众工作的核心是什么？"
    r = client.chat.completions.create(model=DEFAULT_MODEL, messages=[{"role": "user", "content": q}])
    expected = pipeline.ask(q)
    assert r.object == "chat.completion" and r.choices[0].finish_reason == "stop"
    assert r.choices[0].message.content == expected.text and re.search(r"\[\d+\]", expected.text)
    cites = r.model_extra["citations"]
    assert without_book(cites) == answer_json(expected)["citations"]
    assert all(c["book"] == BOOK and c["section"] and c["page"] and c["quote"] and c["chunk_id"] for c in cites)
    assert main(["ask", q, "--index", str(built.index_dir), "--json"]) == 0
    assert without_book(cites) == json.loads(capsys.readouterr().out)["citations"]


def test_a_streamed_followup_matches_pipeline_ask(client, pipeline) -> None:
    history, q = "什么是党的群众工作？", "它的出发点和落脚点是什么？"
    messages = [{"role": "system", "content": "请引用出处。"}, {"role": "user", "content": history},
                {"role": "assistant", "content": "……"}, {"role": "user", "content": q}]
    chunks = list(client.chat.completions.create(model=BOOK, messages=messages, stream=True))
    expected = pipeline.ask(q, [history], QueryParams(book=BOOK))
    assert all(c.object == "chat.completion.chunk" for c in chunks) and len({c.id for c in chunks}) == 1
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == expected.text
    last = chunks[-1]
    assert last.choices[0].finish_reason == "stop" and last.model == BOOK
    assert without_book(last.model_extra["citations"]) == answer_json(expected)["citations"]
    assert last.model_extra["rag"]["resolved_question"] == expected.resolved_question


def test_the_stream_ends_with_done(server) -> None:
    body = {"messages": [{"role": "user", "content": "什么是大群工？"}], "stream": True}
    with httpx2.Client(timeout=60) as http:
        r = http.post(f"{server}/v1/chat/completions", json=body)
    assert r.headers["content-type"].startswith("text/event-stream")
    events = [e for e in r.text.split("\n\n") if e]
    assert all(e.startswith("data: ") for e in events) and events[-1] == "data: [DONE]"


def test_models_are_the_books_plus_all(client, pipeline) -> None:
    ids = [m.id for m in client.models.list()]
    assert ids == [DEFAULT_MODEL] + [b.id for b in pipeline.books]
    with pytest.raises(openai.NotFoundError) as exc:
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "群众工作"}])
    assert "没有编号为" in exc.value.body["message"] or "没有编号为" in str(exc.value)


# --- the CLI's JSON, the books ------------------------------------------------------------------------------


def test_search_and_ask_return_the_cli_json(server, pipeline) -> None:
    q = "什么是党的群众工作"
    status, body = post(f"{server}/v1/search", {"question": q, "k": 3})
    assert status == 200 and body == search_json(q, pipeline.search(q, (), QueryParams(k=3)).hits)
    status, body = post(f"{server}/v1/ask", {"question": "它的作用呢？", "history": [q]})
    assert status == 200 and body == answer_json(pipeline.ask("它的作用呢？", [q]))
    status, body = post(f"{server}/v1/search", {"question": q, "book": BOOK})
    assert status == 200 and len(body["hits"]) == pipeline.settings.retrieve.k


def test_books_toc_and_health(server, pipeline) -> None:
    status, body = get(f"{server}/v1/books")
    assert status == 200 and [b["id"] for b in body["books"]] == [BOOK]
    assert body["books"][0]["info"].get("主编")
    status, toc = get(f"{server}/v1/books/{BOOK}/toc")
    assert status == 200 and toc["toc"][0]["number"] == "第一章" and toc["toc"][0]["page"] == "1"
    status, health = get(f"{server}/healthz")
    s = pipeline.status()
    assert status == 200 and health["status"] == "ok" and health["chunks"] == s.chunks
    assert health["embedding_model"] == s.model and health["model"] == DEFAULT_MODEL and health["llm"] is False


# --- hostile input -------------------------------------------------------------------------------------------

QUESTION_BODIES = [
    b"", b"{bad json", b"[]", b'"question"', b'{"question": "\xff\xfe"}', b"null",
    {}, {"question": ""}, {"question": "   \u3000"}, {"question": "\x00\x01\x1b[31m\u200b\u202e"},
    {"question": 123}, {"question": ["群众"]}, {"question": "群众工作", "k": "many"}, {"question": "群众工作", "k": 0},
    {"question": "群众工作", "k": 10**12}, {"question": "群众工作", "book": "no-such-book"},
    {"question": "群" * 10_000}, {"question": "😀😀😀"}, {"question": "群众工作", "history": "上一问"},
    {"question": "群众工作", "history": ["问"] * 100}, {"question": "群众工作", "unknown": 1},
]
CHAT_BODIES = [
    b"", b"{bad", {}, {"messages": []}, {"messages": "你好"}, {"messages": [{"role": "user", "content": ""}]},
    {"messages": [{"role": "assistant", "content": "你好"}]}, {"messages": [{"role": "wizard", "content": "x"}]},
    {"messages": [{"role": "user", "content": 5}]},
    {"messages": [{"role": "user", "content": "群众工作"}], "stream": [1]},
    {"model": "no-such-book", "messages": [{"role": "user", "content": "群众工作"}]},
    {"messages": [{"role": "user", "content": "群" * 10_000}]}, {"messages": [{"role": "user", "content": "😀😀"}]},
    {"messages": [{"role": "user", "content": "\x07\x1b]0;x\x07"}], "stream": True},
    {"messages": [{"role": "user", "content": "群众工作"}] * 100},
]


def assert_json_error(status: int, body: dict) -> None:
    assert 400 <= status < 500, (status, body)
    assert set(body) == {"error"} and body["error"]["code"]
    assert re.search(r"[\u4e00-\u9fff]", body["error"]["message"])  # told in Chinese


@pytest.mark.parametrize("path", ["/v1/search", "/v1/ask"])
@pytest.mark.parametrize("body", QUESTION_BODIES, ids=range(len(QUESTION_BODIES)))
def test_hostile_questions_get_a_json_4xx(server, path, body) -> None:
    assert_json_error(*post(server + path, body))


@pytest.mark.parametrize("body", CHAT_BODIES, ids=range(len(CHAT_BODIES)))
def test_hostile_chats_get_a_json_4xx(server, body) -> None:
    assert_json_error(*post(f"{server}/v1/chat/completions", body))


@pytest.mark.parametrize("method,path", [("GET", "/v1/books/no-such-book/toc"), ("GET", "/v1/books/%00%1b/toc"),
                                         ("GET", "/nowhere"), ("GET", "/v1/search"), ("DELETE", "/v1/books"),
                                         ("POST", "/healthz")])
def test_bad_paths_and_methods_get_a_json_4xx(server, method, path) -> None:
    assert_json_error(*_open(urllib.request.Request(server + path, method=method)))


def test_large_bodies_are_refused_with_413(server) -> None:
    huge = json.dumps({"question": "群众工作", "history": ["x" * 1000] * 100}).encode()
    assert len(huge) > MAX_BODY_BYTES
    status, body = post(f"{server}/v1/ask", huge)
    assert status == 413 and body["error"]["code"] == "body_too_large"

    def chunked():  # no Content-Length: counted as it arrives
        yield b'{"question": "'
        for _ in range(100):
            yield b"x" * 1024
        yield b'"}'

    with httpx2.Client(timeout=60) as http:
        r = http.post(f"{server}/v1/search", content=chunked(), headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and r.json()["error"]["code"] == "body_too_large"


# --- many clients ---------------------------------------------------------------------------------------------


def test_many_clients_get_the_serial_answers(server) -> None:
    jobs = [(path, q) for q in ("群众工作的核心是什么？", "什么是大群工？", "这本书的主编是谁？", "群众路线")
            for path in ("/v1/search", "/v1/ask")]
    with httpx2.Client(base_url=server, timeout=60) as http:
        serial = {job: http.post(job[0], json={"question": job[1]}).json() for job in jobs}
    results: list[tuple[tuple[str, str], int, dict]] = []
    lock = threading.Lock()

    def worker(n: int) -> None:
        with httpx2.Client(base_url=server, timeout=60) as http:
            for i in range(50):
                job = jobs[(n + i) % len(jobs)]
                r = http.post(job[0], json={"question": job[1]})
                with lock:
                    results.append((job, r.status_code, r.json()))

    start = time.monotonic()
    threads = [threading.Thread(target=worker, args=(n,)) for n in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert len(results) == 16 * 50, f"{len(results)} answers in {time.monotonic() - start:.0f} s"
    for job, status, body in results:
        assert status == 200 and body == serial[job], job


# --- the API key, the docs, the command -----------------------------------------------------------------


def test_the_api_key_guards_v1(pipeline) -> None:
    srv = ThreadedServer(create_app(pipeline, api_key="s3cret"), free_port()).start()
    try:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}):
            status, body = get(f"{srv.url}/v1/books", headers)
            assert status == 401 and body["error"]["code"] == "unauthorized"
            status, body = post(f"{srv.url}/v1/search", {"question": "群众工作"}, headers)
            assert status == 401
        assert get(f"{srv.url}/v1/books", {"Authorization": "Bearer s3cret"})[0] == 200
        assert get(f"{srv.url}/healthz")[0] == 200
        good = openai.OpenAI(base_url=f"{srv.url}/v1", api_key="s3cret", max_retries=0)
        assert good.models.list().data
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=f"{srv.url}/v1", api_key="nope", max_retries=0).models.list()
    finally:
        srv.stop()


def test_the_docs_work_offline(server) -> None:
    with httpx2.Client(base_url=server, timeout=60) as http:
        page = http.get("/docs")
        assert page.status_code == 200 and "swagger-ui" in page.text
        assert not re.search(r"https?://", page.text), "the docs page names an external URL"
        assets = re.findall(r'(?:src|href)="([^"]+)"', page.text)
        assert len(assets) >= 3
        for url in assets:
            r = http.get(url)
            assert url.startswith("/") and r.status_code == 200, url
            assert not CDN.search(r.text), url
        spec = http.get("/openapi.json").json()
        assert "/v1/chat/completions" in spec["paths"] and not CDN.search(json.dumps(spec))
        assert http.get("/redoc").status_code == 404


def test_python_m_rag_api_serves_with_a_key(built, tmp_path) -> None:
    port = free_port()
    env = os.environ | {"RAG_INDEX_DIR": str(built.index_dir), "RAG_API_KEY": "k-123", "HF_HUB_OFFLINE": "1"}
    env.pop("RAG_LLM_BASE_URL", None)
    proc = subprocess.Popen([sys.executable, "-m", "rag", "api", "--port", str(port)], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, proc.stderr.read()
            try:
                status, health = get(f"http://127.0.0.1:{port}/healthz")
                break
            except OSError:
                assert time.monotonic() < deadline, "the API did not start"
                time.sleep(0.1)
        assert status == 200 and health["status"] == "ok"
        assert get(f"http://127.0.0.1:{port}/v1/models")[0] == 401
        status, body = post(f"http://127.0.0.1:{port}/v1/ask", {"question": "群众工作的核心是什么？"},
                            {"Authorization": "Bearer k-123"})
        assert status == 200 and body["citations"]
    finally:
        stop(proc)


def test_python_m_rag_api_without_an_index_says_so(tmp_path) -> None:
    env = os.environ | {"RAG_INDEX_DIR": str(tmp_path / "none"), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-m", "rag", "api", "--port", str(free_port())], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "没有找到索引" in done.stderr and "Traceback" not in done.stderr


# --- an LLM server behind the API -----------------------------------------------------------------------


def test_llm_mode_streams_the_pieces(built, embedder) -> None:
    from fake_llm import FakeLLM, Script

    from rag.config import LLMSettings
    from rag.pipeline import Pipeline

    llm = FakeLLM(Script(reply="党的群众工作的核心是正确处理人民内部矛盾。[1]"))
    settings = replace(built, llm=LLMSettings(base_url=llm.start(), model="fake"))
    srv = ThreadedServer(create_app(Pipeline.load(settings, embedder=embedder)), free_port()).start()
    try:
        client = openai.OpenAI(base_url=f"{srv.url}/v1", api_key="unused", max_retries=0)
        chunks = list(client.chat.completions.create(
            model=DEFAULT_MODEL, messages=[{"role": "user", "content": "群众工作的核心是什么？"}], stream=True))
        pieces = [c.choices[0].delta.content for c in chunks if c.choices[0].delta.content]
        assert len(pieces) > 3 and "".join(pieces).startswith("党的群众工作的核心")
        last = chunks[-1].model_extra
        assert last["rag"]["mode"] == "llm" and last["citations"] and "[1]" in last["answer"]
        assert llm.requests and llm.requests[0]["body"].get("stream") is True
    finally:
        srv.stop()
        llm.stop()


def test_a_slow_llm_answer_does_not_stall_other_requests(built, embedder) -> None:
    """A lone search or extractive ask is served on the event loop (no thread hop); an LLM answer never is:
    while one waits for the LLM, a search on another connection is answered."""
    from fake_llm import FakeLLM, Script

    from rag.config import LLMSettings
    from rag.pipeline import Pipeline

    def slow(_: dict) -> str:
        time.sleep(3)
        return "党的群众工作的核心是正确处理人民内部矛盾。[1]"

    llm = FakeLLM(Script(reply=slow))
    settings = replace(built, llm=LLMSettings(base_url=llm.start(), model="fake"))
    srv = ThreadedServer(create_app(Pipeline.load(settings, embedder=embedder)), free_port()).start()
    asked: list[tuple[int, dict]] = []
    try:
        slow_ask = threading.Thread(target=lambda: asked.append(post(f"{srv.url}/v1/ask",
                                                                     {"question": "群众工作的核心是什么？"})))
        slow_ask.start()
        deadline = time.monotonic() + 10
        while not llm.requests and time.monotonic() < deadline:
            time.sleep(0.02)
        assert llm.requests, "the ask never reached the LLM"
        status, found = post(f"{srv.url}/v1/search", {"question": "什么是大群工？"})
        assert status == 200 and found["hits"] and not asked, "the search waited for the LLM answer"
        slow_ask.join(timeout=30)
        assert asked and asked[0][0] == 200 and asked[0][1]["mode"] == "llm"
    finally:
        srv.stop()
        llm.stop()


def test_a_missing_index_is_a_503_and_a_crash_a_bare_500(pipeline, tmp_path) -> None:
    from rag.errors import IndexMissingError

    calls = []

    def flaky():
        calls.append(1)
        if len(calls) == 1:
            raise IndexMissingError(f"没有找到索引：{tmp_path}/manifest.json 不存在。")
        raise RuntimeError("secret internals")

    srv = ThreadedServer(create_app(flaky), free_port()).start()  # starts although the load failed
    try:
        status, body = get(f"{srv.url}/healthz")
        assert status == 500 and body["error"]["code"] == "internal_error" and "secret" not in json.dumps(body)
        calls.clear()
        status, body = post(f"{srv.url}/v1/search", {"question": "群众工作"})
        assert status == 503 and body["error"]["code"] == "index_unavailable"
        assert "没有找到索引" in body["error"]["message"]
    finally:
        srv.stop()


def test_index_files_are_untouched(built, index_before) -> None:
    assert index_checksums(built.index_dir) == index_before
