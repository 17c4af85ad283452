"""The refusal decision as a fitted model, against the hand rules: `python -m bench.refusal_fit [--features FILE]`.

Every tune question of tests/data/book_questions.jsonl is asked once (the pipeline as shipped); each time the
answer stage reaches the refusal decision (rag.answer.refusal.Scope.unloaded_entry; a compound question: once
per part) the signals the rules see (Signals below) are recorded with the label "out of scope" (the question's
type is out_of_scope, or the part is not answerable). Then, on those rows only:

- the rules without a score threshold (no sentence; a 目录 row whose text is not loaded named by number or by
  its title's new words) stay as they are; the rest of the rows go to the rules' thresholds or to a model;
- the hand rules (rag/answer/refusal.py: MIN_DENSE, MIN_COVERAGE, TITLE_MARGIN + TITLE_SLOPE, UNLOADED_TOPIC)
  are applied to the recorded signals as shipped, and with their thresholds re-chosen in each training fold;
- a model — a noisy-OR of one L2 logistic per group of signals (`--or`, default one group per kind of question
  the rules refuse), or one logistic (`--or ''`, signals `--use`) — is cross-validated in 5 folds grouped by
  question (sha256(FOLD_SALT + id) mod 5); its L2 strength and decision threshold are chosen inside each
  training fold by an inner cross-validation (nested), so no choice sees the outer fold;
- the model refitted on all tune rows, with the threshold chosen on its out-of-fold probabilities, is printed
  on the raw signals, with its out-of-fold reliability table.

Question-level figures count a question as refused when every decision it reached refused (a question answered
from the 目录/版权页 never reaches one and keeps its answer). Held-out questions are not read.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from rag.answer.booknav import ask_residual, pairs, topic_match
from rag.answer.refusal import FULL_COVERAGE, MIN_COVERAGE, MIN_DENSE, TITLE_MARGIN, TITLE_SLOPE, UNLOADED_TOPIC
from rag.config import ROOT, Settings, offline_environment
from rag.eval.questions import load_questions

QUESTIONS = ROOT / "tests" / "data" / "book_questions.jsonl"
FOLDS = 5
FOLD_SALT = os.environ.get("REFUSAL_FOLD_SALT", "fold:")  # another salt: another partition, to check luck
L2S = (0.01, 0.1, 1.0)  # ridge strengths tried (on standardised features), chosen by inner cross-validation
# A false refusal costs this many missed out-of-scope questions (the targets: ≤ 1 % against ≥ 97 %).
FP_COST = float(os.environ.get("REFUSAL_FP_COST", "3"))


def fold_of(qid: str) -> int:
    return int(hashlib.sha256(f"{FOLD_SALT}{qid}".encode()).hexdigest(), 16) % FOLDS


@dataclass(frozen=True)
class Signals:
    """What the refusal rules see of one question, and a few more signals."""

    empty: bool  # no sentence to answer from
    numbered: bool  # names a 目录 row whose text is not loaded by its number (rule 2)
    by_words: bool  # … or in words of its title the loaded text never uses (rule 2)
    dense: float  # cosine of the best sentence (rule 1)
    coverage: float  # weighted term coverage of the best sentence (rules 1, 2)
    coverage3: float  # the best coverage among the three best sentences (rule 3)
    closest: float  # the best cosine of any ranked sentence
    unloaded_title: float  # the best cosine of a 目录 title whose text is not loaded (−1: none)
    title_lead: float  # unloaded_title − closest (rule 3; −1 when there is no such title)
    topic: float  # balanced 目录 title match when its best row is not loaded, else 0 (rule 2)
    loaded_title: float  # the best cosine of a 目录 title whose text is loaded (−1: none)
    spread: float  # closest − the mean cosine of the ranked sentences: how much one sentence stands out
    novel: float  # share of the question's topic bigrams the loaded text never uses
    novel_title: int  # most such bigrams shared with one 目录 title whose text is not loaded


def signals(scope, own: str, text: str, ranked: Sequence, qvec: np.ndarray, book: str | None,
            known: dict) -> Signals:
    """The Signals of one decision (`known`: each book's loaded-text bigrams, filled on first use)."""
    facts = scope.facts.scope(own, book)
    numbered = any(f.numbered_unloaded(own) is not None for f in facts)
    by_words = any(f.unloaded_by_words(own) is not None for f in facts)
    topic = 0.0
    for f in scope.facts.scope(text, book):
        hit = topic_match(text, f.toc, min_score=0.0, chapter_first=True, balanced=True)
        if hit is not None and not f.is_loaded(hit.entry):
            topic = max(topic, hit.score)  # names_unloaded_part(text, s) ⇔ topic ≥ s
    asked = pairs(ask_residual(own))
    novel, novel_title = 0.0, 0
    for f in facts:
        if f.book.id not in known:
            known[f.book.id] = frozenset().union(*(pairs(c.text) for c in f.body))
        fresh = asked - known[f.book.id]
        novel = max(novel, len(fresh) / max(1, len(asked)))
        novel_title = max([novel_title, *(len(fresh & pairs(e.title)) for e in f.toc
                                          if e.title and not f.is_loaded(e))])
    rows = scope.titles(book)
    unloaded = [v for _, _, loaded, v in rows if not loaded]
    loaded = [v for _, _, is_loaded, v in rows if is_loaded]
    best_title = float(max(np.stack(unloaded) @ qvec)) if unloaded and ranked else -1.0
    loaded_title = float(max(np.stack(loaded) @ qvec)) if loaded else -1.0
    if not ranked:
        return Signals(True, numbered, by_words, 0.0, 0.0, 0.0, 0.0, best_title, -1.0, topic, loaded_title, 0.0,
                       novel, novel_title)
    closest = max(s.dense for s in ranked)
    return Signals(False, numbered, by_words, ranked[0].dense, ranked[0].coverage,
                   max(s.coverage for s in ranked[:3]), closest, best_title,
                   best_title - closest if unloaded else -1.0, topic, loaded_title,
                   closest - float(np.mean([s.dense for s in ranked])), novel, novel_title)


def collect(index: Path | None) -> list[dict]:
    """One row per refusal decision reached by a tune question (its signals, label and question id), and one
    per question with the refusal it got."""
    from rag.pipeline import Pipeline

    pipeline = Pipeline.load(Settings.from_env().with_overrides(index_dir=index))
    answerer, scope = pipeline.answerer, pipeline.answerer.scope
    rows: list[dict] = []
    current: list = []  # the question being asked and how many decisions it reached
    asking: list = []  # the queries being planned (a compound question plans its parts inside its own plan)
    known: dict = {}
    plan, unloaded_entry = answerer.plan, scope.unloaded_entry

    def planning(query, *args, **kwargs):
        asking.append(query)
        try:
            return plan(query, *args, **kwargs)
        finally:
            asking.pop()

    def recording(own, ranked, qvec, book):  # the first step of the refusal decision, called once per decision
        q, seen = current
        part = q.parts[seen[0]] if q.parts and seen[0] < len(q.parts) else None
        seen[0] += 1
        outside = (not q.answerable) if part is None else (not part.answerable)
        sig = signals(scope, own, asking[-1].text, ranked, qvec, book, known)
        rows.append({"id": q.id, "type": q.type, "outside": outside, **asdict(sig)})
        return unloaded_entry(own, ranked, qvec, book)

    answerer.plan, scope.unloaded_entry = planning, recording  # instance attributes: this process only
    for q in load_questions(QUESTIONS):
        if q.split != "tune":
            continue
        current[:] = [q, [0]]
        a = pipeline.ask(q.question, q.history)
        rows.append({"id": q.id, "type": q.type, "outside": not q.answerable, "final": True,
                     "refused": bool(a.refused)})
    return rows


# --- the decisions --------------------------------------------------------------------------------------------

def rules(r: dict) -> bool:
    """The hand rules of rag/answer/refusal.py with its thresholds, on the recorded signals."""
    if r["empty"] or r["numbered"] or (r["by_words"] and r["coverage"] < FULL_COVERAGE):
        return True
    if r["title_lead"] > TITLE_MARGIN + TITLE_SLOPE * r["coverage3"]:
        return True
    if r["coverage"] < MIN_COVERAGE and r["dense"] < MIN_DENSE:
        return True
    return r["coverage"] < FULL_COVERAGE and r["topic"] >= UNLOADED_TOPIC


def features(rows: list[dict], names: tuple[str, ...]) -> np.ndarray:
    return np.array([[float(r[n]) for n in names] for r in rows], dtype=np.float64)


GROUPS: list[list[int]] | None = None  # set by --or: the noisy-OR model's column groups


def fit(x: np.ndarray, y: np.ndarray, l2: float):
    return fit_or(x, y, l2, GROUPS) if GROUPS else fit_lr(x, y, l2)


def fit_lr(x: np.ndarray, y: np.ndarray, l2: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Standardise, then Newton's method on the L2-penalised log-loss (the intercept not penalised)."""
    mean, std = x.mean(0), x.std(0) + 1e-9
    z = np.hstack([np.ones((len(x), 1)), (x - mean) / std])
    w = np.zeros(z.shape[1])
    pen = np.full(z.shape[1], l2)
    pen[0] = 0.0
    for _ in range(50):
        p = 1 / (1 + np.exp(-z @ w))
        grad = z.T @ (p - y) + pen * w
        hess = (z * (p * (1 - p))[:, None]).T @ z + np.diag(pen + 1e-9)
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return w, mean, std


def fit_or(x: np.ndarray, y: np.ndarray, l2: float, groups: list[list[int]]):
    """Noisy-OR of one logistic per group of columns (P = 1 − Π(1 − σ(z_k))), one per kind of question the
    book cannot answer, like the rules; L2-penalised log-loss by Adam (the intercepts not penalised)."""
    mean, std = x.mean(0), x.std(0) + 1e-9
    z = (x - mean) / std
    ws = [np.zeros(len(g) + 1) for g in groups]
    for w in ws:
        w[0] = -2.0
    m = [np.zeros_like(w) for w in ws]
    v = [np.zeros_like(w) for w in ws]
    for step in range(1, 3001):
        q = [1 / (1 + np.exp(-(w[0] + z[:, g] @ w[1:]))) for w, g in zip(ws, groups)]
        p = np.clip(1 - np.prod([1 - qk for qk in q], axis=0), 1e-9, 1 - 1e-9)
        for k, (w, g) in enumerate(zip(ws, groups)):
            d = (p - y) * q[k] / p
            grad = np.concatenate([[d.sum()], z[:, g].T @ d]) + l2 * np.concatenate([[0.0], w[1:]])
            m[k] = 0.9 * m[k] + 0.1 * grad
            v[k] = 0.999 * v[k] + 0.001 * grad ** 2
            w -= 0.05 * (m[k] / (1 - 0.9 ** step)) / (np.sqrt(v[k] / (1 - 0.999 ** step)) + 1e-8)
    return ("or", ws, groups, mean, std)


def prob(model, x: np.ndarray) -> np.ndarray:
    if isinstance(model[0], str):
        _, ws, groups, mean, std = model
        z = (x - mean) / std
        return 1 - np.prod([1 - 1 / (1 + np.exp(-(w[0] + z[:, g] @ w[1:]))) for w, g in zip(ws, groups)], axis=0)
    w, mean, std = model
    return 1 / (1 + np.exp(-(w[0] + ((x - mean) / std) @ w[1:])))


def cost(refuse: np.ndarray, y: np.ndarray) -> float:
    return FP_COST * float(np.sum(refuse & (y == 0))) + float(np.sum(~refuse & (y == 1)))


def out_of_fold(x, y, folds, l2: float) -> np.ndarray:
    p = np.zeros(len(y))
    for k in np.unique(folds):
        train = folds != k
        p[~train] = prob(fit(x[train], y[train], l2), x[~train])
    return p


def choose(x, y, folds) -> tuple[float, float]:
    """(l2, threshold) with the least cost on out-of-fold probabilities (threshold: the median of the cuts
    between probabilities that reach it)."""
    best = (np.inf, 1.0, 0.5)
    for l2 in L2S:
        p = out_of_fold(x, y, folds, l2)
        grid = np.unique(np.concatenate([p, [0.0, 1.0]]))
        cuts = (grid[:-1] + grid[1:]) / 2
        costs = np.array([cost(p > t, y) for t in cuts])
        low = costs.min()
        ok = cuts[costs == low]
        t = float(np.median(ok))
        if low < best[0]:
            best = (low, l2, t)
    return best[1], best[2]


def nested(x, y, folds) -> np.ndarray:
    """Outer-fold decisions: l2 and threshold chosen on the other folds only (inner folds: the same groups)."""
    refuse = np.zeros(len(y), dtype=bool)
    for k in np.unique(folds):
        train = folds != k
        l2, t = choose(x[train], y[train], folds[train])
        refuse[~train] = prob(fit(x[train], y[train], l2), x[~train]) > t
    return refuse


# The hand rules' thresholds re-chosen inside each training fold (a fair, cross-validated figure for them).
GRID = {"min_dense": np.arange(0.85, 0.9001, 0.005), "min_coverage": (0.1, 0.2, 0.3, 0.4),
        "margin": np.arange(-0.005, 0.0201, 0.0025), "slope": (0.0, 0.015, 0.03), "topic": (0.5, 0.6, 0.7, 0.8, 1.01)}
SHIPPED = (MIN_DENSE, MIN_COVERAGE, TITLE_MARGIN, TITLE_SLOPE, UNLOADED_TOPIC)


def rule_grid(rows: list[dict]) -> tuple[np.ndarray, list[tuple[float, ...]]]:
    """Decisions of every setting of GRID on the rows (settings × rows), with the settings."""
    a = {k: np.array([float(r[k]) for r in rows]) for k in ("dense", "coverage", "coverage3", "title_lead", "topic")}
    out, settings = [], []
    for d in GRID["min_dense"]:
        for c in GRID["min_coverage"]:
            low = (a["coverage"] < c) & (a["dense"] < d)
            for m in GRID["margin"]:
                for sl in GRID["slope"]:
                    lead = a["title_lead"] > m + sl * a["coverage3"]
                    for t in GRID["topic"]:
                        out.append(low | lead | ((a["coverage"] < FULL_COVERAGE) & (a["topic"] >= t)))
                        settings.append((float(d), c, float(m), sl, t))
    return np.array(out), settings


def rules_cv(rows: list[dict], y: np.ndarray, folds: np.ndarray) -> np.ndarray:
    """Outer-fold decisions of the rules with their five thresholds chosen on the other folds (least cost;
    among equals, the setting nearest the shipped one)."""
    grid, settings = rule_grid(rows)
    near = np.array([sum(abs(a - b) / (abs(b) + 0.01) for a, b in zip(s, SHIPPED)) for s in settings])
    refuse = np.zeros(len(y), dtype=bool)
    for k in np.unique(folds):
        train = folds != k
        costs = FP_COST * (grid[:, train] & (y[train] == 0)).sum(1) + (~grid[:, train] & (y[train] == 1)).sum(1)
        best = np.flatnonzero(costs == costs.min())
        refuse[~train] = grid[best[np.argmin(near[best])], ~train]
    return refuse


# --- figures --------------------------------------------------------------------------------------------------

def question_level(finals: list[dict], decisions: list[dict], refuse: np.ndarray) -> tuple[int, int, int, int]:
    """(out of scope refused, out of scope n, answerable refused, answerable n) when the decision rows take
    `refuse`; questions without a decision row keep the refusal they got."""
    by_q: dict[str, list[bool]] = {}
    for r, d in zip(decisions, refuse):
        by_q.setdefault(r["id"], []).append(bool(d))
    tp = on = fp = an = 0
    for f in finals:
        refused = all(by_q[f["id"]]) if f["id"] in by_q else f["refused"]
        if f["outside"]:
            on, tp = on + 1, tp + refused
        else:
            an, fp = an + 1, fp + refused
    return tp, on, fp, an


def line(name: str, figures: tuple[int, int, int, int]) -> str:
    tp, on, fp, an = figures
    precision = tp / max(1, tp + fp)
    return (f"{name:<44} out of scope refused {tp}/{on} = {tp / max(1, on):.3f}   answerable refused "
            f"{fp}/{an} = {fp / max(1, an):.3f}   precision {precision:.3f}")


def reliability(p: np.ndarray, y: np.ndarray) -> list[str]:
    bins = (0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0001)
    out = ["| P(out of scope) | decisions | out of scope | observed share |", "|---|---|---|---|"]
    for lo, hi in zip(bins[:-1], bins[1:]):
        m = (p >= lo) & (p < hi)
        if m.any():
            out.append(f"| {lo:.1f}–{min(hi, 1.0):.1f} | {int(m.sum())} | {int(y[m].sum())} | {y[m].mean():.2f} |")
    return out


FEATURES = ("dense", "coverage", "coverage3", "title_lead", "topic")
DEFAULT_GROUPS = "dense+coverage+novel|title_lead+coverage3|topic+coverage"  # rule 1, rule 3, rule 2 (+ novel)


def main() -> None:
    offline_environment()
    ap = argparse.ArgumentParser()
    ap.add_argument("--index", type=Path, default=None)
    ap.add_argument("--features", type=Path, default=None,
                    help="read the recorded rows from this JSON file if it exists, else write them there")
    ap.add_argument("--use", default=",".join(FEATURES), help="comma-separated signals the model sees")
    ap.add_argument("--or", dest="groups", default=DEFAULT_GROUPS,
                    help="the noisy-OR model's groups of signals ('' for one logistic on --use)")
    args = ap.parse_args()
    global GROUPS
    if args.features is not None and args.features.exists():
        rows = json.loads(args.features.read_text(encoding="utf-8"))
    else:
        rows = collect(args.index)
        if args.features is not None:
            args.features.write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    finals = [r for r in rows if r.get("final")]
    decisions = [r for r in rows if not r.get("final")]
    names = tuple(args.use.split(","))
    if args.groups:
        parts = [g.split("+") for g in args.groups.split("|")]
        names = tuple(dict.fromkeys(n for g in parts for n in g))
        GROUPS = [[names.index(n) for n in g] for g in parts]
    hard = np.array([r["empty"] or r["numbered"] or (r["by_words"] and r["coverage"] < FULL_COVERAGE)
                     for r in decisions])
    soft = [r for r, h in zip(decisions, hard) if not h]
    x = features(soft, names)
    y = np.array([float(r["outside"]) for r in soft])
    folds = np.array([fold_of(r["id"]) for r in soft])
    print(f"tune: {len(finals)} questions, {len(decisions)} refusal decisions ({int(hard.sum())} by the rules "
          f"without a score threshold), {len(soft)} for the model ({int(y.sum())} out of scope); features {names}")
    print(line("hand rules (in-sample: chosen on tune)", question_level(finals, decisions,
                                                                        np.array([rules(r) for r in decisions]))))
    cv_rules = hard.copy()
    cv_rules[~hard] = rules_cv(soft, y, folds)
    print(line("hand rules, thresholds re-chosen per fold", question_level(finals, decisions, cv_rules)))
    model_refuse = hard.copy()
    model_refuse[~hard] = nested(x, y, folds)
    print(line("model, nested 5-fold CV on tune", question_level(finals, decisions, model_refuse)))
    l2, t = choose(x, y, folds)
    model = fit(x, y, l2)
    in_sample = hard.copy()
    in_sample[~hard] = prob(model, x) > t
    print(line("model refitted on all tune (in-sample)", question_level(finals, decisions, in_sample)))
    for w, g in (zip(model[1], model[2]) if GROUPS else [(model[0], list(range(len(names))))]):
        mean, std = model[-2][g], model[-1][g]
        raw = w[1:] / std
        print(f"l2 {l2}, threshold P > {t:.6g}; on the raw signals: logit = {w[0] - float(raw @ mean):+.6g} "
              + " ".join(f"{c:+.6g}·{names[i]}" for c, i in zip(raw, g)))
    print("out-of-fold reliability on tune (decisions the model takes):")
    print("\n".join(reliability(out_of_fold(x, y, folds, l2), y)))


if __name__ == "__main__":
    main()
