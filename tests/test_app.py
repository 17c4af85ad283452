"""The chat page (app.py) under AppTest on the real index of corpus/, plus its pure render helpers.

AppTest runs the script in this process, so the page's @st.cache_resource Pipeline is loaded once per settings
and reuses the embedder already loaded by the session fixtures (rag.model.embed caches it per process).
"""

from __future__ import annotations

import html
import json
import re
import shutil
import threading
from html.parser import HTMLParser
from pathlib import Path

import pytest
from hypothesis import given, settings as hsettings, strategies as hst
from markdown_it import MarkdownIt
from streamlit.testing.v1 import AppTest

from rag import render
from rag.retrieve.query import EMPTY_MESSAGE
from rag.render import Turn
from rag.types import Answer, Chunk, Citation, TocEntry

from page_helpers import APP, point_page_at
from page_helpers import ask as _ask
from page_helpers import open_page as _page

PAGE = re.compile(r"(约)?第\d+(–\d+)?页|版权页|目录|序言|封面")


# --- pure helpers ---------------------------------------------------------------------------------


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


LINE_CHARS = hst.characters(codec="utf-8", exclude_categories=("Cs", "Cc", "Zl", "Zp"))


@hsettings(max_examples=200, deadline=None)
@given(hst.text(alphabet=LINE_CHARS, max_size=60))
def test_escape_markdown_is_inert_for_any_line(text: str) -> None:
    shown, tags = _markdown_text(render.escape_markdown(text))
    assert tags <= {"p", "br"}, (text, tags)
    assert shown == render.visible(text).strip()  # bidi controls are not shown


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
    chapter2 = TocEntry(1, "第二章", "群众工作的新形势新任务新特点", "28")
    assert [c.text for c in render.section_chunks(chunks, chapter2)] == ["乙"]


def test_reading_text_drops_the_overlap_between_chunks() -> None:
    doc = "第一句。第二句。第三句。第四句。"
    spans = [(0, 8), (4, 12), (8, 16)]  # each chunk repeats the last sentence of the one before
    chunks = [Chunk(id=f"c{i}", source="b.txt", kind="body", section=("第一章",), text=doc[a:b], start=a,
                    end=b, page="1", page_end="1", page_estimated=False, ordinal=i)
              for i, (a, b) in enumerate(spans)]
    assert "".join(text for _, text in render.reading_text(chunks)) == doc
    assert [text for _, text in render.reading_text(chunks[1:2])] == ["第二句。第三句。"]


def test_context_around_shows_what_the_card_does_not() -> None:
    doc = "第一句。第二句。第三句。第四句。"
    spans = [(0, 8), (4, 12), (8, 16)]
    a, b, c = [Chunk(id=f"c{i}", source="b.txt", kind="body", section=("第一章",), text=doc[s:e], start=s, end=e,
                     page=str(i + 1), page_end=str(i + 1), page_estimated=False, ordinal=i)
               for i, (s, e) in enumerate(spans)]
    assert render.context_around(b, (c, a)) == [("上文", a, "第一句。"), ("下文", c, "第四句。")]
    assert render.context_around(a, (b,)) == [("下文", b, "第三句。")]


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


# --- the page -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def feedback_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("app") / "feedback.jsonl"


