"""The teacher's view as pure functions: the question log, the 👍/👎 feedback and the practice results,
counted by book, 章, 节 or page. No streamlit here; pages/2_教师视图.py draws what these return.

A question is placed where its first citation is; a refusal has none, so it is placed under 「（书中未找到）」.
A 👎 is placed at the first chunk it cited (looked up in the index; 「（段落已不在索引中）」 if a rebuild
dropped it). A practice answer is placed at its item's answer key and counts as wrong when it scored below 1.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any, Callable, Iterable, Literal, Mapping, Sequence

from rag.study.history import where
from rag.types import Chunk

Level = Literal["book", "chapter", "section", "page"]
LEVELS: tuple[Level, ...] = ("book", "chapter", "section", "page")
LEVEL_NAMES = {"book": "书", "chapter": "章", "section": "节", "page": "页"}
COUNTS = ("提问", "拒答", "差评", "作答", "答错")
NOT_FOUND = "（书中未找到）"
GONE = "（段落已不在索引中）"
NONE = "（无）"


def read_feedback(path: Path) -> list[dict[str, Any]]:
    """The feedback log's records; a line that is not JSON (a crash mid-write elsewhere) is skipped."""
    if not path.exists():
        return []
    out = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict):
            out.append(rec)
    return out


def _key(loc: Mapping[str, Any], level: Level) -> tuple[str, ...]:
    depth = LEVELS.index(level) + 1
    return tuple(str(loc.get(f) or NONE) for f in LEVELS[:depth])


def aggregate(turns: Iterable[Mapping[str, Any]], feedback: Iterable[Mapping[str, Any]],
              results: Iterable[Mapping[str, Any]], chunk: Callable[[str], Chunk | None],
              level: Level = "section") -> list[dict[str, Any]]:
    """One row per place at `level` (book › 章 › 节 › page): the counts of COUNTS, most asked first."""
    table: dict[tuple[str, ...], dict[str, int]] = {}

    def add(loc: Mapping[str, Any], column: str) -> None:
        row = table.setdefault(_key(loc, level), dict.fromkeys(COUNTS, 0))
        row[column] += 1

    for t in turns:
        loc = t if t.get("book") else {"book": NOT_FOUND}
        add(loc, "提问")
        if t.get("refused"):
            add(loc, "拒答")
    for f in feedback:
        if f.get("rating") != 0:  # 0 = 👎 (st.feedback thumbs); 1 = 👍, None = cleared
            continue
        ids = f.get("chunk_ids") or []
        c = chunk(ids[0]) if ids else None
        add(where(c) if c is not None else {"book": GONE if ids else NOT_FOUND}, "差评")
    for r in results:
        add(r, "作答")
        if float(r.get("score", 0)) < 1:
            add(r, "答错")
    rows = [dict(zip(LEVELS, k)) | v for k, v in table.items()]
    return sorted(rows, key=lambda r: (-r["提问"], -r["答错"], tuple(str(r.get(f, "")) for f in LEVELS)))


def columns(level: Level) -> list[str]:
    return list(LEVELS[: LEVELS.index(level) + 1]) + list(COUNTS)


def to_csv(rows: Sequence[Mapping[str, Any]], level: Level) -> str:
    """The table as CSV (UTF-8 with a BOM, so spreadsheet programs read the Chinese)."""
    out = io.StringIO()
    cols = columns(level)
    w = csv.writer(out)
    w.writerow([LEVEL_NAMES.get(c, c) for c in cols])
    for r in rows:
        w.writerow([r.get(c, "") for c in cols])
    return "\ufeff" + out.getvalue()


def totals(rows: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    out = dict.fromkeys(COUNTS, 0)
    for r in rows:
        for c in COUNTS:
            out[c] += int(r[c])
    return out
