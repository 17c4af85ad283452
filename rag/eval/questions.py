"""Question sets (JSONL) and the report every metric group fills in."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from rag.errors import InputError


Split = Literal["tune", "heldout"]
TUNE_SHARE = 40  # percent of the questions (by a fixed hash of the id) every constant is chosen on


def split_of(question_id: str) -> Split:
    """tune (40 %) or heldout (60 %), fixed by the sha256 of the id: never by looking at the questions."""
    return "tune" if int(hashlib.sha256(question_id.encode()).hexdigest(), 16) % 100 < TUNE_SHARE else "heldout"


@dataclass(frozen=True)
class Part:
    """One of the things a compound question asks; a part the book does not cover is `answerable` False."""

    question: str
    answerable: bool = True
    answer_phrases: tuple[str, ...] = ()
    evidence: tuple[str, ...] = ()
    pointer: str | None = None


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
    parts: tuple[Part, ...] = ()  # compound questions: what each part asks

    @property
    def split(self) -> Split:
        return split_of(self.id)


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
    summary: dict[str, float] = field(default_factory=dict)  # the headline figures, for --json and the docs


def load_questions(path: Path) -> list[Question]:
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
            parts = tuple(Part(p["question"], bool(p.get("answerable", True)),
                               tuple(p.get("answer_phrases") or ()), tuple(p.get("evidence") or ()),
                               p.get("pointer")) for p in d.get("parts") or ())
            out.append(Question(**{**d, "history": tuple(d.get("history") or ()),
                                   "evidence": tuple(d.get("evidence") or ()),
                                   "answer_phrases": tuple(d.get("answer_phrases") or ()), "parts": parts}))
        except (ValueError, TypeError) as exc:
            raise InputError(f"问题集 {path} 第 {n} 行无效（{exc}）。") from exc
    return out


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
