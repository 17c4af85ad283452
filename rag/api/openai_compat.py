"""OpenAI-compatible chat completions: the request model, the response and its SSE chunks.

A completion's text is the answer with its [n] markers; its sources travel in extra top-level fields that
OpenAI clients ignore: "citations" (rag/schema.py `citation_json` plus "book") and "rag" (mode, refusal,
notices, the 目录 pointer). A streamed completion is OpenAI's chat.completion.chunk events ending with
`data: [DONE]`; the last chunk before it carries the same extra fields and the verified answer text.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from typing import Any, Iterable, Iterator, Literal

from pydantic import BaseModel, ConfigDict, Field

from rag.api.books import cited_json
from rag.errors import InputError, LLMError
from rag.types import Answer

DEFAULT_MODEL = "jiaocai-wenda"  # the model id meaning every loaded book ("all" works too)
ALL_BOOKS = (DEFAULT_MODEL, "all")
MAX_MESSAGES = 64
log = logging.getLogger("rag.api")


class TextPart(BaseModel):
    model_config = ConfigDict(extra="ignore")
    type: str = "text"
    text: str = ""


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[TextPart] | None = None

    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(p.text for p in self.content if p.type == "text")
        return self.content or ""


class ChatRequest(BaseModel):
    """The fields we use; every other OpenAI parameter (temperature, max_tokens …) is accepted and ignored."""

    model_config = ConfigDict(extra="ignore")
    model: str = DEFAULT_MODEL
    messages: list[ChatMessage] = Field(min_length=1, max_length=MAX_MESSAGES)
    stream: bool = False


def split_messages(messages: list[ChatMessage]) -> tuple[str, list[str]]:
    """(question, history): the last user message is the question, the earlier user turns its history."""
    users = [m.text() for m in messages if m.role == "user"]
    if not users:
        raise InputError("messages 中没有用户提问（role 为 \"user\" 的消息）。")
    if messages[-1].role != "user":
        raise InputError("最后一条消息应是用户的提问（role 为 \"user\"）。")
    return users[-1], users[:-1]


def book_of(model: str) -> str | None:
    """The book a model id names; None for every book."""
    return None if model in ALL_BOOKS else model


def content_text(answer: Answer) -> str:
    """What the assistant says: the answer with its markers, and for a refusal the 目录 entry to read."""
    return answer.text + (f"\n\n可参阅{answer.pointer}" if answer.pointer else "")


def extra_fields(answer: Answer) -> dict[str, Any]:
    return {"citations": cited_json(answer),
            "rag": {"question": answer.question, "mode": answer.mode, "refused": answer.refused,
                    "notices": list(answer.notices), "pointer": answer.pointer,
                    "resolved_question": answer.resolved_question}}


def new_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex}"


def completion_json(answer: Answer, model: str) -> dict[str, Any]:
    return {"id": new_id(), "object": "chat.completion", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                         "message": {"role": "assistant", "content": content_text(answer), "refusal": None}}],
            **extra_fields(answer)}


def chunk_json(cid: str, created: int, model: str, delta: dict[str, Any], finish: str | None = None,
               **extra: Any) -> dict[str, Any]:
    return {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}], **extra}


def sse(data: dict[str, Any] | str) -> str:
    return f"data: {data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)}\n\n"


def error_json(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


def stream_events(items: Iterable[str | Answer], model: str) -> Iterator[str]:
    """SSE events for an answer stream (text pieces while an LLM writes, then the Answer). When what was
    streamed is not the verified answer (a fallback, renumbered markers), the verified text follows it."""
    cid, created = new_id(), int(time.time())
    yield sse(chunk_json(cid, created, model, {"role": "assistant", "content": ""}))
    streamed: list[str] = []
    try:
        for item in items:
            if isinstance(item, Answer):
                text, said = content_text(item), "".join(streamed)
                if not said:
                    yield sse(chunk_json(cid, created, model, {"content": text}))
                elif text != said:
                    note = item.notices[-1] if item.notices else "核实后的回答"
                    yield sse(chunk_json(cid, created, model, {"content": f"\n\n（{note}）\n{text}"}))
                yield sse(chunk_json(cid, created, model, {}, "stop", answer=text, **extra_fields(item)))
            elif item:
                streamed.append(item)
                yield sse(chunk_json(cid, created, model, {"content": item}))
    except LLMError as exc:
        yield sse(error_json("llm_error", str(exc)))
    except Exception as exc:  # headers are sent: the client learns of it in the stream, never a traceback
        log.error("回答流中断", exc_info=exc)
        yield sse(error_json("internal_error", "服务器内部错误，回答未完成。请稍后重试。"))
    yield sse("[DONE]")
