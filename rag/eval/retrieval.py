"""Evaluation on the project's question set (tests/data/questions.jsonl): metrics by question type.

Each metric group is a function `(pipeline, questions) -> GroupReport` registered in GROUPS, so another
stage can add its own (e.g. answer metrics) without touching the retrieval one. A retrieval hit counts when
the chunk's text contains one of the question's evidence strings (compared without width/spacing differences).
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from rag.config import ROOT
from rag.errors import InputError
from rag.text.fold import compact
from rag.types import Hit

QUESTIONS = ROOT / "tests" / "data" / "questions.jsonl"
DEPTH = 10  # hits looked at per question (MRR@10)


@dataclass(frozen=True)
class Question:
    id: str
    question: str
    type: str
    history: tuple[str, ...] = ()
    answerable: bool = True
    evidence: tuple[str, ...] = ()
    answer_phrases: tuple[str, ...] = ()
    section: str | None = None
    page: str | None = None
    pointer: str | None = None  # out of scope: the 目录 entry a refusal should point to


_FIELDS = set(Question.__dataclass_fields__)


@dataclass
class GroupReport:
    """One metric group: a row of metrics per question type plus "全部", and the questions that failed."""

    name: str
    columns: tuple[str, ...]
    rows: dict[str, dict[str, float]] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    failure_title: str = "未进入前 5 的问题："


def load_questions(path: Path = QUESTIONS) -> list[Question]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise InputError(f"无法读取问题集 {path}：{exc}。请用 --questions 指定 JSONL 文件。") from exc
    out = []
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            d = {k: v for k, v in json.loads(line).items() if k in _FIELDS}  # extra keys (notes …) ignored
            out.append(Question(**{**d, "history": tuple(d.get("history") or ()),
                                   "evidence": tuple(d.get("evidence") or ()),
                                   "answer_phrases": tuple(d.get("answer_phrases") or ())}))
        except (ValueError, TypeError) as exc:
            raise InputError(f"问题集 {path} 第 {n} 行无效（{exc}）。") from exc
    return out


def relevant_rank(hits: Sequence[Hit], evidence: Sequence[str]) -> int | None:
    """1-based rank of the first hit containing an evidence string, or None."""
    needles = [n for n in (compact(e)[0].strip() for e in evidence) if n]
    for hit in hits:
        text = compact(hit.chunk.text)[0]
        if any(n in text for n in needles):
            return hit.rank
    return None


def rank_metrics(ranks: Sequence[int | None]) -> dict[str, float]:
    n = max(1, len(ranks))
    return {
        "n": len(ranks),
        "R@1": sum(r == 1 for r in ranks) / n,
        "R@5": sum(r is not None and r <= 5 for r in ranks) / n,
        "MRR@10": sum(1 / r for r in ranks if r is not None and r <= 10) / n,
    }


def retrieval(pipeline, questions: Sequence[Question]) -> GroupReport:
    """Recall@1, Recall@5 and MRR@10 of the answerable questions, by type."""
    report = GroupReport("检索（retrieval）", ("n", "R@1", "R@5", "MRR@10"))
    by_type: dict[str, list[int | None]] = defaultdict(list)
    top_dense: dict[bool, list[float]] = defaultdict(list)
    for q in questions:
        hits = pipeline.search(q.question, q.history, k=DEPTH)
        if hits and hits[0].dense_score is not None:
            top_dense[q.answerable].append(hits[0].dense_score)
        if not q.answerable:
            continue
        rank = relevant_rank(hits, q.evidence)
        by_type[q.type].append(rank)
        if rank is None or rank > 5:
            report.failures.append(f"{q.id} [{q.type}] 证据排名 {rank or '>10'}：{q.question}")
    for qtype in sorted(by_type):
        report.rows[qtype] = rank_metrics(by_type[qtype])
    report.rows["全部"] = rank_metrics([r for ranks in by_type.values() for r in ranks])
    for answerable, label in ((True, "可回答"), (False, "超出范围")):
        s = top_dense[answerable]
        if s:
            report.notes.append(f"{label}问题的首位余弦相似度：最低 {min(s):.3f}，平均 {sum(s) / len(s):.3f}，"
                                f"最高 {max(s):.3f}（{len(s)} 题）")
    return report


def answers(pipeline, questions: Sequence[Question]) -> GroupReport:
    """Answer metrics; they live with the answer stage (rag/evaluate_answers.py), imported on use."""
    from rag.eval.answers import answers as answer_metrics

    return answer_metrics(pipeline, questions)


GROUPS: dict[str, Callable[..., GroupReport]] = {"retrieval": retrieval, "answers": answers}


def evaluate(pipeline, questions: Sequence[Question],
             groups: Sequence[str] = ("retrieval",)) -> list[GroupReport]:
    unknown = [g for g in groups if g not in GROUPS]
    if unknown:
        raise InputError(f"未知的评测组：{'、'.join(unknown)}。可选：{'、'.join(GROUPS)}。")
    return [GROUPS[g](pipeline, questions) for g in groups]


def format_report(report: GroupReport) -> str:
    """A fixed-width table (types as rows), then notes and failures."""
    lines = [f"## {report.name}", "类型".ljust(14) + "".join(c.rjust(9) for c in report.columns)]
    for name, row in report.rows.items():
        cells = "".join((f"{row[c]:9d}" if c == "n" else f"{row[c]:9.3f}") for c in report.columns)
        lines.append(name.ljust(14 - sum(1 for ch in name if ord(ch) > 0x2E80)) + cells)
    lines += [f"- {n}" for n in report.notes]
    if report.failures:
        lines.append(report.failure_title)
        lines += [f"  {f}" for f in report.failures]
    return "\n".join(lines)
