"""教材问答 — the Streamlit chat page: ask the book, read the answer, open the cited page.

Thin on purpose: one cached, read-only Pipeline shared by every session (the same object the CLI uses), the
conversation in st.session_state, and rendering rules from rag/render.py. Book and user text are shown only
through escaped Markdown (`md`) or escaped HTML (`render.highlight_html`), never as markup.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import streamlit as st

from rag.config import Settings, offline_environment

offline_environment()  # before anything imports huggingface_hub / transformers: no model hub, ever

from rag import render  # noqa: E402
from rag.errors import REBUILD_COMMAND, IndexError_, InputError, ModelError, RagError  # noqa: E402
from rag.store.index import manifest_stamp, rebuild_command  # noqa: E402
from rag.pipeline import IndexStatus, Pipeline  # noqa: E402
from rag.retrieve.query import prepare  # noqa: E402
from rag.render import Turn, escape_markdown as md  # noqa: E402
from rag.types import Answer, Citation, TocEntry  # noqa: E402

log = logging.getLogger("rag.app")

EXAMPLES = (  # answerable from the shipped excerpt (see tests/data/questions.jsonl)
    "什么是党的群众工作？",
    "群众工作的核心是什么？",
    "群众工作的作用有哪些？",
    "什么是“大群工”？",
    "这本书的主编是谁？",
    "第六章从第几页开始？",
)
MODES = {"extractive": "抽取式（只摘录原文）", "llm": "大模型生成（引用经核实）"}
PASSAGE_CSS = """<style>
.rag-passage {line-height: 1.8; white-space: normal;}
.rag-passage mark {background: #fde68a; padding: 0 .1em; border-radius: 2px;}
</style>"""
TOC_CSS = """<style>
.st-key-toc button {justify-content: flex-start; text-align: left; min-height: 1.6rem; padding: 0;}
.st-key-toc button p {text-align: left; white-space: pre-wrap;}
</style>"""

st.set_page_config(page_title="教材问答", page_icon=":material/menu_book:", layout="centered")


@st.cache_resource(show_spinner="正在加载模型与索引……", max_entries=4)
def load_pipeline(settings: Settings, stamp: tuple[int, ...] | None) -> Pipeline:
    """Loaded once per index build and shared by all sessions: the Pipeline is read-only and thread-safe.

    `stamp` identifies the index folder's manifest, so a rebuild (which swaps in a new folder) is picked up
    on the next run of the page, while sessions in the middle of an answer finish on the Pipeline they hold
    (it reads nothing from disk after loading)."""
    return Pipeline.shared(settings, stamp)  # already loading if the server was started by `rag serve`


def stop_with(title: str, exc: Exception, command: str) -> None:
    st.error(f"{title}\n\n{md(str(exc))}")
    st.markdown("在项目目录中运行以下命令后刷新本页：")
    st.code(command, language="bash")
    st.stop()


def rebuild_hint(settings: Settings) -> str:
    """The exact rebuild command for the index these settings point at (`make index` for the default one)."""
    command = rebuild_command(settings)
    return f"{command}\n# 或：.venv/bin/python -m rag build" if command == REBUILD_COMMAND else command


def open_pipeline(settings: Settings) -> Pipeline:
    try:
        return load_pipeline(settings, manifest_stamp(settings.index_dir))
    except IndexError_ as exc:
        stop_with("索引不可用：缺失、损坏或与当前模型/设置不一致。", exc, rebuild_hint(settings))
    except ModelError as exc:
        stop_with("嵌入模型不可用。", exc, "make model\n# 或：.venv/bin/python -m rag model")
    except RagError as exc:
        stop_with("无法加载问答服务。", exc, rebuild_hint(settings))
    raise AssertionError("unreachable")  # st.stop() raises


def state() -> None:
    st.session_state.setdefault("turns", [])
    st.session_state.setdefault("conversation", 0)  # bumped by 新对话, keeps widget keys unique
    st.session_state.setdefault("section", None)


# --- sidebar --------------------------------------------------------------------------------------


def new_conversation() -> None:
    st.session_state.turns = []
    st.session_state.conversation += 1


def ask_example(question: str) -> None:
    st.session_state.pending = question


def show_section(i: int | None) -> None:
    st.session_state.section = i


def sidebar(pipeline: Pipeline, settings: Settings, status: IndexStatus) -> tuple[dict[str, object], object]:
    with st.sidebar:
        st.header("设置")
        modes = ["extractive", "llm"] if settings.llm.enabled else ["extractive"]
        mode = st.radio("回答方式", modes, format_func=MODES.__getitem__, key="mode")
        if not settings.llm.enabled:
            st.caption("未配置大模型：设置 RAG_LLM_BASE_URL 与 RAG_LLM_MODEL 后可启用生成式回答。")
        passages = st.slider("参考段落数", 1, 10, settings.answer.passages, key="passages",
                             help="大模型生成时读取的检索段落数（抽取式回答至少从前 8 段中选句）。")
        st.button("新对话", icon=":material/add_comment:", on_click=new_conversation, width="stretch")
        export_slot = st.empty()  # filled after this run's question is answered, so the export is complete
        with st.expander("目录", icon=":material/toc:"), st.container(key="toc", gap=None):
            toc = pipeline.index.toc
            nested = ", ".join(f".st-key-toc-{i}" for i, e in enumerate(toc) if e.level > 1)
            st.html(TOC_CSS + (f"<style>{nested} {{padding-left: 1.5em;}}</style>" if nested else ""))
            for i, entry in enumerate(toc):
                st.button(render.toc_label(entry), key=f"toc-{i}", on_click=show_section, args=(i,),
                          type="tertiary")
        with st.expander("索引状态", icon=":material/database:"):
            index_status(status)
    return {"mode": mode, "passages": passages}, export_slot


def export_button(slot, title: str) -> None:
    """The whole conversation with its citations as Markdown; kept in session_state too, for tests."""
    turns = st.session_state.turns
    export = st.session_state.export_md = render.export_markdown(turns, title)
    slot.download_button("导出对话（Markdown）", export, file_name="教材问答-对话.md", mime="text/markdown",
                         icon=":material/download:", on_click="ignore", disabled=not turns, width="stretch")


def index_status(s: IndexStatus) -> None:
    st.markdown(
        f"- 模型：{md(Path(s.model).name or s.model)}\n- 段落数：{s.chunks}\n"
        f"- 构建时间：{md(render.format_time(s.built_at))}\n- 语料校验和：`{s.corpus_checksum[:12]}`"
    )
    if s.stale:
        st.warning("索引已过期，请按页面上方的命令重建。")
    else:
        st.caption("索引与 corpus/ 一致。")


def stale_notice(s: IndexStatus, settings: Settings) -> None:
    """An index older than corpus/ still answers, but from the old text: say so above the conversation."""
    if s.stale:
        st.warning(f"索引与语料不一致（{md(s.stale_reason or '')}），回答仍来自旧索引。"
                   "请在项目目录中运行以下命令后刷新本页：")
        st.code(rebuild_hint(settings), language="bash")


# --- main area ------------------------------------------------------------------------------------


def book_title(pipeline: Pipeline) -> str:
    info = pipeline.index.info
    return (info.fields.get("书名") if info else None) or "教材问答"


def empty_state(pipeline: Pipeline) -> None:
    facts = render.book_facts(pipeline.index.info)
    if facts:
        st.markdown("\n".join(f"- **{name}**：{md(value)}" for name, value in facts))
    st.markdown("向本书提问，每句回答都标注出处（章节与页码），可点开核对原文。试试这些问题：")
    cols = st.columns(2)
    for i, q in enumerate(EXAMPLES):
        cols[i % 2].button(q, key=f"example-{i}", on_click=ask_example, args=(q,), width="stretch")


def section_view(pipeline: Pipeline) -> None:
    """Open the 目录 entry clicked in the sidebar (once: closing the dialog does not bring it back)."""
    i = st.session_state.section
    st.session_state.section = None
    if i is not None and 0 <= i < len(pipeline.index.toc):
        section_dialog(pipeline, pipeline.index.toc[i])


@st.dialog("目录 · 章节原文", width="large")
def section_dialog(pipeline: Pipeline, entry: TocEntry) -> None:
    chunks = render.section_chunks(pipeline.index.chunks, entry)
    st.subheader(md(entry.heading))
    printed = f"目录标注第{entry.page}页" if entry.page else "目录未标页码"
    st.caption(f"{printed} · 收录文本：{render.span_label(chunks) if chunks else '无'}")
    if not chunks:
        st.info("本节正文不在已收录的文本中。")
    heading = ""
    for c, text in render.reading_text(chunks):
        if c.section[-1] != heading and len(c.section) > entry.level:
            heading = c.section[-1]
            st.markdown(f"**{md(heading)}**")
        st.caption(render.chunk_page_label(c))
        st.markdown(md(text))


def source_card(pipeline: Pipeline, c: Citation) -> None:
    with st.container(border=True):
        st.markdown(render.card_heading(c))
        st.html(PASSAGE_CSS + render.highlight_html(c.chunk.text, c.quote))
        with st.expander("前后文"):
            try:
                parts = render.context_around(c.chunk, pipeline.index.neighbours(c.chunk.id))
            except KeyError:  # an answer given before the index was rebuilt: its passage is gone
                st.caption("索引已重建，此段的前后文请重新提问后查看。")
                return
            if not parts:
                st.caption("本段前后没有相邻的段落。")
            for role, nb, text in parts:
                st.caption(f"{role} · {md(nb.section_path)} · {render.chunk_page_label(nb)}")
                st.markdown(md(text))


def answer_body(pipeline: Pipeline, turn: Turn, key: str) -> None:
    a = turn.answer
    assert a is not None
    for notice in a.notices:
        st.info(md(notice))
    if a.resolved_question:
        st.caption(f"结合上文理解为：{md(a.resolved_question)}")
    if a.refused:
        pointer = f"\n\n可参阅目录：{md(a.pointer)}" if a.pointer else ""
        st.warning(f"**未能从书中找到依据。** {md(a.text)}{pointer}")
    else:
        st.markdown(md(a.text))
    for c in a.citations:
        source_card(pipeline, c)
    st.feedback("thumbs", key=key, on_change=record_feedback, args=(key, turn))


def record_feedback(key: str, turn: Turn) -> None:
    record = render.feedback_record(turn, st.session_state.get(key))
    try:
        render.append_feedback(st.session_state.feedback_path, record)
    except OSError as exc:  # a full disk or a read-only folder loses the rating, not the conversation
        log.warning("feedback not saved: %s", exc)
        st.toast(f"反馈未能保存（{md(exc.strerror or str(exc))}），对话不受影响。", icon=":material/error:")
        return
    st.toast("感谢反馈，已记录。")


def show_turn(pipeline: Pipeline, i: int, turn: Turn) -> None:
    with st.chat_message("user"):
        st.markdown(md(turn.question))
    with st.chat_message("assistant"):
        if turn.answer is None:
            st.error(md(turn.error or "回答时出错。"))
        else:
            answer_body(pipeline, turn, f"feedback-{st.session_state.conversation}-{i}")


def ask(pipeline: Pipeline, question: str, knobs: dict[str, object]) -> None:
    """Answer a new question below the conversation; errors become a short message, the conversation stays."""
    try:  # a blank question gets a hint, not a chat bubble (the pipeline would refuse it the same way)
        shown = prepare(question, pipeline.settings.answer.max_question_chars).shown
    except InputError as exc:
        st.warning(md(str(exc)))
        return
    turns: list[Turn] = st.session_state.turns
    history = tuple(t.question for t in turns)
    with st.chat_message("user"):  # what was used: control, bidi and zero-width characters gone, shortened
        st.markdown(md(shown))
    with st.chat_message("assistant"):
        try:
            answer = run_answer(pipeline, question, history, knobs)
        except InputError as exc:
            st.warning(md(str(exc)))
            return
        except RagError as exc:
            turn = Turn(shown, error=f"回答时出错：{exc}")
        except Exception:  # the page must survive any failure of one answer
            log.exception("answering %r failed", shown)
            turn = Turn(shown, error="回答时出错，请稍后重试或换个问法。")
        else:
            turn = Turn(shown, answer=answer)
        turns.append(turn)
        if turn.answer is None:
            st.error(md(turn.error or ""))
            return
        answer_body(pipeline, turn, f"feedback-{st.session_state.conversation}-{len(turns) - 1}")


def run_answer(pipeline: Pipeline, question: str, history: tuple[str, ...],
               knobs: dict[str, object]) -> Answer:
    """LLM mode shows the text live with st.write_stream, then the final Answer (markers checked, or the
    extractive fallback) replaces it; the extractive answer comes in one piece."""
    options = {"llm": knobs["mode"] == "llm", "passages": knobs["passages"]}
    if not options["llm"]:
        with st.spinner("正在检索……"):
            return pipeline.ask(question, history, **options)
    final: list[Answer] = []
    live = st.empty()

    def pieces() -> Iterator[str]:
        for item in pipeline.ask_stream(question, history, **options):
            if isinstance(item, Answer):
                final.append(item)
            else:
                yield md(item)

    with st.spinner("正在检索并生成……"):
        live.write_stream(pieces())
    live.empty()
    return final[-1]


def main() -> None:
    settings = Settings.from_env()
    state()
    st.session_state.feedback_path = settings.feedback_path  # read by the st.feedback callback
    pipeline = open_pipeline(settings)
    st.title("教材问答")
    st.caption(f"《{md(book_title(pipeline))}》 · 每句回答均注明章节与页码")
    status = pipeline.status()
    stale_notice(status, settings)
    knobs, export_slot = sidebar(pipeline, settings, status)
    question = st.chat_input("向本书提问，例如：什么是党的群众工作？")
    if question is None:
        question = st.session_state.pop("pending", None)
    section_view(pipeline)
    turns = st.session_state.turns
    if not turns and question is None:
        empty_state(pipeline)
    for i, turn in enumerate(turns):
        show_turn(pipeline, i, turn)
    if question is not None:
        ask(pipeline, question, knobs)
    export_button(export_slot, book_title(pipeline))


main()
