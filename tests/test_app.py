"""The chat page (app.py) under Streamlit's AppTest, on the real index of corpus/, plus its pure render helpers.

AppTest runs the script in this process, so the page's @st.cache_resource Pipeline is loaded once for the module
and reuses the embedder already loaded by the session fixtures (rag.embed caches it per process).
"""

from __future__ import annotations

import html
import json
import re
import threading
from html.parser import HTMLParser
from pathlib import Path

import pytest
from hypothesis import given, settings as hsettings, strategies as hst
from markdown_it import MarkdownIt
from streamlit.testing.v1 import AppTest

from rag import render
from rag.render import Turn
from rag.types import Answer, Chunk, Citation, TocEntry

APP = Path(__file__).resolve().parent.parent / "app.py"
PAGE = re.compile(r"(约)?第\d+(–\d+)?页|版权页|目录|序言|封面")


# --- pure helpers --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("page", "end", "estimated", "label"),
    [
        ("3", "3", False, "第3页"),
        ("3", None, True, "约第3页"),
        ("3", "4", False, "第3–4页"),
        ("12", "13", True, "约第12–13页"),
        ("版权页", "版权页", False, "版权页"),
        ("目录", None, False, "目录"),
        ("iv", "iv", False, "第iv页"),
        (None, None, False, "页码不详"),
    ],
)
def test_page_label(page: str | None, end: str | None, estimated: bool, label: str) -> None:
    assert render.page_label(page, end, estimated) == label


def _markdown_text(source: str) -> tuple[str, set[str]]:
    """What a CommonMark renderer shows for `source`: the visible text, and every tag it produced."""
    out = MarkdownIt("commonmark").render(source)
    tags = set(re.findall(r"<(\w+)", out))
    text = html.unescape(re.sub(r"<[^>]+>", "", out.replace("<br />\n", "\n")))
    return text.strip(), tags


HOSTILE = [
    "<script>alert(1)</script>",
    '<img src=x onerror=alert(1)>',
    "[点我](javascript:alert(1)) ![图](http://example.com/x.png)",
    "    缩进的一行\n# 标题\n> 引用\n1. 列表\n- 列表",
    "**粗** _斜_ `代码` ~~删~~ :red[红] $x^2$ &lt; &amp; \\[1\\]",
]


@pytest.mark.parametrize("text", HOSTILE)
def test_escape_markdown_renders_text_only(text: str) -> None:
    shown, tags = _markdown_text(render.escape_markdown(text))
    assert tags <= {"p", "br"}, tags
    assert shown == "\n".join(line.strip() for line in text.splitlines())


@hsettings(max_examples=200, deadline=None)
@given(hst.text(alphabet=hst.characters(codec="utf-8", exclude_categories=("Cs", "Cc", "Zl", "Zp")), max_size=60))
def test_escape_markdown_is_inert_for_any_line(text: str) -> None:
    shown, tags = _markdown_text(render.escape_markdown(text))
    assert tags <= {"p", "br"}, (text, tags)
    assert shown == text.strip()


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.text: list[str] = []
        self.marked: list[str] = []
        self._in_mark = False

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self._in_mark = self._in_mark or tag == "mark"

    def handle_endtag(self, tag):
        self._in_mark = self._in_mark and tag != "mark"

    def handle_data(self, data):
        self.text.append(data)
        if self._in_mark:
            self.marked.append(data)


@pytest.mark.parametrize("evil", HOSTILE)
def test_highlight_html_marks_the_quote_and_escapes_everything(evil: str) -> None:
    quote = "群众工作的核心是正确处理人民内部矛盾。"
    text = f"前文{evil}。{quote}后文<b>x</b>"
    parser = _Tags()
    parser.feed(render.highlight_html(text, quote))
    assert set(parser.tags) <= {"div", "mark", "br"}
    assert parser.tags.count("mark") == 1
    assert "".join(parser.marked) == quote
    assert "".join(parser.text) == text.replace("\n", "")


def test_highlight_html_finds_a_quote_across_a_line_break() -> None:
    parser = _Tags()
    parser.feed(render.highlight_html("党的群众\n工作是基础。", "党的群众工作是基础。"))
    assert "".join(parser.marked) == "党的群众工作是基础。"
    parser = _Tags()
    parser.feed(render.highlight_html("没有这句话。", "别的句子"))
    assert "mark" not in parser.tags


