"""The MCP server (`python -m rag mcp`, stdio): the books as tools for an LLM client — search, ask with
citations, the books, a book's 目录, a section's text. Same Pipeline and JSON shapes as the CLI and the API.

Tools are plain functions (the SDK runs them in a worker thread); a domain error becomes the tool's error
result with its Chinese message.
"""

from __future__ import annotations

from typing import Any, Callable

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

from rag.api.books import book_json, cited_json, find_book, find_section, section_json, toc_json
from rag.errors import RagError
from rag.pipeline import Pipeline
from rag.schema import answer_json, search_json
from rag.types import QueryParams

INSTRUCTIONS = ("教材问答：在已载入的教材中检索与回答。回答中的 [n] 对应 citations 中的出处（章节、页码、原文），"
                "引用时请保留页码。先用 list_books 查看教材，read_toc 查看目录，read_section 阅读某一节原文。")
MAX_K = 50


def _book(pipeline: Pipeline, book: str | None) -> str | None:
    """None for every book ("" too); else a loaded book's id (ToolError otherwise)."""
    if not book:
        return None
    return find_book(pipeline.books, book).id


class Tools:
    """The tool functions over a Pipeline source (a loader: cheap after the first call)."""

    def __init__(self, get: Callable[[], Pipeline]) -> None:
        self.get = get

    def _run(self, fn: Callable[[Pipeline], dict[str, Any]]) -> dict[str, Any]:
        try:
            return fn(self.get())
        except RagError as exc:
            raise ToolError(str(exc)) from exc

    def search_books(self, question: str, k: int = 5, book: str | None = None) -> dict[str, Any]:
        """检索与问题最相关的教材段落（不生成回答）。返回 {"query", "hits": [{"rank", "chunk_id", "score", "text",
        "section", "page", …}]}。k：段落数（1–50）；book：只在这本教材中检索（list_books 的 id，留空为全部）。"""
        def run(p: Pipeline) -> dict[str, Any]:
            found = p.search(question, (), QueryParams(k=max(1, min(MAX_K, k)), book=_book(p, book)))
            return search_json(question, found.hits)
        return self._run(run)

    def ask(self, question: str, history: list[str] | None = None, book: str | None = None) -> dict[str, Any]:
        """回答关于教材的问题，每句都有出处。返回 {"question", "answer"（含 [n] 标记）, "refused", "mode",
        "citations": [{"n", "book", "section", "page", "quote", "chunk_id", …}]}。history：此前的提问（追问时用）。"""
        def run(p: Pipeline) -> dict[str, Any]:
            answer = p.ask(question, list(history or [])[-20:], QueryParams(book=_book(p, book)))
            out = answer_json(answer) | {"citations": cited_json(answer), "notices": list(answer.notices)}
            return out | ({"pointer": answer.pointer} if answer.pointer else {})
        return self._run(run)

    def list_books(self) -> dict[str, Any]:
        """已载入的教材：id、书名、版权页信息（主编、出版社、ISBN …）与目录条目数。"""
        return self._run(lambda p: {"books": [book_json(b) for b in p.books]})

    def read_toc(self, book: str) -> dict[str, Any]:
        """一本教材的目录：每章每节的编号、标题与起始页码。book：list_books 的 id。"""
        return self._run(lambda p: toc_json(find_book(p.books, book)))

    def read_section(self, book: str, section: str) -> dict[str, Any]:
        """阅读目录中一节的正文（已载入部分）。section：目录中的标题或编号，如「第一章」「第一章 › 第一节」或节的标题。
        返回 {"section", "page", "text", "passages": [{"chunk_id", "page", "text"}], "loaded"}。"""
        def run(p: Pipeline) -> dict[str, Any]:
            b = find_book(p.books, book)
            return section_json(b, find_section(b, section), p.index.chunks)
        return self._run(run)


def create_server(get: Callable[[], Pipeline]) -> MCPServer:
    server = MCPServer("jiaocai-wenda", title="教材问答", instructions=INSTRUCTIONS)
    tools = Tools(get)
    for fn in (tools.search_books, tools.ask, tools.list_books, tools.read_toc, tools.read_section):
        server.add_tool(fn, name=fn.__name__, description=fn.__doc__, structured_output=True)
    return server
