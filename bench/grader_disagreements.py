"""The 简答 grader on the TUNE rows of tests/data/quiz_graded.jsonl only (issue 17): κ, the rows where it and
the hand grade differ, and leave-one-item-out κ over the grid of its constants.

    .venv/bin/python -m bench.grader_disagreements          # tune κ and the tune disagreements
    .venv/bin/python -m bench.grader_disagreements --loio   # + leave one item out

Leave one item out: the five constants of rag/study/grade.py are chosen by κ on the tune rows of five items
(every rule of the grader applies to each setting), the sixth item's tune rows are graded with them, and the
six folds are pooled. A tie keeps the shipped values, else the setting nearest them.

Held-out ("test") rows are never graded or printed here: `python -m rag eval --group quiz` reports them.
"""

from __future__ import annotations

import argparse
import itertools
from dataclasses import dataclass

from rag.config import Settings
from rag.eval.quiz import cohen_kappa, graded_split, load_graded
from rag.pipeline import Pipeline
from rag.study import grade as G
from rag.study.quiz import bank

# The grid the constants were chosen over (bench/RESULTS.md, Practice).
GRID = {"TOP_WORDS": (4, 6, 8), "POINT_FULL": (0.5, 0.55, 0.6, 0.65, 0.7),
        "POINT_HALF": (0.2, 0.25, 0.3, 0.35), "FULL_SHARE": (0.75, 0.8), "HALF_SHARE": (0.2, 0.25, 0.3)}


@dataclass(frozen=True)
class Row:
    id: str
    item: str
    answer: str
    hand: float
    kind: str


def tune_rows() -> list[Row]:
    return [Row(r["id"], r["item"], r["answer"], float(r["grade"]), r.get("type", ""))
            for r in load_graded() if graded_split(r["id"]) == "tune"]


def settings() -> list[dict]:
    """The grid, nearest the shipped values first (grid steps along each axis, summed)."""
    shipped = {k: getattr(G, k) for k in GRID}

    def at(k: str, v: float) -> int:
        return min(range(len(GRID[k])), key=lambda i: abs(GRID[k][i] - v))

    def steps(s: dict) -> int:
        return sum(abs(at(k, s[k]) - at(k, shipped[k])) for k in GRID)

    grid = [dict(zip(GRID, v)) for v in itertools.product(*GRID.values())]
    return ([] if shipped in grid else [shipped]) + sorted(grid, key=steps)


def kappa(rows: list[Row], scores: list[float], keep=lambda r: True) -> float:
    pairs = [(r.hand, s) for r, s in zip(rows, scores) if keep(r)]
    return cohen_kappa([h for h, _ in pairs], [s for _, s in pairs])


def leave_one_item_out(grader: G.Grader, by_id: dict, rows: list[Row]) -> None:
    saved = {k: getattr(G, k) for k in GRID}
    graded: list[tuple[dict, list[float]]] = []
    try:
        for setting in settings():
            for k, v in setting.items():
                setattr(G, k, v)
            graded.append((setting, [grader.grade(by_id[r.item], r.answer).score for r in rows]))
    finally:
        for k, v in saved.items():
            setattr(G, k, v)
    pooled: list[float] = [0.0] * len(rows)
    for held in sorted({r.item for r in rows}):
        best, best_k = graded[0], -2.0
        for setting, scores in graded:
            k = kappa(rows, scores, lambda r: r.item != held)
            if k > best_k + 1e-12:
                best, best_k = (setting, scores), k
        for i, r in enumerate(rows):
            if r.item == held:
                pooled[i] = best[1][i]
                if r.hand != pooled[i]:
                    print(f"  missed {r.id} hand {r.hand:g} got {pooled[i]:g}")
        print(f"fold {held[-4:]}: {best[0]} (κ on the other five {best_k:.3f})")
    agree = sum(r.hand == s for r, s in zip(rows, pooled))
    print(f"leave one item out: κ {kappa(rows, pooled):.3f}  agree {agree} of {len(rows)}")
    top = max(graded, key=lambda g: kappa(rows, g[1]))
    print(f"best over the grid on all tune rows: κ {kappa(rows, top[1]):.3f} at {top[0]}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--loio", action="store_true", help="leave-one-item-out κ over the constants' grid")
    args = p.parse_args()
    index = Pipeline.load(Settings.from_env()).index
    by_id = {it.id: it for it in bank(index.chunks, index.lexicon)}
    grader = G.grader_for(index)
    rows = tune_rows()
    got = [grader.grade(by_id[r.item], r.answer) for r in rows]
    agree = sum(r.hand == g.score for r, g in zip(rows, got))
    print(f"tune n {len(rows)}  κ {kappa(rows, [g.score for g in got]):.3f}  agree {agree}")
    for r, g in zip(rows, got):
        if g.score != r.hand:
            cov = " ".join(f"{c:g}" for c in g.covered)
            print(f"{r.id} {r.item[-4:]} [{r.kind}] hand {r.hand:g} grader {g.score:g} ({cov}) {r.answer}")
    if args.loio:
        leave_one_item_out(grader, by_id, rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
