"""The HTTP API: FastAPI over one shared, read-only Pipeline — OpenAI-compatible chat, search, ask, books.

`create_app(source)` takes a loaded Pipeline, or a loader called on every request (cheap: `Pipeline.shared`
keeps the warm one, and picks up a rebuilt index) and once at startup. Every error is JSON
{"error": {"code", "message"}} with a Chinese message, never a traceback. RAG_API_KEY is read here, in
`api_key_from_env`, and nowhere else: with it set, /v1/* wants `Authorization: Bearer <key>`.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any, Awaitable, Callable, Mapping

import anyio.to_thread
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from swagger_ui_bundle import swagger_ui_path

from rag import __version__
from rag.api.books import UnknownBookError, book_json, find_book, toc_json
from rag.api.openai_compat import (DEFAULT_MODEL, ChatRequest, book_of, completion_json, error_json,
                                   split_messages, stream_events)
from rag.errors import IndexError_, InputError, LLMError, ModelError, RagError
from rag.config import Settings
from rag.pipeline import Pipeline
from rag.schema import answer_json, search_json
from rag.types import QueryParams

log = logging.getLogger("rag.api")

MAX_BODY_BYTES = 64 * 1024  # a request body larger than this is refused with 413
WORKER_THREADS = 8  # requests served at once (the rest queue)
MAX_HISTORY = 20  # earlier questions a request may carry
QUESTION_FACTOR = 4  # raw questions longer than this × max_question_chars are refused (shorter ones are cut)
PipelineSource = Pipeline | Callable[[], Pipeline]
Replier = Callable[..., Awaitable[Response]]  # reply(work, quick=None), see `replier`


def api_key_from_env(env: Mapping[str, str] | None = None) -> str | None:
    """RAG_API_KEY (read by rag/config.py), at startup of `python -m rag api`."""
    return Settings.from_env(env).api.api_key


class QuestionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    question: str = Field(description="问题，如“什么是党的群众工作？”")
    history: list[str] = Field(default_factory=list, max_length=MAX_HISTORY, description="此前的提问，按时间顺序")
    k: int | None = Field(default=None, ge=1, le=50, description="search：返回的段落数；ask：参考的段落数")
    book: str | None = Field(default=None, description="只在这本教材中查找（GET /v1/books 的 id）")


# --- errors ------------------------------------------------------------------------------------------------

_STATUS_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
                 405: "method_not_allowed", 413: "body_too_large", 415: "unsupported_media_type",
                 429: "too_many_requests"}
_STATUS_MESSAGES = {404: "没有这个地址。可用的接口见 /docs。", 405: "该地址不支持此请求方法。",
                    401: "缺少或错误的 API 密钥：请在请求头中加入 Authorization: Bearer <密钥>。",
                    413: f"请求体过大（上限 {MAX_BODY_BYTES // 1024} KB）。"}
_PYDANTIC_MESSAGES = {"missing": "缺少此字段", "string_type": "应为字符串", "int_type": "应为整数",
                      "int_parsing": "应为整数", "bool_type": "应为 true 或 false",
                      "bool_parsing": "应为 true 或 false",
                      "list_type": "应为数组", "model_attributes_type": "应为 JSON 对象", "dict_type": "应为 JSON 对象",
                      "too_short": "不能为空", "too_long": "元素过多", "greater_than_equal": "过小",
                      "less_than_equal": "过大", "extra_forbidden": "不支持此字段", "literal_error": "取值不在允许范围内",
                      "json_invalid": "不是有效的 JSON", "int_from_float": "应为整数",
                      "string_unicode": "不是有效的 UTF-8 文本", "model_type": "应为 JSON 对象"}


def error_response(status: int, code: str, message: str,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error_json(code, message), status_code=status, headers=headers)


def validation_message(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        # a JSON syntax error's loc is a character offset, not a field
        loc = () if err.get("type") == "json_invalid" else err.get("loc", ())
        where = ".".join(str(x) for x in loc if x != "body") or "请求体"
        parts.append(f"{where}：{_PYDANTIC_MESSAGES.get(err.get('type', ''), '取值无效')}")
    return "请求格式不正确（" + "；".join(parts) + "）。请求体应为 JSON 对象，字段说明见 /docs。"


def rag_error_status(exc: RagError) -> tuple[int, str]:
    if isinstance(exc, UnknownBookError):
        return 404, "unknown_book"
    if isinstance(exc, InputError):
        return 400, "invalid_question"
    if isinstance(exc, (IndexError_, ModelError)):
        return 503, "index_unavailable"
    if isinstance(exc, LLMError):
        return 502, "llm_error"
    return 503, "unavailable"


def error_for(exc: Exception) -> JSONResponse:
    """The JSON error reply for an exception (what the app's exception handlers and PostRoutes send)."""
    if isinstance(exc, RequestValidationError):
        return error_response(422, "invalid_request", validation_message(exc))
    if isinstance(exc, HTTPException):
        message = _STATUS_MESSAGES.get(exc.status_code, "请求无法处理。")
        return error_response(exc.status_code, _STATUS_CODES.get(exc.status_code, "http_error"), message,
                              getattr(exc, "headers", None))
    if isinstance(exc, RagError):
        status, code = rag_error_status(exc)
        return error_response(status, code, str(exc))
    log.error("未处理的异常", exc_info=exc)  # last resort: logged, never shown
    return error_response(500, "internal_error", "服务器内部错误。请稍后重试；若一再出现，请查看服务器日志。")


def install_error_handlers(app: FastAPI) -> None:
    async def handle(_: Request, exc: Exception) -> JSONResponse:
        return error_for(exc)

    for kind in (RequestValidationError, HTTPException, RagError, Exception):
        app.add_exception_handler(kind, handle)


# --- the guard: API key and body size, before any body is read ------------------------------------------


class Guard:
    """ASGI middleware: /v1/* wants the API key (when one is set); no body may exceed MAX_BODY_BYTES."""

    def __init__(self, app: ASGIApp, api_key: str | None, max_body: int = MAX_BODY_BYTES) -> None:
        self.app, self.api_key, self.max_body = app, api_key, max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", ())}
        if self.api_key and scope["path"].startswith("/v1") and not self._authorized(headers):
            return await self._refuse(scope, receive, send, 401, {"WWW-Authenticate": "Bearer"})
        length = headers.get("content-length", "")
        if length and (not length.isdigit() or int(length) > self.max_body):
            return await self._refuse(scope, receive, send, 413)
        await self.app(scope, self._bounded(receive), send)

    def _authorized(self, headers: dict[str, str]) -> bool:
        scheme, _, token = headers.get("authorization", "").partition(" ")
        given, key = token.strip().encode(), (self.api_key or "").encode()
        return scheme.lower() == "bearer" and secrets.compare_digest(given, key)

    def _bounded(self, receive: Receive) -> Receive:
        seen = 0

        async def bounded() -> Message:  # a chunked body has no Content-Length: count as it arrives
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_body:
                raise HTTPException(413)
            return message

        return bounded

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, status: int,
                      headers: dict[str, str] | None = None) -> None:
        response = error_response(status, _STATUS_CODES[status], _STATUS_MESSAGES[status], headers)
        await response(scope, receive, send)


