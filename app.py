"""教材问答 — the Streamlit chat page: ask the books, read the answer, open the cited page.

Thin on purpose: it talks to rag.pipeline (one cached, read-only Pipeline shared by every session, the same
object the CLI and the API use) and rag.render (every rule about what the reader sees); the conversation
lives in st.session_state. Book and user text are shown only through escaped Markdown (`md`) or escaped HTML
(`render.highlight_html`), never as markup.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import streamlit as st

from rag.config import Settings, offline_environment

offline_environment()  # before anything imports huggingface_hub / transformers: no model hub, ever

from rag import render  # noqa: E402
from rag.pipeline import Answer, IndexStatus, InputError, Pipeline, QueryParams, RagError  # noqa: E402
from rag.render import Turn, escape_markdown as md  # noqa: E402
from rag.study import history  # noqa: E402

log = logging.getLogger("rag.app")
MODES = {"extractive": "抽取式（只摘录原文）", "llm": "大模型生成（引用经核实）"}
ALL_BOOKS = "全部"
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
    """Loaded once per index build (`stamp`) and shared by all sessions; a rebuild is picked up on the next
    run, while sessions in the middle of an answer finish on the Pipeline they hold."""
    return Pipeline.shared(settings, stamp)  # already loading if the server was started by `rag serve`


def open_pipeline(settings: Settings) -> Pipeline:
    try:
        return load_pipeline(settings, Pipeline.stamp(settings))
    except RagError as exc:
        title, command = render.failure_help(exc, render.rebuild_hint(Pipeline.rebuild_command(settings)))
        st.error(f"{title}\n\n{md(str(exc))}")
        st.markdown("在项目目录中运行以下命令后刷新本页：")
        st.code(command, language="bash")
        st.stop()
    raise AssertionError("unreachable")  # st.stop() raises


def new_conversation() -> None:
    st.session_state.turns = []
    st.session_state.conversation += 1
    st.session_state.token = st.query_params["c"] = history.new_token()


def restore_conversation() -> None:
    """The conversation of the token in the page URL (?c=…), kept across reloads and server restarts."""
    token = st.query_params.get("c")
    if not history.valid(token):
        token = st.query_params["c"] = history.new_token()
    if st.session_state.get("token") != token:  # a reload, a restart or a shared link
        st.session_state.token = token
        try:
            st.session_state.turns = [history.turn_from_dict(d) for d in history.load(token)]
        except (OSError, ValueError, KeyError) as exc:  # an unreadable history loses the past, not the page
            log.warning("history not loaded: %s", exc)


def set_state(**values: object) -> None:
    st.session_state.update(values)


def sidebar(pipeline: Pipeline, settings: Settings, status: IndexStatus) -> tuple[QueryParams, object]:
    with st.sidebar:
        st.header("设置")
        books = {b.id: b.title for b in pipeline.books}
        book = None
        if len(books) > 1:  # one book: nothing to pick (its title heads the page)
            picked = st.selectbox("书目", [ALL_BOOKS, *books], format_func=lambda b: books.get(b, b), key="book")
            book = None if picked == ALL_BOOKS else picked
        mode, passages = "extractive", settings.answer.passages
        if settings.llm.enabled:  # the mode and the passages read only matter with a model to write
            mode = st.radio("回答方式", list(MODES), format_func=MODES.__getitem__, key="mode")
            passages = st.slider("参考段落数", 1, 10, passages, key="passages",
                                 help="大模型生成时读取的检索段落数（抽取式回答至少从前 8 段中选句）。")
        else:
            st.caption("抽取式回答：只摘录原文。设置 RAG_LLM_BASE_URL 与 RAG_LLM_MODEL 后可启用大模型生成式回答。")
        st.button("新对话", icon=":material/add_comment:", on_click=new_conversation, width="stretch")
        export_slot = st.empty()  # filled after this run's question is answered, so the export is complete
        toc = [e for b in pipeline.books if book in (None, b.id) for e in b.toc]
        toc_box = lazy_expander("目录", ":material/toc:", "toc-open")
        if toc_box.open:
            with toc_box, st.container(key="toc", gap=None):
                nested = ", ".join(f".st-key-toc-{i}" for i, e in enumerate(toc) if e.level > 1)
                st.html(TOC_CSS + (f"<style>{nested} {{padding-left: 1.5em;}}</style>" if nested else ""))
                for i, entry in enumerate(toc):
                    st.button(render.toc_label(entry), key=f"toc-{i}", on_click=set_state,
                              kwargs={"section": entry}, type="tertiary")
        status_box = lazy_expander("索引状态", ":material/database:", "status-open", status.stale)
        if status_box.open:
            with status_box:
                show_status(status)
    return QueryParams(passages=passages, mode=mode, book=book), export_slot  # type: ignore[arg-type]


def lazy_expander(label: str, icon: str | None, key: str, expanded: bool = False):
    """An expander whose content is made only while it is open (`.open`): the 目录's dozens of buttons and
    every answer's 前后文 are not sent to, nor drawn by, a browser that never opens them."""
    return st.expander(label, expanded, icon=icon, key=key, on_change="rerun")


