"""Retrieval metrics (`rag eval --group retrieval`): Recall@1, Recall@5 and MRR@10 by question type.

A retrieval hit counts when the chunk's text contains one of the question's evidence strings (compared without
width/spacing differences).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Sequence

from rag.eval.questions import GroupReport, Question
from rag.text.fold import compact
from rag.types import Hit, QueryParams

DEPTH = 10  # hits looked at per question (MRR@10)


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
        hits = pipeline.search(q.question, q.history, QueryParams(k=DEPTH)).hits
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
