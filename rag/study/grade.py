"""Grading a practice answer: exact for 填空/选择/判断, key points covered for 简答 (partial credit).

简答: each key point is a span of the book. Its words (the jieba tokenizer with the book lexicon) are weighted
by how rare they are in the book (idf over its sentences), words the question itself gives away are dropped,
and a point counts as covered by the share of that weight the answer contains (a long word also half-counts
when some of its two-character pieces are there: 「密切党和群众的关系」 for 「密切党群关系」 does not). A point
that names a role (「实质是……」) is matched only against what the answer says after that role, so swapped
roles earn nothing. The item's grade follows the rubric of tests/data/quiz_graded.jsonl: 1 when at least
FULL_SHARE of the points are covered, 0.5 when at least HALF_SHARE, else 0.

The thresholds were tuned on the tune third of the hand-graded answers only (`python -m rag eval --group
quiz` reports agreement on the other two thirds).
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass
from typing import Iterable, Sequence

from rag.study.mine import ROLES
from rag.study.quiz import FALSE, TRUE, Item
from rag.text.fold import squeeze

# Tuned on the tune split (see the module docstring).
POINT_FULL = 0.6  # share of a point's word weight that covers it
POINT_HALF = 0.25  # … that half-covers it
TOP_WORDS = 6  # a long point is covered by its most telling words: weight counted over at most this many
FULL_SHARE = 0.8  # rubric: share of the points for full marks
HALF_SHARE = 0.25  # … for half marks

_PUNCT = re.compile(r"[\s“”‘’\"'「」『』《》（）()【】\[\]，。、；：！？,.;:!?…·—\-]+")
_ROLE_AT = re.compile(rf"({'|'.join(ROLES)})")
_YES = {"对", "正确", "是", "√", "✓", "t", "true", "yes", "y", "1"}
_NO = {"错", "错误", "否", "不对", "×", "✗", "x", "f", "false", "no", "n", "0"}


@dataclass(frozen=True)
class Grade:
    score: float  # 0, 0.5 or 1
    covered: tuple[float, ...] = ()  # 简答: credit of each key point (0, 0.5, 1)
    share: float = 0.0  # 简答: mean point credit


def plain(s: str) -> str:
    """For comparing short answers: NFKC, lower case, no spaces, quotes or punctuation."""
    return _PUNCT.sub("", unicodedata.normalize("NFKC", s)).lower()


def judge_value(answer: str) -> str | None:
    a = plain(answer)
    return TRUE if a in _YES else FALSE if a in _NO else None


class Grader:
    """Grades answers to the items of one library; built once (it holds the book's word weights)."""

    def __init__(self, tokenizer, texts: Iterable[str]) -> None:
        self.tokenizer = tokenizer
        docs = [set(self._words(t)) for t in texts]
        df = Counter(w for d in docs for w in d)
        n = max(1, len(docs))
        self._idf = {w: math.log((n + 1) / (c + 1)) + 1.0 for w, c in df.items()}
        self._unseen = math.log(n + 1) + 1.0

    def _words(self, text: str) -> list[str]:
        return [w for w in self.tokenizer.tokens(squeeze(text)) if len(w) >= 2]

    def weight(self, word: str) -> float:
        return self._idf.get(word, self._unseen)

    def grade(self, item: Item, answer: str) -> Grade:
        if item.kind == "short":
            return self.short(item, answer)
        if item.kind == "judge":
            ok = judge_value(answer) == item.answer
        elif item.kind == "choice":
            ok = plain(answer) == plain(item.answer) or _letter(answer, item) == item.answer
        else:
            ok = bool(plain(answer)) and plain(answer) == plain(item.answer)
        return Grade(1.0 if ok else 0.0)

    def short(self, item: Item, answer: str) -> Grade:
        given = {w for e in item.exclude + (item.prompt,) for w in self._words(e)}
        if all(_ROLE_AT.match(p) for p in item.points) and not _ROLE_AT.search(answer):
            # roles asked in order and answered in order without naming them: 「推动发展、密切党群关系、…」
            parts = [x for x in re.split(r"[，、；。,;\s]+", answer) if x]
            covered = tuple(self.point(_ROLE_AT.sub("", p, count=1).lstrip("是"), parts[i] if i < len(parts)
                                       else "", given) for i, p in enumerate(item.points))
        else:
            covered = tuple(self.point(p, answer, given) for p in item.points)
        share = sum(covered) / max(1, len(covered))
        score = 1.0 if share >= FULL_SHARE - 1e-9 else 0.5 if share >= HALF_SHARE - 1e-9 else 0.0
        return Grade(score, covered, share)

    def point(self, point: str, answer: str, given: set[str] = frozenset()) -> float:
        """Credit of one key point: 1, 0.5 or 0."""
        role = _ROLE_AT.match(point)
        if role:
            answer = _after_role(answer, role.group(1))
            point = point[role.end():].lstrip("是")
        words = [w for w in dict.fromkeys(self._words(point)) if w not in given] or self._words(point)
        if not words:
            return 1.0 if plain(point) in plain(answer) else 0.0
        text = plain(answer)
        found = sorted(((self.weight(w), _found(w, text)) for w in words), reverse=True)
        top = found[:TOP_WORDS] if len(found) > TOP_WORDS else found
        total = sum(wt for wt, _ in top)
        got = sum(wt * hit for wt, hit in found)  # any of the point's words counts towards its top weight
        share = min(1.0, got / total) if total else 0.0
        return 1.0 if share >= POINT_FULL else 0.5 if share >= POINT_HALF else 0.0


def _found(word: str, text: str) -> float:
    if word in text:
        return 1.0
    if len(word) >= 3:
        pieces = [word[i:i + 2] for i in range(len(word) - 1)]
        return 0.5 * sum(p in text for p in pieces) / len(pieces)
    return 0.0


def _after_role(answer: str, role: str) -> str:
    """What the answer says after naming `role`, up to the next role or the end of its clause."""
    i = answer.find(role)
    if i < 0:
        return ""
    rest = answer[i + len(role):]
    nxt = _ROLE_AT.search(rest)
    rest = rest[: nxt.start()] if nxt else rest
    return re.split(r"[。；;\n]", rest, maxsplit=1)[0]


def _letter(answer: str, item: Item) -> str | None:
    a = plain(answer).upper()
    if len(a) == 1 and "A" <= a <= chr(ord("A") + len(item.options) - 1):
        return item.options[ord(a) - ord("A")]
    return None


def grades_of(grader: Grader, items: Sequence[Item], answers: Sequence[str]) -> list[Grade]:
    return [grader.grade(it, a) for it, a in zip(items, answers)]


def grader_for(index) -> Grader:
    """The grader of an index's books: word weights over their body sentences."""
    from rag.text.sentences import split_sentences

    texts = [c.text[a:b] for c in index.chunks if c.kind == "body" for a, b in split_sentences(c.text)]
    return Grader(index.tokenizer, texts)