def show_status(s: IndexStatus) -> None:
    st.markdown(f"- 模型：{md(Path(s.model).name or s.model)}\n- 段落数：{s.chunks}\n"
                f"- 构建时间：{md(render.format_time(s.built_at))}\n"
                f"- 语料校验和：`{s.corpus_checksum[:12]}`")
    (st.warning if s.stale else st.caption)(
        "索引已过期，请按页面上方的命令重建。" if s.stale else "索引与 corpus/ 一致。")


@st.dialog("目录 · 章节原文", width="large")
def section_dialog(pipeline: Pipeline, entry) -> None:
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


def source_card(pipeline: Pipeline, c, key: str) -> None:
    with st.container(border=True):
        book = pipeline.index.book(c.chunk.book) if len(pipeline.books) > 1 else None
        st.markdown(render.card_heading(c, book.title if book else None))
        st.html(PASSAGE_CSS + render.highlight_html(c.chunk.text, c.quote))
        box = lazy_expander("前后文", None, f"{key}-context-{c.n}")
        if not box.open:
            return
        with box:
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


def show_turn(pipeline: Pipeline, turn: Turn, key: str) -> None:
    if turn.answer is None:
        st.error(md(turn.error or "回答时出错。"))
        return
    a = turn.answer
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
        source_card(pipeline, c, key)
    st.feedback("thumbs", key=key, on_change=record_feedback, args=(key, turn))


def record_feedback(key: str, turn: Turn) -> None:
    try:
        render.append_feedback(st.session_state.feedback_path,
                               render.feedback_record(turn, st.session_state.get(key)))
    except OSError as exc:  # a full disk or a read-only folder loses the rating, not the conversation
        log.warning("feedback not saved: %s", exc)
        st.toast(f"反馈未能保存（{md(exc.strerror or str(exc))}），对话不受影响。", icon=":material/error:")
        return
    st.toast("感谢反馈，已记录。")


def ask(pipeline: Pipeline, question: str, params: QueryParams) -> None:
    """Answer a new question below the conversation; errors become a short message, the conversation stays."""
    turns: list[Turn] = st.session_state.turns
    try:  # prepared once: a blank question gets a hint, not a chat bubble
        query = pipeline.prepare(question, tuple(t.question for t in turns))
    except InputError as exc:
        st.warning(md(str(exc)))
        return
    with st.chat_message("user"):  # what was used: control, bidi and zero-width characters gone, shortened
        st.markdown(md(query.shown))
    with st.chat_message("assistant"):
        try:
            turn = Turn(query.shown, answer=run_answer(pipeline, query, params))
        except RagError as exc:
            turn = Turn(query.shown, error=f"回答时出错：{exc}")
        except Exception:  # the page must survive any failure of one answer
            log.exception("answering %r failed", query.shown)
            turn = Turn(query.shown, error="回答时出错，请稍后重试或换个问法。")
        turns.append(turn)
        try:
            history.append(st.session_state.token, history.turn_to_dict(turn))
        except OSError as exc:  # a full disk loses the stored copy, not the conversation on screen
            log.warning("history not saved: %s", exc)
        show_turn(pipeline, turn, f"feedback-{st.session_state.conversation}-{len(turns) - 1}")


