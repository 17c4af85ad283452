"""`python -m rag eval --group quiz`: the 简答 grader against hand grades (Cohen's κ), and the promises of
the practice items (answer keys verbatim, altered 判断 statements absent from the book, items per 节).

tests/data/quiz_graded.jsonl holds short answers written as students would, each graded by hand on the
0 / 0.5 / 1 rubric before the grader ran (the later ones with the reason in `reason`); `split` says which
rows the grader was tuned on ("tune") and which it is reported on ("test"), fixed by the id alone
(`graded_split`): g01–g66, the first set, every third id from g01; later ids by the hash of
`rag.eval.questions.split_of` (40 % tune).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Sequence

from rag.config import ROOT
from rag.errors import InputError
from rag.eval.questions import GroupReport, split_of
from rag.study.grade import grader_for
from rag.study.quiz import KIND_NAMES, bank, counts_by_section, problems

GRADED = ROOT / "tests" / "data" / "quiz_graded.jsonl"
COLUMNS = ("n", "κ", "加权κ", "一致率")
LEVELS = (0.0, 0.5, 1.0)
FIRST_SET = 66  # g01–g66: the first hand-graded set, split by id number before the hash rule


def cohen_kappa(a: Sequence[float], b: Sequence[float], weighted: bool = False) -> float:
    """Cohen's κ of two raters over LEVELS; `weighted`: quadratic weights (0.5 vs 1 is half a disagreement)."""
    n = len(a)
    if n == 0:
        return float("nan")
    k = len(LEVELS)
    idx = {v: i for i, v in enumerate(LEVELS)}
    w = [[((i - j) / (k - 1)) ** 2 if weighted else float(i != j) for j in range(k)] for i in range(k)]
    seen = Counter((idx[x], idx[y]) for x, y in zip(a, b))
    pa, pb = Counter(idx[x] for x in a), Counter(idx[y] for y in b)
    observed = sum(w[i][j] * c for (i, j), c in seen.items()) / n
    expected = sum(w[i][j] * pa[i] * pb[j] for i in range(k) for j in range(k)) / (n * n)
    return 1.0 if expected == 0 else 1 - observed / expected


def graded_split(row_id: str) -> str:
    """"tune" or "test" for a hand-graded row, from its id only (see the module docstring)."""
    n = int(row_id[1:]) if row_id[1:].isdigit() else 0
    if 1 <= n <= FIRST_SET:
        return "tune" if n % 3 == 1 else "test"
    return "tune" if split_of(row_id) == "tune" else "test"


def load_graded(path: Path = GRADED) -> list[dict]:
    try:
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, ValueError) as exc:
        raise InputError(f"无法读取评分样本 {path}：{exc}") from exc


def quiz(pipeline, questions=(), graded_path: Path = GRADED) -> GroupReport:
    index = pipeline.index
    items = bank(index.chunks, index.lexicon)
    by_id = {it.id: it for it in items}
    grader = grader_for(index)
    report = GroupReport("练习（quiz）：简答评分与人工评分的一致性", COLUMNS,
                         failure_title="与人工评分不一致的调参集回答（留出集只计数）：")
    pairs: dict[str, list[tuple[float, float]]] = {"tune": [], "test": []}
    for row in load_graded(graded_path):
        item = by_id.get(row["item"])
        if item is None:
            raise InputError(f"评分样本 {row['id']} 的题目 {row['item']} 不在题库中（题库改了？）。")
        got = grader.grade(item, row["answer"]).score
        split = graded_split(row["id"])
        pairs[split].append((float(row["grade"]), got))
        if got != float(row["grade"]) and split == "tune":  # held-out rows are counted, never shown
            report.failures.append(f"{row['id']} [{split}/{row.get('type')}] 人工 {row['grade']} "
                                   f"评分器 {got}：{row['answer'][:40]}")
    for name, rows in (("tune（调参）", pairs["tune"]), ("test（报告）", pairs["test"]),
                       ("全部", pairs["tune"] + pairs["test"])):
        hand, auto = [h for h, _ in rows], [g for _, g in rows]
        report.rows[name] = {"n": len(rows), "κ": cohen_kappa(hand, auto),
                             "加权κ": cohen_kappa(hand, auto, weighted=True),
                             "一致率": sum(h == g for h, g in rows) / max(1, len(rows))}
    bad = problems(items, index.chunks)
    report.notes.append(f"题库 {len(items)} 题；出处核对与判断句核对：{'全部通过' if not bad else '；'.join(bad[:5])}")
    for section, kinds in counts_by_section(items).items():
        per = "，".join(f"{KIND_NAMES[k]} {n}" for k, n in kinds.items())
        report.notes.append(f"{' › '.join(section)}：{sum(kinds.values())} 题（{per}）")
    return report