# --- the question endpoints: POST straight from ASGI ------------------------------------------------------


class PostRoutes:
    """ASGI middleware serving the POST endpoints (/v1/search, /v1/ask, /v1/chat/completions) without
    FastAPI's routing, body dependency and exception middlewares: the raw body is validated by the request
    model (`model_validate_json`) where the reply is built (see `replier`), and any error becomes the
    same JSON as the app's exception handlers give. On this machine that takes ~0.5 ms off each request
    of ~10 ms (bench/RESULTS.md, HTTP API). Everything else (other methods and paths, /docs) goes on to the
    FastAPI app, whose OpenAPI schema describes these endpoints too (`post_paths`)."""

    def __init__(self, app: ASGIApp, routes: dict[str, Callable[[bytes], Awaitable[Response]]],
                 traffic: Traffic) -> None:
        self.app, self.routes, self.traffic = app, routes, traffic

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = self.routes.get(scope["path"]) if scope["type"] == "http" and scope["method"] == "POST" else None
        if route is None:
            return await self.app(scope, receive, send)
        self.traffic.active += 1
        try:
            try:
                response = await route(await read_body(receive))
            except Exception as exc:  # noqa: BLE001 — every error is a JSON reply (a 500 is logged)
                response = error_for(exc)
            await response(scope, receive, send)
        finally:
            self.traffic.active -= 1


class Traffic:
    """The POST requests being served, from their first byte to their last (changed on the event loop only)."""

    def __init__(self) -> None:
        self.active = 0


async def read_body(receive: Receive) -> bytes:
    parts = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise HTTPException(400)
        parts.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(parts)


def validated(model: type[BaseModel], raw: bytes) -> Any:
    """The request model from the raw body, or the RequestValidationError FastAPI would raise (a 422)."""
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        raise RequestValidationError(exc.errors(include_url=False, include_input=False)) from None


POSTS = {"/v1/search": ("检索相关段落（与 python -m rag search --json 相同）", QuestionRequest),
         "/v1/ask": ("回答问题并给出出处（与 python -m rag ask --json 相同）", QuestionRequest),
         "/v1/chat/completions": ("OpenAI 兼容的对话接口（model 为教材 id，或表示全部教材的 id）", ChatRequest)}