def run_answer(pipeline: Pipeline, query, params: QueryParams) -> Answer:
    """LLM mode shows the text live, then the final Answer (markers checked, or the extractive fallback)
    replaces it; the extractive answer comes in one piece."""
    if params.mode != "llm":
        with st.spinner("正在检索……"):
            return pipeline.answer(query, params)
    final: list[Answer] = []
    live = st.empty()

    def pieces() -> Iterator[str]:
        for item in pipeline.answer_stream(query, params):
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
    for name, value in (("turns", []), ("conversation", 0), ("section", None)):
        st.session_state.setdefault(name, value)
    st.session_state.feedback_path = settings.feedback_path  # read by the st.feedback callback
    restore_conversation()
    pipeline = open_pipeline(settings)
    title = render.library_title(pipeline.books)
    st.title("教材问答")
    st.caption(f"{md(title)} · 每句回答均注明章节与页码")
    status = pipeline.status()
    if status.stale:  # an index older than corpus/ still answers, but from the old text
        st.warning(f"索引与语料不一致（{md(status.stale_reason or '')}），回答仍来自旧索引。"
                   "请在项目目录中运行以下命令后刷新本页：")
        st.code(render.rebuild_hint(Pipeline.rebuild_command(settings)), language="bash")
    params, export_slot = sidebar(pipeline, settings, status)
    examples = render.example_questions(pipeline.books, pipeline.index.chunks)
    hint = f"向本书提问，例如：{examples[0]}" if examples else "向本书提问"
    question = st.chat_input(hint)
    if question is None:
        question = st.session_state.pop("pending", None)
    if st.session_state.section is not None:  # a 目录 row clicked: open it once
        section_dialog(pipeline, st.session_state.section)
        st.session_state.section = None
    turns = st.session_state.turns
    if not turns and question is None:
        facts = render.book_facts(pipeline.books[0].info if len(pipeline.books) == 1 else None)
        if facts:
            st.markdown("\n".join(f"- **{name}**：{md(value)}" for name, value in facts))
        st.markdown("向本书提问，每句回答都标注出处（章节与页码），可点开核对原文。试试这些问题：")
        cols = st.columns(2)
        for i, q in enumerate(examples):
            cols[i % 2].button(q, key=f"example-{i}", on_click=set_state, kwargs={"pending": q},
                               width="stretch")
    for i, turn in enumerate(turns):
        with st.chat_message("user"):
            st.markdown(md(turn.question))
        with st.chat_message("assistant"):
            show_turn(pipeline, turn, f"feedback-{st.session_state.conversation}-{i}")
    if question is not None:
        ask(pipeline, question, params)
    export = st.session_state.export_md = render.export_markdown(turns, title)
    export_slot.download_button("导出对话（Markdown）", export, file_name="教材问答-对话.md",
                                mime="text/markdown", icon=":material/download:", on_click="ignore",
                                disabled=not turns, width="stretch")


# The pages, named in Chinese (with a bare pages/ folder Streamlit would label this one "app", after the file);
# the URLs stay the folder's: /练习, /教师视图.
PAGES = [st.Page(main, title="问答", icon=":material/forum:", default=True),
         st.Page("pages/1_练习.py", title="练习", icon=":material/edit_note:", url_path="练习"),
         st.Page("pages/2_教师视图.py", title="教师视图", icon=":material/monitoring:", url_path="教师视图")]
st.navigation(PAGES).run()
