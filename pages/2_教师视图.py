"""教师视图 — what the class asked and practised, by book, 章, 节 and page: questions asked, refused, rated
👎, practice items answered wrongly; charts and a CSV export. Only random session ids are stored.

Thin: the counting is rag/study/teacher.py; the log is the history store and embeddings/feedback.jsonl.
Set RAG_TEACHER_PASSWORD to ask for a password first.
"""

from __future__ import annotations

import hmac

import altair as alt
import pandas as pd
import streamlit as st

from rag.config import Settings, offline_environment

offline_environment()

from rag import render  # noqa: E402
from rag.pipeline import Pipeline, RagError  # noqa: E402
from rag.render import escape_markdown as md  # noqa: E402
from rag.study import teacher  # noqa: E402
from rag.study.history import History, HistorySettings  # noqa: E402

st.set_page_config(page_title="教师视图 · 教材问答", page_icon=":material/monitoring:", layout="wide")


@st.cache_resource(show_spinner="正在加载模型与索引……", max_entries=4)
def load_pipeline(settings: Settings, stamp: tuple[int, ...] | None) -> Pipeline:
    return Pipeline.shared(settings, stamp)


def unlocked(password: str | None) -> bool:
    if not password or st.session_state.get("teacher_ok"):
        return True
    typed = st.text_input("教师密码", type="password", key="password")
    if typed and hmac.compare_digest(typed.encode(), password.encode()):
        st.session_state.teacher_ok = True
        return True
    if typed:
        st.error("密码不正确。")
    return False


def chart(frame: pd.DataFrame, level: str) -> alt.Chart:
    place = frame[teacher.columns(level)[:-len(teacher.COUNTS)]].astype(str).agg(" › ".join, axis=1)
    long = frame.assign(位置=place).melt(id_vars=["位置"], value_vars=list(teacher.COUNTS),
                                          var_name="指标", value_name="次数")
    return alt.Chart(long).mark_bar().encode(
        y=alt.Y("位置:N", sort="-x", title=None), x=alt.X("次数:Q"), color="指标:N",
        yOffset="指标:N", tooltip=["位置", "指标", "次数"])


def main() -> None:
    settings = Settings.from_env()
    hs = HistorySettings.from_env()
    st.title("教师视图")
    if not unlocked(hs.teacher_password):
        st.stop()
    try:
        pipeline = load_pipeline(settings, Pipeline.stamp(settings))
    except RagError as exc:  # the same explanation as the chat page: what is wrong and the command to run
        title, command = render.failure_help(exc, render.rebuild_hint(Pipeline.rebuild_command(settings)))
        st.error(f"{title}\n\n{md(str(exc))}")
        st.code(command, language="bash")
        st.stop()
    store = History(hs)
    turns, results = store.rows("turns"), store.rows("results")
    feedback = teacher.read_feedback(settings.feedback_path)
    st.caption(f"提问记录与练习结果：{hs.path}{'（RAG_HISTORY=0：不再记录）' if not hs.enabled else ''}；"
               f"评价：{settings.feedback_path}。只记录随机会话编号，不记录姓名。")
    names = {v: k for k, v in teacher.LEVEL_NAMES.items()}
    level = names[st.radio("按", list(names), index=2, horizontal=True, key="level")]

    def lookup(chunk_id: str):
        try:
            return pipeline.index.chunk(chunk_id)
        except KeyError:
            return None

    rows = teacher.aggregate(turns, feedback, results, lookup, level)
    total = teacher.totals(rows)
    for col, name in zip(st.columns(len(teacher.COUNTS)), teacher.COUNTS):
        col.metric(name, total[name])
    if not rows:
        st.info("还没有记录：学生在问答页提问、在练习页交卷后，这里会显示统计。")
        return
    frame = pd.DataFrame(rows, columns=teacher.columns(level))
    st.altair_chart(chart(frame, level), use_container_width=True)
    st.dataframe(frame.rename(columns=teacher.LEVEL_NAMES), hide_index=True, key="table")
    st.download_button("导出 CSV", teacher.to_csv(rows, level), file_name=f"教师视图-{level}.csv",
                       mime="text/csv", icon=":material/download:", key="csv")


main()