def _chunk(text: str, section: tuple[str, ...], page: str = "1", ordinal: int = 0) -> Chunk:
    return Chunk(id=f"id{ordinal}", source="b.txt", kind="body", section=section, text=text, start=0,
                 end=len(text), page=page, page_end=page, page_estimated=True, ordinal=ordinal)


def test_section_chunks_needs_the_chapter_of_a_section() -> None:
    ch1, ch2 = "第一章 做好群众工作是中国共产党人的 历史责任", "第二章 群众工作的新形势新任务新特点"
    chunks = [_chunk("甲", (ch1, "第一节 党的群众工作的地位与作用"), "1", 0),
              _chunk("乙", (ch2, "第一节 群众工作的新形势"), "28", 1),
              _chunk("丙", (ch1, "第一节 党的群众工作的地位与作用", "二、群众工作的历史地位"), "5", 2)]
    entry = TocEntry(2, "第一节", "党的群众工作的地位与作用", "1", parent="第一章 做好群众工作是中国共产党人的历史责任")
    found = render.section_chunks(chunks, entry)
    assert [c.text for c in found] == ["甲", "丙"]
    assert render.span_label(found) == "约第1–5页"
    assert [c.text for c in render.section_chunks(chunks, TocEntry(1, "第二章", "群众工作的新形势新任务新特点", "28"))] == ["乙"]


def test_export_markdown_lists_answers_and_citations() -> None:
    c = _chunk("党的群众工作，是党的事业生根的基础。", ("第一章 群众工作", "第一节 地位"), "3")
    answer = Answer("问?", "是基础[1]。", (Citation(1, c, "是党的事业生根的基础。", 0.9),), "extractive")
    refused = Answer("天气", "书中没有相关内容。", (), "extractive", refused=True, pointer="第五章（第99页）")
    md = render.export_markdown([Turn("什么是*群众工作*？", answer), Turn("天气", refused), Turn("x", error="出错")],
                                "做好新形势下的群众工作")
    assert md.startswith("# 做好新形势下的群众工作 — 对话记录")
    assert "什么是\\*群众工作\\*？" in md and "是基础\\[1\\]。" in md
    assert "\\[1\\] 第一章 群众工作 › 第一节 地位 · 约第3页：“是党的事业生根的基础。”" in md
    assert "（未找到依据）" in md and "第五章（第99页）" in md and "出错" in md


def test_append_feedback_keeps_whole_lines_under_concurrency(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "feedback.jsonl"
    c = _chunk("甲" * 2000, ("第一章",))
    turn = Turn("问" * 3000, Answer("问", "答" * 5000, (Citation(1, c, "甲", 1.0),), "extractive"))

    def write(n: int) -> None:
        for _ in range(20):
            render.append_feedback(path, render.feedback_record(turn, n % 2))

    threads = [threading.Thread(target=write, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    rows = [json.loads(line) for line in path.read_text("utf-8").splitlines()]
    assert len(rows) == 80
    assert all(r["chunk_ids"] == ["id0"] and r["question"] == "问" * 3000 for r in rows)


# --- the page --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def feedback_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("app") / "feedback.jsonl"


@pytest.fixture
def page_env(built, feedback_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The page reads Settings.from_env(): point it at the session's real index, with no LLM configured."""
    for name in ("RAG_CORPUS", "RAG_MODEL", "RAG_LLM_BASE_URL", "RAG_LLM_MODEL", "RAG_LLM_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("RAG_INDEX_DIR", str(built.index_dir))
    monkeypatch.setenv("RAG_FEEDBACK_PATH", str(feedback_path))
    return built


def _page() -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=180)
    at.run()
    assert not at.exception, at.exception
    return at


def _ask(at: AppTest, question: str) -> AppTest:
    at.chat_input[0].set_value(question).run()
    assert not at.exception, at.exception
    return at


def _turns(at: AppTest) -> list[Turn]:
    return list(at.session_state["turns"])


def _markdown(at: AppTest) -> list[str]:
    return [m.value for m in at.markdown]


def test_empty_page_shows_the_book_and_example_questions(page_env) -> None:
    at = _page()
    text = "\n".join(_markdown(at))
    assert "做好新形势下的群众工作" in text and "李景田" in text and "出版社" in text
    examples = [b for b in at.button if b.key and b.key.startswith("example-")]
    assert 4 <= len(examples) <= 6
    examples[0].click().run()
    assert not at.exception
    assert [t.question for t in _turns(at)] == [examples[0].label]
    assert at.session_state["turns"][0].answer is not None