@pytest.fixture
def page_env(built, feedback_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The page reads Settings.from_env(): point it at the session's real index, with no LLM configured."""
    point_page_at(monkeypatch, built.index_dir, feedback_path)
    return built


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


def _cards(at: AppTest) -> list[str]:
    """Source-card headings: 「**[n]** section path · **page**」."""
    return [v for v in _markdown(at) if re.match(r"\*\*\[\d+\]\*\* ", v)]


def test_question_renders_answer_and_source_cards_with_section_and_page(page_env) -> None:
    at = _ask(_page(), "什么是党的群众工作？")
    (turn,) = _turns(at)
    answer = turn.answer
    assert answer is not None and not answer.refused and answer.citations
    assert render.escape_markdown(answer.text) in _markdown(at)
    assert "[1]" in answer.text
    cards = _cards(at)
    assert len(cards) == len(answer.citations)
    for card, c in zip(cards, answer.citations):
        assert card.startswith(f"**[{c.n}]** ")
        assert render.escape_markdown(c.chunk.section_path) in card
        assert PAGE.search(card) and c.chunk.page in card
    passages = [h.proto.body for h in at.get("html") if "rag-passage" in h.proto.body]
    assert len(passages) == len(answer.citations)
    for body, c in zip(passages, answer.citations):
        marked = re.search(r"<mark>(.*?)</mark>", body, re.S)
        assert marked and html.unescape(marked.group(1).replace("<br>", "\n")).replace("\n", "") == \
            c.quote.replace("\n", "")
    expanders = [e for e in at.expander if e.label == "前后文"]
    assert len(expanders) == len(answer.citations)
    assert not [cap for e in expanders for cap in e.caption]  # made only when opened
    for c in answer.citations:
        at.session_state[f"feedback-0-0-context-{c.n}"] = True
    at.run()
    expanders = [e for e in at.expander if e.label == "前后文"]
    context = [cap.value for e in expanders for cap in e.caption]
    assert any(v.startswith(("上文 · ", "下文 · ")) and PAGE.search(v) for v in context)
    assert at.feedback and at.session_state["turns"] == [turn]


@pytest.mark.parametrize(("question", "pointer"), [("红烧肉怎么做？", None), ("网络群工怎么开展？", "第六章")])
def test_refusal_looks_like_a_refusal(page_env, question: str, pointer: str | None) -> None:
    at = _ask(_page(), question)
    (turn,) = _turns(at)
    assert turn.answer is not None and turn.answer.refused
    (warning,) = [w.value for w in at.warning]
    assert warning.startswith("**未能从书中找到依据。**")
    if pointer:
        assert "可参阅目录" in warning and pointer in warning
    assert render.escape_markdown(turn.answer.text) not in _markdown(at)  # not shown like an answer
    assert not _cards(at)


@pytest.mark.parametrize("question", ["", "   \t  "])
def test_empty_or_blank_input_is_refused_without_a_turn(page_env, question: str) -> None:
    at = _ask(_page(), question)
    assert _turns(at) == [] and not at.chat_message
    assert [w.value for w in at.warning] == [render.escape_markdown(EMPTY_MESSAGE)]
    assert not at.error


def test_notices_are_shown_above_the_answer(page_env) -> None:
    at = _ask(_page(), "什麼是黨的群眾工作？" + "請詳細說明。" * 100)
    (turn,) = _turns(at)
    assert turn.answer is not None and not turn.answer.refused
    assert [i.value for i in at.info] == ["已将繁体字转换为简体字后检索。",
                                          "输入过长（610 字），已截取其中的问句：什麼是黨的群眾工作？"]


def test_followup_uses_the_previous_question(page_env) -> None:
    at = _ask(_page(), "什么是党的群众工作？")
    _ask(at, "它的出发点和落脚点是什么？")
    first, second = _turns(at)
    a = second.answer
    assert a is not None and not a.refused
    assert a.resolved_question and "群众工作" in a.resolved_question
    assert any("出发点和落脚点" in c.quote for c in a.citations)
    assert f"结合上文理解为：{render.escape_markdown(a.resolved_question)}" in [c.value for c in at.caption]
    assert len(at.chat_message) == 4  # the first exchange is still on the page


def test_export_holds_the_conversation_with_citations(page_env) -> None:
    at = _ask(_page(), "群众工作的核心是什么？")
    _ask(at, "这本书的主编是谁？")
    export = at.session_state["export_md"]
    (button,) = at.get("download_button")
    assert not button.proto.disabled and button.proto.label.startswith("导出对话")
    assert export.startswith("# 《做好新形势下的群众工作》 — 对话记录")
    for turn in _turns(at):
        assert turn.answer is not None
        assert render.escape_markdown(turn.question) in export
        assert render.escape_markdown(turn.answer.text) in export
        for c in turn.answer.citations:
            assert render.escape_markdown(render.citation_line(c)) in export
    assert "李景田" in export and "版权页" in export


def test_feedback_is_appended_with_question_answer_and_chunk_ids(page_env, feedback_path: Path) -> None:
    at = _ask(_page(), "群众工作的核心是什么？")
    before = feedback_path.read_text("utf-8").splitlines() if feedback_path.exists() else []
    at.feedback[0].set_value(1).run()
    assert not at.exception
    rows = [json.loads(line) for line in feedback_path.read_text("utf-8").splitlines()]
    assert len(rows) == len(before) + 1
    (turn,) = _turns(at)
    assert turn.answer is not None
    assert rows[-1]["rating"] == 1 and rows[-1]["question"] == "群众工作的核心是什么？"
    assert rows[-1]["answer"] == turn.answer.text
    assert rows[-1]["chunk_ids"] == [c.chunk.id for c in turn.answer.citations]


def test_sidebar_toc_opens_a_section_and_status_is_shown(page_env) -> None:
    at = _page()
    assert not [b for b in at.sidebar.button if b.key and b.key.startswith("toc-")]  # made only when opened
    at.session_state["toc-open"] = at.session_state["status-open"] = True
    at.run()
    toc = [b for b in at.sidebar.button if b.key and b.key.startswith("toc-")]
    assert len(toc) >= 30 and toc[0].label.startswith("第一章")
    toc[1].click().run()  # 第一章 › 第一节, whose text is in the shipped excerpt
    assert not at.exception
    assert [s.value for s in at.subheader] == ["第一节 党的群众工作的地位与作用"]
    captions = [c.value for c in at.caption]
    assert any(c.startswith("目录标注第1页 · 收录文本：") and PAGE.search(c) for c in captions)
    assert any("党的群众工作的基本概念和内涵" in m.value for m in at.markdown)
    chapter6 = next(b for b in toc if b.label.startswith("第六章"))
    chapter6.click().run()
    assert [s.value for s in at.subheader] == ["第六章 开拓“网络群工”是新手段"]
    assert [i.value for i in at.info] == ["本节正文不在已收录的文本中。"]
    status = "\n".join(m.value for m in at.sidebar.markdown)
    assert "段落数：" in status and "语料校验和" in status
    assert "索引与 corpus/ 一致。" in [c.value for c in at.sidebar.caption]


def test_new_conversation_clears_the_page(page_env) -> None:
    at = _ask(_page(), "群众工作的核心是什么？")
    next(b for b in at.sidebar.button if b.label == "新对话").click().run()
    assert _turns(at) == [] and not at.chat_message
    assert any(b.key and b.key.startswith("example-") for b in at.button)


def test_missing_index_names_the_rebuild_command(page_env, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("RAG_INDEX_DIR", str(tmp_path / "empty"))
    (tmp_path / "empty").mkdir()
    at = AppTest.from_file(str(APP), default_timeout=180)
    at.run()
    assert not at.exception
    (error,) = [e.value for e in at.error]
    assert error.startswith("索引不可用") and render.escape_markdown(str(tmp_path / "empty")) in error
    assert [c.value for c in at.code] == [f".venv/bin/python -m rag build --index {tmp_path / 'empty'}"]
    assert not at.chat_input  # no page to talk to


def _first_sentence_of_passage_1(body: dict) -> str:
    from fake_llm import user_content

    passage = re.search(r'<passage n="1"[^>]*>\n(.*?)\n</passage>', user_content(body), re.S)
    if passage is None:  # would be a bug of the prompt; answer something the verifier cannot support
        return "没有编号段落。"
    sentences = re.findall(r"[^。！？；\n]+[。！？；]", passage.group(1)) or [passage.group(1)]
    return max(sentences, key=len)


@pytest.fixture
def fake_llm(page_env, monkeypatch: pytest.MonkeyPatch):
    from fake_llm import FakeLLM, Script

    # sentence 1 quotes passage 1 (kept); sentence 2 is made up and cites passage 2 (flagged)
    llm = FakeLLM(Script(reply=lambda body: f"{_first_sentence_of_passage_1(body)}[1]月球表面布满了奶酪和巧克力。[2]"))
    monkeypatch.setenv("RAG_LLM_BASE_URL", llm.start())
    monkeypatch.setenv("RAG_LLM_MODEL", "fake-qwen")
    yield llm
    llm.stop()


def test_llm_mode_streams_and_shows_flagged_citations(fake_llm) -> None:
    at = _page()
    assert at.sidebar.radio(key="mode").options == ["抽取式（只摘录原文）", "大模型生成（引用经核实）"]
    at.sidebar.radio(key="mode").set_value("llm").run()
    at.sidebar.slider(key="passages").set_value(3).run()
    _ask(at, "群众工作的核心是什么？")
    assert len(fake_llm.requests) == 1 and fake_llm.requests[0]["body"].get("stream") is True
    from fake_llm import user_content

    assert user_content(fake_llm.requests[0]["body"]).count("<passage n=") == 3  # the slider's value
    (turn,) = _turns(at)
    a = turn.answer
    assert a is not None and a.mode == "llm" and not a.refused
    assert render.escape_markdown(a.text) in _markdown(at)
    flagged = [c for c in a.citations if c.flagged]
    assert flagged and any(not c.flagged for c in a.citations)
    cards = _cards(at)
    assert sum("未能核实此引用" in card for card in cards) == len(flagged)


def test_llm_failure_falls_back_with_a_notice_and_keeps_the_conversation(fake_llm) -> None:
    at = _page()
    at.sidebar.radio(key="mode").set_value("llm").run()
    fake_llm.script.mode = "error500"
    _ask(at, "群众工作的核心是什么？")
    fake_llm.script.mode = "ok"
    _ask(at, "什么是“大群工”？")
    first, second = _turns(at)
    assert first.answer is not None and first.answer.mode == "extractive" and first.answer.citations
    assert any("已改用摘录式回答" in i.value for i in at.info)
    assert second.answer is not None and second.answer.mode == "llm"
    assert len(at.chat_message) == 4


def test_card_heading_and_time_format() -> None:
    c = _chunk("甲乙丙。", ("第一章 群众工作", "第一节 地位"), "3")
    assert render.card_heading(Citation(2, c, "甲乙丙。", 0.5)) == "**[2]** 第一章 群众工作 › 第一节 地位 · **约第3页**"
    flagged = render.card_heading(Citation(3, c, "甲乙丙。", 0.0, flagged=True))
    assert flagged.endswith(":orange[:material/warning: 未能核实此引用]")
    toc = Chunk(id="t", source="b.txt", kind="toc", section=("目录",), text="第一章", start=0, end=3, page="目录",
                page_end="目录", page_estimated=False)
    assert render.card_heading(Citation(1, toc, "第一章", 1.0)) == "**[1]** **目录**"
    assert render.format_time("2026-11-28T23:29:18+00:00") == "2026-11-28 23:29 UTC"
    assert render.format_time("昨天") == "昨天"


def test_stale_index_still_answers_and_says_how_to_rebuild(page_env, tmp_path: Path, monkeypatch) -> None:
    corpus = tmp_path / "corpus"
    shutil.copytree(page_env.corpus[0], corpus)
    book = next(corpus.glob("*.txt"))
    book.write_text(book.read_text("utf-8") + "\n新增的一段话。\n", "utf-8")
    monkeypatch.setenv("RAG_CORPUS", str(corpus))
    at = _ask(_page(), "群众工作的核心是什么？")
    (warning,) = [w.value for w in at.main.warning]
    assert warning.startswith("索引与语料不一致（语料已变化：修改 ")
    (command,) = [c.value for c in at.main.code]
    assert command == f".venv/bin/python -m rag build --index {page_env.index_dir} --corpus {corpus}"
    assert "索引已过期" in at.sidebar.warning[0].value
    assert _turns(at)[0].answer is not None and _turns(at)[0].answer.citations


@pytest.mark.parametrize("page", [APP, APP.parent / "pages" / "1_练习.py", APP.parent / "pages" / "2_教师视图.py"],
                         ids=["chat", "practice", "teacher"])
def test_corrupt_index_names_the_file_and_the_command(page_env, tmp_path: Path, monkeypatch, page: Path) -> None:
    index = tmp_path / "index"
    shutil.copytree(page_env.index_dir, index)
    chunks = index / "chunks.json"
    chunks.write_bytes(chunks.read_bytes()[:100])
    monkeypatch.setenv("RAG_INDEX_DIR", str(index))
    monkeypatch.delenv("RAG_TEACHER_PASSWORD", raising=False)
    at = AppTest.from_file(str(page), default_timeout=180)
    at.run()
    assert not at.exception
    (error,) = [e.value for e in at.error]
    assert error.startswith("索引不可用") and render.escape_markdown(str(chunks)) in error
    assert [c.value for c in at.code] == [f".venv/bin/python -m rag build --index {index}"]
