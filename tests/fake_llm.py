"""A small OpenAI-compatible chat server on 127.0.0.1 for the LLM tests: real HTTP, real SSE streaming.

It stands in for a service we do not ship (Ollama, vLLM, DeepSeek …) — the only fake the suite allows. Each
test scripts its behaviour: the reply text (or a function of the request), and failures (HTTP 500, a server
that never answers, a stream that stalls half-way, a malformed stream). Every request body is recorded, so a
test can prove that a refused question never reached the model.

`citing` / `claims_script` script a model that answers with given sentences, each followed by the [n] marker
of the passage it took them from (found in the request by a verbatim piece of that passage): faithful
paraphrases and subtly wrong claims alike, so a test drives the real Verifier through the real Answerer.
"""

from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Literal, Sequence

Mode = Literal["ok", "error500", "hang", "stall", "malformed"]


@dataclass
class Script:
    reply: str | Callable[[dict], str] = "好的。"
    mode: Mode = "ok"
    piece_chars: int = 3  # characters per streamed delta
    hang_s: float = 5.0  # how long "hang"/"stall" keep the client waiting


@dataclass
class FakeLLM:
    script: Script = field(default_factory=Script)
    requests: list[dict] = field(default_factory=list)

    def start(self) -> str:
        """Serve on a free loopback port; returns the base URL (…/v1) for RAG_LLM_BASE_URL."""
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep pytest output clean
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                owner.requests.append({"path": self.path, "body": body})
                owner._respond(self, body)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    # --- behaviour ----------------------------------------------------------------------------------------

    def _respond(self, h: BaseHTTPRequestHandler, body: dict) -> None:
        s = self.script
        if s.mode == "error500":
            error = b'{"error": {"message": "boom", "type": "server_error"}}'
            return self._send(h, 500, "application/json", error)
        if s.mode == "hang":
            time.sleep(s.hang_s)
            return None
        reply = s.reply(body) if callable(s.reply) else s.reply
        h.send_response(200)
        h.send_header("Content-Type", "text/event-stream")
        h.send_header("Cache-Control", "no-cache")
        h.end_headers()
        if s.mode == "malformed":
            return self._write(h, b'data: {"id": "x", "choices": [{"delta": {"content": "\xe5\x85\x9a"\n\n')
        pieces = [reply[i : i + s.piece_chars] for i in range(0, len(reply), s.piece_chars)]
        for i, piece in enumerate(pieces):
            self._write(h, _event(piece))
            if s.mode == "stall" and i == 0:
                time.sleep(s.hang_s)
                return None
        self._write(h, _event(None, finish="stop"))
        self._write(h, b"data: [DONE]\n\n")
        return None

    @staticmethod
    def _send(h: BaseHTTPRequestHandler, status: int, ctype: str, payload: bytes) -> None:
        h.send_response(status)
        h.send_header("Content-Type", ctype)
        h.send_header("Content-Length", str(len(payload)))
        h.end_headers()
        h.wfile.write(payload)

    @staticmethod
    def _write(h: BaseHTTPRequestHandler, data: bytes) -> None:
        try:
            h.wfile.write(data)
            h.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout test)
            pass


def _event(content: str | None, finish: str | None = None) -> bytes:
    delta = {"content": content} if content is not None else {}
    chunk = {
        "id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 0, "model": "fake",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n".encode()


def user_content(body: dict) -> str:
    return next((m["content"] for m in body.get("messages", []) if m.get("role") == "user"), "")


def system_content(body: dict) -> str:
    return next((m["content"] for m in body.get("messages", []) if m.get("role") == "system"), "")


_PASSAGE = re.compile(r'<passage n="(\d+)"[^>]*>\n(.*?)\n</passage>', re.S)


def prompt_passages(body: dict) -> dict[int, str]:
    """The numbered passages of a request (n → text), as build_messages wrote them."""
    return {int(n): text for n, text in _PASSAGE.findall(user_content(body))}


def _squeeze(s: str) -> str:
    return re.sub(r"\s", "", s)


def passage_number(body: dict, evidence: str) -> int | None:
    """The number of the first passage of the request that contains `evidence` (ignoring whitespace)."""
    want = _squeeze(evidence)
    return next((n for n, text in sorted(prompt_passages(body).items()) if want in _squeeze(text)), None)


def citing(claims: Sequence[tuple[str, str | int]]) -> Callable[[dict], str]:
    """A reply function: each claim followed by its marker. A claim comes with either the passage number to
    cite or a verbatim piece of the passage it was taken from (cited as that passage's number in the request;
    [9] — which no prompt has — when no passage of the request contains it)."""

    def reply(body: dict) -> str:
        out = []
        for claim, where in claims:
            n = where if isinstance(where, int) else passage_number(body, where)
            out.append(f"{claim}[{n or 9}]")
        return "".join(out)

    return reply


def claims_script(claims: Sequence[tuple[str, str | int]], **kwargs) -> Script:
    """A Script answering with `claims` (see `citing`); other Script fields (mode, piece_chars …) as given."""
    return Script(reply=citing(claims), **kwargs)
