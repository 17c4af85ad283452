"""`python -m rag mcp` driven by the MCP SDK's own stdio client: the tools, their JSON, their errors."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import anyio
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client

from rag.api.books import cited_json
from rag.schema import answer_json, search_json
from rag.types import QueryParams

ROOT = Path(__file__).resolve().parent.parent
BOOK = "qunzhong-gongzuo-excerpt"
TOOLS = {"search_books", "ask", "list_books", "read_toc", "read_section"}


def run_session(index_dir: Path, calls: list[tuple[str, dict]]) -> tuple[set[str], list]:
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")}
    env |= {"RAG_INDEX_DIR": str(index_dir), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    params = StdioServerParameters(command=sys.executable, args=["-m", "rag", "mcp"], env=env, cwd=ROOT)

    async def main() -> tuple[set[str], list]:
        with open(os.devnull, "w") as errlog:
            async with stdio_client(params, errlog=errlog) as (read, write):
                async with ClientSession(read, write) as session:
                    with anyio.fail_after(120):
                        await session.initialize()
                        tools = {t.name for t in (await session.list_tools()).tools}
                        results = [await session.call_tool(name, args) for name, args in calls]
        return tools, results

    return anyio.run(main)


def payload(result) -> dict:
    assert not result.is_error, result.content
    if result.structured_content is not None:
        return result.structured_content
    return json.loads(result.content[0].text)


def test_the_tools_answer_like_the_pipeline(built, pipeline) -> None:
    q = "群众工作的核心是什么？"
    calls = [("search_books", {"question": q, "k": 3}), ("ask", {"question": q}),
             ("ask", {"question": "它的出发点和落脚点是什么？", "history": ["什么是党的群众工作？"], "book": BOOK}),
             ("list_books", {}), ("read_toc", {"book": BOOK}),
             ("read_section", {"book": BOOK, "section": "第一章 › 第一节"}),
             ("ask", {"question": "   "}), ("search_books", {"question": "群众工作", "book": "no-such-book"}),
             ("read_section", {"book": BOOK, "section": "第一节"})]
    tools, results = run_session(built.index_dir, calls)
    assert tools == TOOLS
    assert payload(results[0]) == search_json(q, pipeline.search(q, (), QueryParams(k=3)).hits)
    answer = pipeline.ask(q)
    out = payload(results[1])
    assert out["answer"] == answer.text and out["citations"] == cited_json(answer)
    assert [c["n"] for c in out["citations"]] == [c["n"] for c in answer_json(answer)["citations"]]
    follow = payload(results[2])
    assert follow["citations"] and "出发点" in follow["answer"]
    assert [b["id"] for b in payload(results[3])["books"]] == [BOOK]
    assert payload(results[4])["toc"][1]["number"] == "第一节"
    section = payload(results[5])
    assert section["section"].startswith("第一节") and section["loaded"] and "群众工作" in section["text"]
    assert all(p["chunk_id"] and p["text"] for p in section["passages"])
    for bad, words in ((results[6], "请输入问题"), (results[7], "没有编号为"), (results[8], "多个章节")):
        assert bad.is_error and words in bad.content[0].text, bad.content


def test_sections_are_found_by_heading_title_or_path(pipeline) -> None:
    import pytest

    from rag.api.books import find_book, find_section
    from rag.errors import InputError

    book = find_book(pipeline.books, BOOK)
    first = book.toc[1]  # 第一章 › 第一节
    for name in ("第一章 › 第一节", "第一章第一节", "第一章/第一节", first.title, first.heading):
        assert find_section(book, name) == first, name
    assert find_section(book, "第一章").level == 1
    for bad in ("第一节", "", "第九十九章", "a › b › c"):
        with pytest.raises(InputError):
            find_section(book, bad)