def post_paths() -> tuple[dict[str, Any], dict[str, Any]]:
    """The OpenAPI paths and component schemas of the POST endpoints (PostRoutes serves them)."""
    paths, schemas = {}, {}
    for path, (summary, model) in POSTS.items():
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
        paths[path] = {"post": {
            "summary": summary, "operationId": path.strip("/").replace("/", "_"),
            "requestBody": {"required": True, "content": {"application/json": {
                "schema": {"$ref": f"#/components/schemas/{model.__name__}"}}}},
            "responses": {"200": {"description": "成功", "content": {"application/json": {}}},
                          "4XX": {"description": "错误：{\"error\": {\"code\", \"message\"}}"}}}}
    return paths, schemas


# --- the app -------------------------------------------------------------------------------------------


def create_app(source: PipelineSource, api_key: str | None = None) -> FastAPI:
    """The API over `source` (a Pipeline, or a loader of the shared one); `api_key` guards /v1/*."""
    get: Callable[[], Pipeline] = source if callable(source) else (lambda: source)
    workers, traffic = Workers(), Traffic()

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        # Requests run in worker threads (a lone quick one on the loop, see `replier`). More threads than
        # this only contend for the GIL and the cores (bench/api.py: 32 threads served fewer requests a
        # second than 8); the others wait their turn.
        # anyio's threads (as many) serve the streamed completions' iterators, Starlette's way.
        anyio.to_thread.current_default_thread_limiter().total_tokens = WORKER_THREADS
        workers.start()
        try:
            get()  # load (and warm) now rather than in the first request
        except RagError as exc:  # every request will say so with a 503 until the index is fixed
            log.error("索引未能载入：%s", exc)
        yield
        workers.stop()

    app = FastAPI(title="教材问答 API", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="检索增强的教材问答：OpenAI 兼容的 /v1/chat/completions，以及检索、问答与目录接口。"
                              "回答中的 [n] 对应 citations 中的出处（章节、页码、原文）。")
    reply = replier(get, workers, traffic)
    app.add_middleware(PostRoutes, routes={
        "/v1/search": lambda raw: reply(lambda p: search_reply(p, validated(QuestionRequest, raw)), always),
        "/v1/ask": lambda raw: reply(lambda p: ask_reply(p, validated(QuestionRequest, raw)), no_llm),
        "/v1/chat/completions": lambda raw: reply(lambda p: chat_reply(p, validated(ChatRequest, raw)))},
        traffic=traffic)
    app.add_middleware(Guard, api_key=api_key)  # outside PostRoutes: the key and body size come first
    install_error_handlers(app)
    install_docs(app)
    install_routes(app, reply)
    return app


def install_docs(app: FastAPI) -> None:
    """Swagger UI from the files of the swagger-ui-bundle-v2 package: no CDN, works with no network. The
    schema is FastAPI's for its routes plus PostRoutes' endpoints."""
    app.mount("/docs/assets", StaticFiles(directory=str(swagger_ui_path)), name="docs-assets")

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description,
                                 routes=app.routes)
            paths, schemas = post_paths()
            schema.setdefault("paths", {}).update(paths)
            schema.setdefault("components", {}).setdefault("schemas", {}).update(schemas)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented way to extend the schema

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url=app.openapi_url or "/openapi.json", title="教材问答 API",
                                   swagger_js_url="/docs/assets/swagger-ui-bundle.js",
                                   swagger_css_url="/docs/assets/swagger-ui.css",
                                   swagger_favicon_url="/docs/assets/favicon-32x32.png",
                                   swagger_ui_parameters={"validatorUrl": None})


def checked(pipeline: Pipeline, question: str, history: list[str], book: str | None) -> None:
    """Refuse what the pipeline should not even shorten: an unknown book, a question far too long."""
    if book is not None:
        find_book(pipeline.books, book)
    limit = QUESTION_FACTOR * pipeline.settings.answer.max_question_chars
    if len(history) > MAX_HISTORY:
        raise InputError(f"对话历史过长（{len(history)} 轮），请不超过 {MAX_HISTORY} 轮。")
    for text in (question, *history):
        if len(text) > limit:
            raise InputError(f"问题过长（{len(text)} 字），请控制在 {limit} 字以内（超过 "
                             f"{pipeline.settings.answer.max_question_chars} 字的部分不会被用来检索）。")


