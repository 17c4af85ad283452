"""The JSON shapes of hits, citations and answers: one definition for the CLI (`--json`) and the HTTP API.

Other tools rely on these fields; add fields, never rename or drop one.
- search: {"query", "hits": [{"rank", "chunk_id", "score", "text", "section", "page", "page_end",
  "page_estimated", "kind", "source", "book"}]}
- ask: {"question", "answer", "refused", "mode", "citations": [{"n", "chunk_id", "quote", "text", "section",
  "page", "page_end", "page_estimated", "source", "score", "book"}]}
`section` is the full path joined by " › ". A batch line that cannot be asked keeps its place with an "error".
"""

from __future__ import annotations

from typing import Any

from rag.types import Answer, Citation, Hit


def hit_json(hit: Hit) -> dict[str, Any]:
    c = hit.chunk
    return {"rank": hit.rank, "chunk_id": c.id, "score": round(hit.score, 6), "text": c.text,
            "section": c.section_path, "page": c.page, "page_end": c.page_end,
            "page_estimated": c.page_estimated, "kind": c.kind, "source": c.source, "book": c.book}


def search_json(question: str, hits: tuple[Hit, ...] | list[Hit]) -> dict[str, Any]:
    return {"query": question, "hits": [hit_json(h) for h in hits]}


def search_error_json(question: str, error: str) -> dict[str, Any]:
    return {"query": question, "hits": [], "error": error}


def citation_json(c: Citation) -> dict[str, Any]:
    ch = c.chunk
    return {"n": c.n, "chunk_id": ch.id, "quote": c.quote, "text": ch.text, "section": ch.section_path,
            "page": ch.page, "page_end": ch.page_end, "page_estimated": ch.page_estimated,
            "source": ch.source, "score": round(c.score, 6), "book": ch.book}


def answer_json(answer: Answer) -> dict[str, Any]:
    return {"question": answer.question, "answer": answer.text, "refused": answer.refused,
            "mode": answer.mode, "citations": [citation_json(c) for c in answer.citations]}


def answer_error_json(question: str, error: str) -> dict[str, Any]:
    return {"question": question, "answer": "", "refused": False, "mode": "extractive", "citations": [],
            "error": error}
