"""练习 — practice with the book: 填空, 选择, 判断, 简答 made from its own structure, graded at once, and a
wrong answer shows the passage to reread (section path, page, the answer key highlighted).

Thin: the items come from rag/study/quiz.py, the grades from rag/study/grade.py, results go to the history
store (rag/study/history.py) under this session's random id.
"""

from __future__ import annotations

import random

import streamlit as st

from rag.config import Settings, offline_environment

offline_environment()

from rag import render  # noqa: E402
from rag.pipeline import Pipeline, RagError  # noqa: E402
from rag.render import escape_markdown as md  # noqa: E402
from rag.study import history  # noqa: E402
from rag.study.grade import Grader, grader_for  # noqa: E402
from rag.study.quiz import FALSE, KIND_NAMES, TRUE, Item, bank, draw, sections_with_text  # noqa: E402

st.set_page_config(page_title="练习 · 教材问答", page_icon=":material/edit_note:", layout="centered")
PASSAGE_CSS = "<style>.rag-passage {line-height: 1.8;} .rag-passage mark {background: #fde68a;}</style>"


@st.cache_resource(show_spinner="正在加载模型与索引……", max_entries=4)
def load_pipeline(settings: Settings, stamp: tuple[int, ...] | None) -> Pipeline:
    return Pipeline.shared(settings, stamp)


@st.cache_resource(max_entries=4)
def load_grader(_pipeline: Pipeline, stamp: tuple[int, ...] | None) -> Grader:
    return grader_for(_pipeline.index)


@st.cache_data(max_entries=64)
def load_bank(_pipeline: Pipeline, stamp: tuple[int, ...] | None, book: str | None,
              section: str | None) -> list[Item]:
    return bank(_pipeline.index.chunks, _pipeline.index.lexicon, book=book, section=section)


def open_pipeline(settings: Settings) -> tuple[Pipeline, tuple[int, ...] | None]:
    stamp = Pipeline.stamp(settings)
    try:
        return load_pipeline(settings, stamp), stamp
    except RagError as exc:  # the same explanation as the chat page: what is wrong and the command to run
        title, command = render.failure_help(exc, render.rebuild_hint(Pipeline.rebuild_command(settings)))
        st.error(f"{title}\n\n{md(str(exc))}")
        st.code(command, language="bash")
        st.stop()
    raise AssertionError  # st.stop() does not return


def scope_picker(pipeline: Pipeline) -> tuple[str | None, str | None]:
    books = {b.id: b.title or b.id for b in pipeline.books}
    book = st.selectbox("书", list(books), format_func=books.get) if len(books) > 1 else None
    scopes: dict[str, str | None] = {"全书": None}
    for path in sections_with_text(pipeline.index.chunks, book):
        scopes.setdefault(path[0], path[0])
        if len(path) > 1:
            scopes[f"{path[0]} › {path[1]}"] = path[1]
    label = st.selectbox("范围（章或节）", list(scopes), key="scope")
    return book, scopes[label]


def start_round(items: list[Item], n: int, seed: int) -> None:
    st.session_state.round = draw(items, n, seed)
    st.session_state.graded = None
    st.session_state.round_no = st.session_state.get("round_no", 0) + 1


def ask(i: int, item: Item) -> None:
    key = f"a-{st.session_state.round_no}-{i}"
    st.markdown(f"**{i + 1}.【{KIND_NAMES[item.kind]}】** {md(item.prompt)}")
    if item.kind == "judge":
        st.markdown(f"> {md(item.statement)}")
        st.radio("判断", (TRUE, FALSE), index=None, key=key, horizontal=True, label_visibility="collapsed")
    elif item.kind == "choice":
        st.radio("选择", item.options, index=None, key=key, label_visibility="collapsed")
    elif item.kind == "fill":
        st.text_input("填空", key=key, placeholder="填入空格处的词", label_visibility="collapsed")
    else:
        st.text_area("简答", key=key, placeholder="分点作答", label_visibility="collapsed")


def reread(item: Item, pipeline: Pipeline) -> None:
    for k in item.keys:
        with st.expander(f"重读原文：{k.page} · {' › '.join(k.section)}", icon=":material/menu_book:"):
            chunk = pipeline.index.chunk(k.chunk_id)
            st.markdown(PASSAGE_CSS + render.highlight_html(chunk.text, k.text), unsafe_allow_html=True)


def feedback(i: int, item: Item, grade, pipeline: Pipeline) -> None:
    mark = {1.0: ":green[✓ 正确]", 0.5: ":orange[◐ 部分正确]"}.get(grade.score, ":red[✗ 不正确]")
    st.markdown(f"{mark}（{grade.score:g} 分）")
    if grade.score < 1:
        answer = item.answer if item.kind != "short" else "；".join(item.points)
        st.markdown(f"正确答案：{md(answer)}")
        reread(item, pipeline)


def grade_round(pipeline: Pipeline, grader: Grader) -> None:
    items: list[Item] = st.session_state.round
    answers = [str(st.session_state.get(f"a-{st.session_state.round_no}-{i}") or "") for i in range(len(items))]
    grades = [grader.grade(it, a) for it, a in zip(items, answers)]
    st.session_state.graded = grades
    store = history.History()
    for it, g in zip(items, grades):
        try:
            store.record(st.session_state.session_id, it, g.score)
        except OSError:
            pass  # a practice round never fails because the log cannot be written


def main() -> None:
    settings = Settings.from_env()
    pipeline, stamp = open_pipeline(settings)
    st.session_state.setdefault("session_id", history.new_token())
    st.session_state.setdefault("seed", random.SystemRandom().randrange(1_000_000))
    st.title("练习")
    st.caption("题目由教材原文生成：填空、选择、判断、简答。每题的答案都注明出处与页码，答错可重读原文。")
    book, section = scope_picker(pipeline)
    cols = st.columns(2)
    n = cols[0].number_input("题数", 1, 30, 8, key="n")
    seed = cols[1].number_input("种子（同一种子出同一组题）", 0, 999_999, key="seed")
    items = load_bank(pipeline, stamp, book, section)
    if not items:
        st.info("这一范围内没有可出题的正文。")
        return
    if st.button("出题", icon=":material/quiz:", key="start") or "round" not in st.session_state:
        start_round(items, int(n), int(seed))
    round_: list[Item] = st.session_state.round
    for i, item in enumerate(round_):
        with st.container(border=True):
            ask(i, item)
            if st.session_state.graded:
                feedback(i, item, st.session_state.graded[i], pipeline)
    if st.button("交卷评分", type="primary", key="grade", disabled=bool(st.session_state.graded)):
        grade_round(pipeline, load_grader(pipeline, stamp))
        st.rerun()
    if st.session_state.graded:
        total = sum(g.score for g in st.session_state.graded)
        st.success(f"得分：{total:g} / {len(round_)}")


main()