class Workers:
    """The request threads of one app, started and stopped with its lifespan (a test may serve it twice)."""

    def __init__(self) -> None:
        self.pool: ThreadPoolExecutor | None = None

    def start(self) -> None:
        self.pool = ThreadPoolExecutor(WORKER_THREADS, thread_name_prefix="rag-api")

    def stop(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=False, cancel_futures=True)
            self.pool = None

    async def run(self, fn: Callable[[], Any]) -> Any:
        if self.pool is None:  # served without its lifespan (no startup event): start on first use
            self.start()
        return await asyncio.get_running_loop().run_in_executor(self.pool, fn)


def replier(get: Callable[[], Pipeline], workers: Workers, traffic: Traffic) -> Replier:
    """`reply(work, quick=None)`: runs `work` on the Pipeline (which may load a rebuilt index) and serialises
    the reply. By default in a worker thread (`workers`, WORKER_THREADS of them): one hop, ~50 µs for the
    executor against anyio's ~120 µs (a sync FastAPI endpoint made three). Work that is `quick` on this
    pipeline (bounded CPU work, no LLM call: search, ask without an LLM) runs on the event loop itself when
    it is the only request being served (`traffic`): without the hop and the hand-over of the GIL between
    threads, a lone request is served ≈ 1.5 ms sooner (bench/api.py, 1 client). Requests that come
    meanwhile are read once it is done; with two or more at once, all go to the workers, so an LLM answer
    never stalls the other connections and a burst is served side by side."""

    def render(result: Any) -> Response:
        return result if isinstance(result, Response) else JSONResponse(result)

    async def reply(work: Callable[[Pipeline], Any], quick: Callable[[Pipeline], bool] | None = None) -> Response:
        if quick is not None:
            await asyncio.sleep(0)  # requests that arrived with this one start, and count, first
            if traffic.active == 1:
                pipeline = get()
                if quick(pipeline):
                    return render(work(pipeline))
        return await workers.run(lambda: render(work(get())))

    return reply


def no_llm(p: Pipeline) -> bool:
    """The answer is extractive: bounded CPU work, no call to an LLM server."""
    return not p.settings.llm.enabled


def always(_: Pipeline) -> bool:
    return True


def install_routes(app: FastAPI, reply: Replier) -> None:
    """The GET endpoints (the POST ones are PostRoutes'), each `async` with one hop to a worker thread."""

    @app.get("/healthz", summary="索引状态与模型")
    async def healthz() -> Response:
        return await reply(health_json)

    @app.get("/v1/models", summary="可用的“模型”：每本教材一个，另有一个表示全部教材")
    async def models() -> Response:
        return await reply(models_json)

    @app.get("/v1/books", summary="已载入的教材")
    async def books() -> Response:
        return await reply(lambda p: {"books": [book_json(b) for b in p.books]})

    @app.get("/v1/books/{book_id}/toc", summary="一本教材的目录")
    async def toc(book_id: str) -> Response:
        return await reply(lambda p: toc_json(find_book(p.books, book_id)))


def health_json(p: Pipeline) -> dict[str, Any]:
    s = p.status()
    return {"status": "stale" if s.stale else "ok", "model": DEFAULT_MODEL, "embedding_model": s.model,
            "chunks": s.chunks, "built_at": s.built_at, "corpus_checksum": s.corpus_checksum,
            "stale": s.stale, "stale_reason": s.stale_reason, "books": [b.id for b in p.books],
            "llm": p.settings.llm.enabled}


def models_json(p: Pipeline) -> dict[str, Any]:
    rows = [{"id": DEFAULT_MODEL, "title": "全部教材"}] + [{"id": b.id, "title": b.title} for b in p.books]
    return {"object": "list",
            "data": [{"object": "model", "created": 0, "owned_by": "jiaocai-wenda", **r} for r in rows]}


def search_reply(p: Pipeline, body: QuestionRequest) -> dict[str, Any]:
    checked(p, body.question, body.history, body.book)
    found = p.search(body.question, body.history, QueryParams(k=body.k, book=body.book))
    return search_json(body.question, found.hits)


def ask_reply(p: Pipeline, body: QuestionRequest) -> dict[str, Any]:
    checked(p, body.question, body.history, body.book)
    return answer_json(p.ask(body.question, body.history, QueryParams(passages=body.k, book=body.book)))


def chat_reply(p: Pipeline, body: ChatRequest) -> dict[str, Any] | StreamingResponse:
    question, history = split_messages(body.messages)
    book = book_of(body.model)
    checked(p, question, history[-MAX_HISTORY:], book)
    query = p.prepare(question, history[-MAX_HISTORY:])  # a bad question: a 400 before any stream
    params = QueryParams(book=book)
    if body.stream:
        return StreamingResponse(stream_events(p.answer_stream(query, params), body.model),
                                 media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
    return completion_json(p.answer(query, params), body.model)
