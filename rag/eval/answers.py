"""Answer metrics for `python -m rag eval --group answers`, registered in rag.eval.retrieval.GROUPS.

Per question type: 正确 — an answerable question's answer contains all its key phrases (so a list question
counts only when complete) and is not a refusal; an out-of-scope question is refused, pointing at the expected
目录 entry when the set names one. 引文 — share of shown quotes that are verbatim substrings of their chunk.
出处 — share of questions cited to their expected section (answerable) or given the expected pointer (out of
scope). Phrases are compared without spaces ("2015 年 2 月" = "2015年2月").
"""

from __future__ import annotations

import re
import time
from collections import defaultdict
from typing import Sequence

from rag.eval.questions import GroupReport, Question
from rag.text.fold import spaceless
from rag.types import Answer

COLUMNS = ("n", "正确", "引文", "出处")


def squeeze(s: str) -> str:
    return spaceless(s)[0]


def phrases_ok(q: Question, a: Answer) -> bool:
    return not a.refused and all(squeeze(p) in squeeze(a.text) for p in q.answer_phrases)


def source_ok(q: Question, a: Answer) -> bool:
    if not q.answerable:
        want = q.pointer
        return a.refused and (not want or squeeze(want) in squeeze(a.pointer or ""))
    if not q.section:
        return True
    return any(squeeze(q.section) in squeeze(c.chunk.section_path or c.chunk.page or "") for c in a.citations)


def answers(pipeline, questions: Sequence[Question]) -> GroupReport:
    report = GroupReport("回答（answers）", COLUMNS, failure_title="回答不正确的问题：")
    rows: dict[str, list[tuple[bool, float, bool]]] = defaultdict(list)
    false_refusals, times = [], []
    quotes = verbatim = 0
    for q in questions:
        start = time.perf_counter()
        a = pipeline.ask(q.question, q.history)
        times.append(time.perf_counter() - start)
        correct = phrases_ok(q, a) if q.answerable else source_ok(q, a)
        good = sum(c.quote in c.chunk.text for c in a.citations)
        quotes, verbatim = quotes + len(a.citations), verbatim + good
        rows[q.type].append((correct, good / len(a.citations) if a.citations else 1.0, source_ok(q, a)))
        if q.answerable and a.refused:
            false_refusals.append(q.id)
        if not correct:
            report.failures.append(f"{q.id} [{q.type}] {q.question} → {a.text[:60]}")
    for qtype in sorted(rows):
        report.rows[qtype] = _row(rows[qtype])
    report.rows["全部"] = _row([r for rs in rows.values() for r in rs])
    answerable = [q for q in questions if q.answerable]
    covered = sum(ok for t, rs in rows.items() for ok, _, _ in rs if t != "out_of_scope")
    times.sort()
    report.notes += [
        f"可回答问题的关键短语覆盖：{covered}/{len(answerable)}（{covered / max(1, len(answerable)):.1%}）",
        f"引文原文核对：{verbatim}/{quotes} 条引文是所引段落的原文",
        f"误拒（可回答却拒答）：{len(false_refusals)} 题 {' '.join(false_refusals)}".rstrip(),
        f"每题耗时：中位 {times[len(times) // 2] * 1000:.0f} ms，p90 {times[int(len(times) * 0.9)] * 1000:.0f} ms"
        if times else "每题耗时：—",
    ]
    return report


def _row(items: list[tuple[bool, float, bool]]) -> dict[str, float]:
    n = max(1, len(items))
    return {"n": len(items), "正确": sum(c for c, _, _ in items) / n, "引文": sum(v for _, v, _ in items) / n,
            "出处": sum(s for _, _, s in items) / n}
