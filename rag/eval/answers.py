"""Answer metrics for `python -m rag eval --group answers`, registered in rag.eval.retrieval.GROUPS.

Per question type: 正确 — an answerable question's answer contains all its key phrases (so a list question
counts only when complete) and is not a refusal; an out-of-scope question is refused, pointing at the expected
目录 entry when the set names one. 引文 — share of shown quotes that are verbatim substrings of their chunk.
出处 — share of questions cited to their expected section (answerable) or given the expected pointer (out of
scope). Phrases are compared without spaces ("2015 年 2 月" = "2015年2月").
"""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Sequence

from rag.eval.questions import GroupReport, Question
from rag.text.fold import spaceless
from rag.types import Answer

COLUMNS = ("n", "正确", "引文", "出处")


def squeeze(s: str) -> str:
    return spaceless(s)[0]


# A compound question's part that the book does not cover must be named as such in the answer.
NOT_COVERED = ("没有找到", "不在已载入", "未载入")


def has_phrase(text: str, phrase: str) -> bool:
    """The phrase (or one of its "|"-separated alternatives) occurs in the text, spaces and width ignored."""
    flat = squeeze(text)
    return any(squeeze(alt) in flat for alt in phrase.split("|") if alt.strip())


def phrases_ok(q: Question, a: Answer) -> bool:
    return not a.refused and all(has_phrase(a.text, p) for p in q.answer_phrases)


def units(q: Question, a: Answer) -> list[bool]:
    """Key facts present, one verdict per thing asked: each part of a compound question counts on its own."""
    if not q.parts:
        return [phrases_ok(q, a)]
    return [(not a.refused and all(has_phrase(a.text, ph) for ph in p.answer_phrases)) if p.answerable
            else any(w in a.text for w in NOT_COVERED) for p in q.parts]


def source_ok(q: Question, a: Answer) -> bool:
    if not q.answerable:
        want = q.pointer
        return a.refused and (not want or squeeze(want.replace(" > ", " › ")) in squeeze(a.pointer or ""))
    if not q.section:
        return True
    return any(squeeze(q.section) in squeeze(c.chunk.section_path or c.chunk.page or "") for c in a.citations)


def answers(pipeline, questions: Sequence[Question]) -> GroupReport:
    report = GroupReport("回答（answers）", COLUMNS, failure_title="回答不正确的问题：")
    rows: dict[str, list[tuple[bool, float, bool]]] = defaultdict(list)
    false_refusals, times, facts = [], [], []
    quotes = verbatim = 0
    for q in questions:
        start = time.perf_counter()
        a = pipeline.ask(q.question, q.history)
        times.append(time.perf_counter() - start)
        verdicts = units(q, a) if q.answerable else []
        facts += verdicts
        correct = all(verdicts) if q.answerable else a.refused
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
    outside = [r for t, rs in rows.items() for r in rs if t == "out_of_scope"]
    refused_outside = sum(c for c, _, _ in outside)
    times.sort()
    report.summary = {"facts": sum(facts) / max(1, len(facts)), "facts_n": len(facts),
                      "out_of_scope_refused": refused_outside / max(1, len(outside)), "out_of_scope_n": len(outside),
                      "answerable_refused": len(false_refusals) / max(1, len(answerable)),
                      "answerable_n": len(answerable), "quotes_verbatim": verbatim / max(1, quotes)}
    report.notes += [
        f"关键事实覆盖（复合问题每一问单独计）：{sum(facts)}/{len(facts)}（{sum(facts) / max(1, len(facts)):.1%}）",
        f"超出范围的问题被拒答：{refused_outside}/{len(outside)}",
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
