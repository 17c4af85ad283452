"""Grading a practice answer: exact for 填空/选择/判断, key points covered for 简答 (partial credit).

简答: each key point is a span of the book. Its words (the jieba tokenizer with the book lexicon) are weighted
by how rare they are in the book (idf over its sentences), words the question itself gives away are dropped,
and a point counts as covered by the share of that weight the answer contains. A book term the answer does not
use whole is credited by the share of it its word pieces cover (「民生问题」 → 民生 + 问题: 「民生难题」
covers half). A point that fills a slot — a role (「实质是……」) or a 「以……为原则」 frame — is not matched
against a clause of the answer that names another slot of the item, so swapped roles earn nothing, and a
clause that denies (「不是」「不在于」「不必」…, unless the point itself says so) earns nothing either
(「不是A，而是B」: B counts, for the slot A was denied for). A half-covered point counts as covered when a
clause of the answer says nothing but words of that point (a terse summary in the book's words), and an answer
that only restates the question (its heading, 「地位和作用」) earns nothing. A clause that names a point's
slot and then says only words of that point covers it however little it says (「原则：为人民服务」), the
slot's name being the question's word, not the answer's; a slot named and filled with nothing of its point
(「以行政命令为工作手段」) is wrong, not missing, and keeps the answer from full marks. A clause that names a
role of the book the point does not fill (「第二是实质密切党群关系」 for the 第一……第四) says nothing of it.
A word of the question still counts for a point when it sets that point apart from the other points: under
「……地位与作用」, 作用 says 「群众工作的作用」, and 地位 counts for 「群众工作的历史地位」 beside 历史 (群众工作,
in every point, stays the question's). A point the book says in several clauses is said at least as well as
its best-said clause (「处理好人民内部矛盾」 for 「正确处理人民内部矛盾，推动社会文明进步，是……可持续之基」).
Answers in 繁体 are read as 简体 (OpenCC t2s), the book's script. The item's grade follows the rubric of
tests/data/quiz_graded.jsonl: 1 when at least FULL_SHARE of the points are covered, 0.5 when at least
HALF_SHARE, else 0.

The constants were chosen on the tune split of the hand-graded answers only (`python -m rag eval --group
quiz` reports agreement on the held-out rest). Cosine matching with the embedder was tried on tune and left
out: it did not agree better with the hand grades when its thresholds were chosen on five items and checked
on the sixth (bench/RESULTS.md, Practice).
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from typing import Iterable, Sequence

from rag.study.mine import ROLES
from rag.study.quiz import FALSE, TRUE, Item
from rag.text.fold import squeeze
from rag.text.tokenizer import base_dictionary

# Chosen on the tune split (see the module docstring). Re-checked on the tune split of 198 answers (g01–g515):
# over POINT_FULL 0.5–0.7, POINT_HALF 0.2–0.35, TOP_WORDS 4–8, FULL_SHARE 0.75–0.8, HALF_SHARE 0.2–0.3 no
# setting agrees with more tune answers (κ 0.795); chosen on five of the six items, three folds pick these
# values and three a neighbour (POINT_HALF 0.3, POINT_FULL 0.5, FULL_SHARE 0.75): leave-one-item-out κ 0.772
# (`python -m bench.grader_disagreements --loio`).
POINT_FULL = 0.6  # share of a point's word weight that covers it
POINT_HALF = 0.35  # … that half-covers it
TOP_WORDS = 4  # a long point is covered by its most telling words: weight counted over at most this many
FULL_SHARE = 0.8  # rubric: share of the points for full marks
HALF_SHARE = 0.25  # … for half marks

_PUNCT = re.compile(r"[\s“”‘’\"'「」『』《》（）()【】\[\]，。、；：！？,.;:!?…·—\-]+")
_ROLE_AT = re.compile(rf"({'|'.join(ROLES)})")
_ROLE_NAMED = re.compile(rf"是({'|'.join(ROLES)})|({'|'.join(ROLES)})(?:是|在于|：|:)")
_FRAME = re.compile(r"以(.{1,60})为([^为]{1,8})")  # 「以正确运用党的群众路线为根本方法」: content, slot
_CLAUSES = re.compile(r"[，；。,;！？!?\n]+|、(?=以)")
_POINT_CLAUSES = re.compile(r"[，；。]+")  # a key point's own clauses (the book's punctuation)
_SAYS = re.compile(r"是|：|:|在于")  # 「实质是……」「原则：……」: what comes before names the slot
_GOES_ON = ("而是", "而在于", "而")  # 「不是A，而是B」: B is still about A's slot
_DENY = ("不是", "不在于", "并非", "并不", "而非", "不必", "不用", "无需", "不需要", "没有", "不能", "不应")
_AND = re.compile(r"以及|和|与|及")  # 「地位和作用」 restates 「地位与作用」
_YES = {"对", "正确", "是", "√", "✓", "t", "true", "yes", "y", "1"}
_NO = {"错", "错误", "否", "不对", "×", "✗", "x", "f", "false", "no", "n", "0"}


@dataclass(frozen=True)
class Grade:
    score: float  # 0, 0.5 or 1
    covered: tuple[float, ...] = ()  # 简答: credit of each key point (0, 0.5, 1)
    share: float = 0.0  # 简答: mean point credit


@dataclass(frozen=True)
class Point:
    """A key point: what must be said, and the slot it fills with the words that name that slot."""

    text: str
    slot: str = ""
    names: tuple[str, ...] = ()
    role: bool = False  # a 「实质是……」 role, asked for by name in the prompt


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
        self._dictionary = base_dictionary()[0]  # jieba's own words (shared, read once per process)

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
        answer = simplified(answer)  # the book is in 简体: 「推動經濟社會發展」 says 推动经济社会发展
        if echoes(answer, item.prompt, item.points):  # 「党的群众工作的地位和作用」: the question's heading
            return Grade(0.0, tuple(0.0 for _ in item.points), 0.0)
        given = {w for e in item.exclude + (item.prompt,) for w in self._words(e)}
        points = self.points(item.points)
        clauses = _named_clauses(answer, points)
        if all(p.role for p in points) and not any(named for _, named in clauses):
            # roles asked in order and answered in order without naming them: 「推动发展、密切党群关系、…」
            parts = [x for x in re.split(r"[，、；。,;\s]+", answer) if x]
            covered = tuple(self.credit(p.text, parts[i:i + 1], given) for i, p in enumerate(points))
        else:
            covered = tuple(self.slot_credit(p, clauses, self._given_for(p, points, given)) for p in points)
        share = sum(covered) / max(1, len(covered))
        score = 1.0 if share >= FULL_SHARE - 1e-9 else 0.5 if share >= HALF_SHARE - 1e-9 else 0.0
        if score == 1.0 and _misfilled(points, covered, clauses):
            score = 0.5  # rubric: a slot filled against the book is wrong, not merely missing
        return Grade(score, covered, share)

    def points(self, texts: Sequence[str]) -> list[Point]:
        """Each key point split into what must be said and the slot it fills (the slot's own words, less
        those several slots share, name it: 「工作对象」 is named by 对象)."""
        raw = [_split_point(t) for t in texts]
        slot_words = [set(self._words(slot)) for _, slot, _ in raw]
        shared = {w for w, c in Counter(w for s in slot_words for w in s).items() if c > 1}
        out = []
        for (text, slot, role), words in zip(raw, slot_words):
            names = (slot, *_aliases(slot)) if role else (slot, *sorted(words - shared))
            out.append(Point(text, slot, tuple(n for n in names if n), role))
        return out

    def credit(self, point: str, parts: Sequence[str], given: set[str] = frozenset(),
               filled: Sequence[str] = ()) -> float:
        """Credit of what a point must say, against the clauses of the answer that may say it: 1, 0.5 or 0.
        A half-covered point counts as covered when one of those clauses says nothing but words of the point:
        a terse summary in the book's own words (「其次为群众谋利益，获得群众基础」); so does a point however
        little of it is said when a clause of `filled` (those that name the point's slot) says nothing but its
        words: 「原则：为人民服务」 for 「以践行党的全心全意为人民服务的宗旨为原则」."""
        share = self.share(point, "；".join(parts), given)
        if share > 0 and any(self._only_from(part, point, given) for part in filled):
            return 1.0
        if share < POINT_HALF:
            return 0.0
        if share >= POINT_FULL or any(self._only_from(part, point, given) for part in parts):
            return 1.0
        return 0.5

    def _given_for(self, point: Point, points: Sequence[Point], given: set[str]) -> set[str]:
        """The question's words, less those that set this point apart from the other points: 「群众工作的作用」
        under 「……地位与作用」 is said by 作用, 「群众工作的历史地位」 by 历史 and 地位 (群众工作 is in the
        other points too, so it stays the question's)."""
        words = set(self._point_words(point.text, given))
        others = {w for p in points if p is not point for w in self._point_words(p.text, given)}
        return given - (words - others)

    def _point_words(self, point: str, given: set[str]) -> list[str]:
        """A point's words, a term that holds words of the question taken as its pieces: the heading
        「群众工作的作用」 under 「……地位与作用」 is 群众工作 + 作用."""
        out = []
        for w in self._words(point):
            pieces = self._pieces(w)
            out.extend(pieces if w not in given and any(p in given for p in pieces) else [w])
        return out

    def slot_credit(self, point: Point, clauses: Sequence[tuple[str, set[str]]], given: set[str]) -> float:
        """`credit` of a point against the clauses that may say it; the words that name its slot
        (「对象：」「出发点和落脚点是」) are the question's, not the answer's."""
        said = _said_for(point, clauses)
        if not point.slot:
            return self.credit(point.text, said, given)
        filled = [c for c, named in clauses if point.slot in named and c in said]
        names = {w for n in (point.slot, *point.names) for w in self._words(n)}
        return self.credit(point.text, said, given | names, filled)

    def _only_from(self, part: str, point: str, given: set[str]) -> bool:
        """Every word of `part` but the question's own is in `point` (whole or by its pieces)."""
        words = [w for w in self._words(part) if w not in given]
        text = plain(point)
        return bool(words) and all(self._found(w, text) >= 1.0 for w in words)

    def share(self, point: str, answer: str, given: set[str] = frozenset()) -> float:
        """The share of a point's (top) word weight that the answer contains, 0–1. A point the book says in
        several clauses is said at least as well as its best-said clause (one with words besides the
        question's): 「处理好人民内部矛盾」 says 「正确处理人民内部矛盾，推动社会文明进步，是……可持续之基」."""
        whole = self._share(point, answer, given)
        clauses = [c for c in _POINT_CLAUSES.split(point) if c]
        if len(clauses) < 2:
            return whole
        return max([whole] + [self._share(c, answer, given) for c in clauses
                              if any(w not in given for w in self._point_words(c, given))])

    def _share(self, point: str, answer: str, given: set[str]) -> float:
        words = [w for w in dict.fromkeys(self._point_words(point, given)) if w not in given]
        words = words or self._words(point)
        if not words:
            return 1.0 if plain(point) in plain(answer) else 0.0
        text = plain(answer)
        found = sorted(((self.weight(w), self._found(w, text)) for w in words), reverse=True)
        top = found[:TOP_WORDS] if len(found) > TOP_WORDS else found
        total = sum(wt for wt, _ in top)
        got = sum(wt * hit for wt, hit in found)  # any of the point's words counts towards its top weight
        return min(1.0, got / total) if total else 0.0

    def _found(self, word: str, text: str) -> float:
        """1 when the word is there; else the share of it covered by those of its pieces that are."""
        if word in text:
            return 1.0
        return sum(len(p) for p in self._pieces(word) if p in text) / len(word)

    def _pieces(self, word: str) -> list[str]:
        """The shorter words (the book's or jieba's) a term is made of, longest first from the left:
        民生问题 → 民生, 问题."""
        out, i = [], 0
        while i < len(word) - 1:
            j = next((j for j in range(len(word) - (i == 0), i + 1, -1) if self._is_word(word[i:j])), i)
            if j > i:
                out.append(word[i:j])
            i = max(j, i + 1)
        return out

    def _is_word(self, s: str) -> bool:
        return s in self._idf or self._dictionary.get(s, 0) > 0


@lru_cache(maxsize=1)
def _t2s():
    import opencc

    return opencc.OpenCC("t2s")


def simplified(text: str) -> str:
    """繁体 → 简体 (OpenCC t2s, as the questions of rag.retrieve.query); 简体 text is left as it is."""
    return _t2s().convert(text) if text else text


def _split_point(point: str) -> tuple[str, str, bool]:
    """(what must be said, the slot it fills, whether the slot is a role): 「实质是密切党群关系」 →
    (密切党群关系, 实质, True); 「以群众路线为根本方法」 → (群众路线, 根本方法, False)."""
    role = _ROLE_AT.match(point)
    if role:
        return point[role.end():].lstrip("是"), role.group(1), True
    frame = _FRAME.fullmatch(point)
    if frame:
        return frame.group(1), frame.group(2), False
    return point, "", False


def _aliases(role: str) -> tuple[str, ...]:
    """「目的」 names 根本目的 too."""
    return (role[2:],) if role.startswith("根本") else ()


def _named_clauses(answer: str, points: Sequence[Point]) -> list[tuple[str, set[str]]]:
    """The answer's clauses, each with the slots of `points` it names (a 「而是……」 clause goes on with the
    slots of the one before it; in 「全体党员以群众为对象」 only the frame names 对象)."""
    out: list[tuple[str, set[str]]] = []
    for clause in (c for c in _CLAUSES.split(answer) if c and c.strip()):
        frame = _FRAME.search(clause)
        if frame and frame.start() > 0:
            out.append((clause[:frame.start()], set()))
            clause = clause[frame.start():]
        head = frame.group(2) if frame else _SAYS.split(clause, maxsplit=1)[0] if _SAYS.search(clause) else ""
        named = {p.slot for p in points if p.slot and any(n in head for n in p.names)}
        if not named and out and clause.lstrip().startswith(_GOES_ON):
            named = set(out[-1][1])
        out.append((clause, named))
    return out


def _said_for(point: Point, clauses: Sequence[tuple[str, set[str]]]) -> list[str]:
    """The clauses that may say this point: those naming no slot or its own, not denying it, and not about
    a role of the book the point is not (「第二是实质密切党群关系」 says no point of the 第一……第四)."""
    return [c for c, named in clauses if (not named or point.slot in named)
            and not any(d in c and d not in point.text for d in _DENY)
            and not any(r not in point.text and r not in point.names for r in _roles_named(c))]


def _misfilled(points: Sequence[Point], covered: Sequence[float],
               clauses: Sequence[tuple[str, set[str]]]) -> bool:
    """A slot the answer names and fills with nothing of its point: 「以行政命令为工作手段」."""
    return any(p.slot and c == 0.0 and any(p.slot in named for _, named in clauses)
               for p, c in zip(points, covered))


def _roles_named(clause: str) -> set[str]:
    """The roles of the book a clause names as such: 「实质是……」「……是核心」「第二是实质……」 (not the plain
    word: 「基础、生命力」)."""
    return {a or b for a, b in _ROLE_NAMED.findall(clause)}


def echoes(answer: str, prompt: str, points: Sequence[str] = ()) -> bool:
    """The answer only restates (part of) the question: its text, conjunctions aside, is in the prompt, and
    it does not say a key point whole."""
    said = _AND.sub("", plain(answer))
    return (bool(said) and said in _AND.sub("", plain(prompt))
            and not any(_AND.sub("", plain(p)) in said for p in points))


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
