"""Sentence extraction for the default (no-LLM) answer: candidate sentences of the top hits, scored.

A sentence is scored by the embedding similarity of the question to that one sentence (not to its whole chunk)
and by how much of the question's weighted vocabulary it contains. Sentence vectors come from the index (or
are encoded once per chunk on first use) and are cached, so `ask` encodes only the question.
"""

from __future__ import annotations

import math
import re
import threading
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from rag.text.fold import spaceless as squeeze
from rag.store.lexical import terms
from rag.text.numerals import CN_DIGITS, ORDINAL_REF, cn_int
from rag.chunk import sentence_spans
from rag.types import Chunk

# Question words carry no topic; without them the weighted coverage measures the topic words only.
QUESTION_WORDS = frozenset("""什么 哪些 哪个 哪几个 哪几 几个 多少 怎么 怎样 如何 为什么 是否 书中 书里 本书 这本书 指
    方面 哪些方面 几个方面 哪几个方面 表现 主要 具体 体现 包括 内容 含义 意思 说 讲 谈 写 提到 提出 认为 列举 要求 应当 应该 怎么样 哪 是 有 哪里
    什么样 一种 要 呢 吗""".split())


@dataclass(frozen=True)
class Sentence:
    chunk: Chunk
    start: int  # offsets into chunk.text
    end: int
    rank: int  # rank of the chunk's hit (1 = best)
    hit_score: float

    @property
    def text(self) -> str:
        return self.chunk.text[self.start : self.end]


def encode_passages(embedder, stored: dict[str, np.ndarray], texts: Sequence[str]) -> np.ndarray:
    """Passage vectors of `texts`: the index's stored row (Index.passages) where it has one, the rest encoded
    together in one batch."""
    todo = [t for t in dict.fromkeys(texts) if t not in stored]
    found = dict(zip(todo, embedder.encode_passages(todo))) if todo else {}
    rows = [stored[t] if t in stored else found[t] for t in texts]
    return np.stack(rows).astype(np.float32, copy=False) if rows else np.zeros((0, embedder.dim), np.float32)


class SentenceStore:
    """Per-chunk sentence spans, term sets and vectors, computed on first use and shared by all threads."""

    def __init__(self, embedder, tokenizer, chunks: Sequence[Chunk], index_vectors=None,
                 stored: dict[str, np.ndarray] | None = None) -> None:
        self.embedder = embedder
        self.index_vectors = index_vectors  # Index.sentence_vectors: (spans, vectors) of a chunk
        self.stored = stored or {}  # Index.passages: the answer sentences that are not sentence units
        self.tokenizer = tokenizer
        self._spans: dict[str, list[tuple[int, int]]] = {}
        self._vectors: dict[str, np.ndarray] = {}
        self._terms: dict[tuple[str, int], frozenset[str]] = {}
        self._lock = threading.Lock()
        self.chunks = tuple(chunks)
        self._postings: dict[str, list[tuple[int, int, int]]] | None = None  # see holding
        self.idf = self._idf(chunks)

    def _idf(self, chunks: Sequence[Chunk]) -> dict[str, float]:
        df: dict[str, int] = {}
        for c in chunks:
            for t in set(terms(self.tokenizer, c.text)):
                df[t] = df.get(t, 0) + 1
        n = max(1, len(chunks))
        self._idf_unknown = math.log((n + 1) / 0.5)
        return {t: math.log((n + 1) / (d + 0.5)) for t, d in df.items()}

    def weight(self, term: str) -> float:
        return self.idf.get(term, self._idf_unknown)

    def spans(self, chunk: Chunk) -> list[tuple[int, int]]:
        found = self._spans.get(chunk.id)
        if found is None:
            found = sentence_spans(chunk)
            self._spans[chunk.id] = found
        return found

    def terms(self, s: Sentence) -> frozenset[str]:
        key = (s.chunk.id, s.start)
        found = self._terms.get(key)
        if found is None:
            found = frozenset(terms(self.tokenizer, s.text))
            self._terms[key] = found
        return found

    def holding(self, words: frozenset[str]) -> dict[int, list[Sentence]]:
        """The body sentences (not 目录 or 版权页 lines) holding any of `words`, by row of the store's chunks,
        rows in order: an inverted index over every body sentence's terms, built on first use (the
        answerer's warm), so a lexical search over the book's sentences looks at these only."""
        if self._postings is None:
            postings: dict[str, list[tuple[int, int, int]]] = {}
            for row, c in enumerate(self.chunks):
                if c.kind in ("toc", "front"):
                    continue
                for a, b in self.spans(c):
                    for t in self.terms(Sentence(c, a, b, 0, 0.0)):
                        postings.setdefault(t, []).append((row, a, b))
            self._postings = postings
        found: dict[int, list[Sentence]] = {}
        for row, a, b in sorted({p for w in words for p in self._postings.get(w, ())}):
            found.setdefault(row, []).append(Sentence(self.chunks[row], a, b, 0, 0.0))
        return found

    def vectors(self, chunks: Sequence[Chunk]) -> dict[str, np.ndarray]:
        """Sentence vectors per chunk id: taken from the index where it embedded or stored the very same span,
        the rest encoded together in one batch (then cached)."""
        with self._lock:
            missing = [c for c in dict.fromkeys(chunks) if c.id not in self._vectors]
            todo: list[tuple[Chunk, int]] = []
            for c in missing:
                known = self._indexed(c)
                rows = [known.get(span) for span in self.spans(c)]
                dim = self.embedder.dim
                self._vectors[c.id] = np.stack(rows) if rows and all(r is not None for r in rows) else \
                    np.array([r if r is not None else np.zeros(dim, np.float32) for r in rows], np.float32
                             ).reshape(len(rows), dim)
                todo += [(c, i) for i, r in enumerate(rows) if r is None]
            if todo:
                encoded = encode_passages(self.embedder, self.stored,
                                          [c.text[slice(*self.spans(c)[i])] for c, i in todo])
                for (c, i), vec in zip(todo, encoded):
                    self._vectors[c.id][i] = vec
            return {c.id: self._vectors[c.id] for c in chunks}

    def _indexed(self, chunk: Chunk) -> dict[tuple[int, int], np.ndarray]:
        """The index's own sentence vectors of this chunk, by span (empty for an index without them)."""
        if self.index_vectors is None:
            return {}
        try:
            spans, vecs = self.index_vectors(chunk.id)
        except KeyError:
            return {}
        return {tuple(span): np.asarray(v, np.float32) for span, v in zip(spans, vecs)}


@dataclass(frozen=True)
class Scored:
    sentence: Sentence
    score: float
    dense: float
    coverage: float


def question_terms(tokenizer, question: str) -> frozenset[str]:
    return frozenset(t for t in terms(tokenizer, question) if t not in QUESTION_WORDS)


def asked_kind(tokenizer, question: str) -> str | None:
    """What a list question asks for: the head of its last word that is not a question word — a Chinese
    compound ends in its head, so its last two characters (「书中列举了哪些方面的人民内部矛盾？」 → 人民内部矛盾
    → 矛盾; 「人民内部矛盾表现在哪些方面？」 too: 表现 and 方面 ask, 在 is no word of its own). A list whose items
    each name it (「有……的矛盾，有……的矛盾」) lists that kind."""
    words = [t for t in tokenizer.tokens(question) if t not in QUESTION_WORDS and len(t) >= 2]  # not 「在」
    return words[-1][-2:] if words else None


def coverage(store: SentenceStore, qterms: frozenset[str], have: frozenset[str]) -> float:
    """IDF-weighted share of the question's terms found in a sentence (0..1)."""
    return coverage_of(store, qterms)(have)


def coverage_of(store: SentenceStore, qterms: frozenset[str]) -> Callable[[frozenset[str]], float]:
    """`coverage` with the question's term weights looked up once, for scoring many sentences."""
    weights = {t: store.weight(t) for t in qterms}
    total = sum(weights.values())
    if not total:
        return lambda have: 0.0
    return lambda have: sum(weights[t] for t in qterms & have) / total


def near_duplicate(a: str, b: str) -> bool:
    """Same sentence repeated by overlapping chunks, or one containing the other."""
    ka, kb = squeeze(a)[0], squeeze(b)[0]
    return ka in kb or kb in ka


# --- choosing sentences -------------------------------------------------------------------------------------

LIST_QUESTION = re.compile(r"哪几|哪些|有几|几个方面|几大|几点|几条|哪三|哪四|哪五|列举|包括什么|分别")
# 「那第三个方面呢？」「其中最后一层讲的是什么？」: an item of the list the previous question was answered with.
ORDINAL_FOLLOWUP = re.compile(rf"{ORDINAL_REF.pattern}|第([{CN_DIGITS}\d]+)层|(最后)一?(?:个方面|个|点|条|项|层|部分)")
LAST_ITEM = -1
_ITEM_FAMILIES = (
    re.compile(r"^第([一二三四五六七八九十]+)[，,、]"),
    re.compile(r"^（([一二三四五六七八九十]+)）"),
    re.compile(r"^([一二三四五六七八九十]+)、"),
    re.compile(r"^(首先|其次|再次|最后)[，,]"),
    re.compile(r"^([一二三四五六七八九十]+)是"),  # 「一是直接性，……二是具体性，……」
)
_SEQUENCE = {"首先": 1, "其次": 2, "再次": 3, "最后": 9}


_SHORT_ITEMS = re.compile(r"(?:[^，。；：、“”]{1,10}、){2,}[^，。；：、“”]{1,12}")


def list_items(text: str) -> int:
    """How many items a sentence enumerates by itself: short items 「A、B、C」 (the longest run), 「有A，有B，有C」,
    or 「“A”“B”“C”」; long clauses joined by 、 are not items."""
    runs = [m.group().count("、") + 1 for m in _SHORT_ITEMS.finditer(text)]
    has = text.count("，有") + 1 if text.count("，有") >= 2 else 0
    return max([*runs, has, len(re.findall(r"“[^”]{1,8}”", text)), 0])


def inline_list(text: str) -> bool:
    """A sentence that enumerates by itself: three or more items (list_items)."""
    return list_items(text) >= 3


def section_sentences(store: SentenceStore, chunks: Sequence[Chunk], anchor: Chunk) -> list[Sentence]:
    """Every sentence of the anchor's section (its body chunks in book order), each once."""
    same = sorted((c for c in chunks if c.source == anchor.source and c.section == anchor.section
                   and c.kind == "body"), key=lambda c: (c.ordinal, c.start))
    seen: set[int] = set()
    out: list[Sentence] = []
    for c in same:
        for a, b in store.spans(c):
            if c.start + a not in seen:
                seen.add(c.start + a)
                out.append(Sentence(c, a, b, 99, 0.0))
    return out


def enumeration(sentences: Sequence[Sentence]) -> list[Sentence]:
    """The items of the first enumeration found (第一，… / （一）… / 一、… / 首先，…), the first sentence of each,
    when there are at least two and they count up from the first."""
    for family in _ITEM_FAMILIES:
        items = [s for s in sentences if family.match(s.text.strip())]
        numbers = [_item_number(family.match(s.text.strip()).group(1)) for s in items]
        if len(items) >= 2 and numbers[0] == 1 and numbers == sorted(numbers):
            return items
    return []


def enumerations(sentences: Sequence[Sentence]) -> list[list[int]]:
    """Every enumeration in a run of sentences (a section's, across its paragraphs and chunks): per item family,
    each run of items counting up from the first (第一，…第四，… ; 首先，…最后，…), as positions in `sentences`."""
    runs: list[list[int]] = []
    for family in _ITEM_FAMILIES:
        run: list[int] = []
        last = 0
        for i, s in enumerate(sentences):
            m = family.match(s.text.strip())
            n = _item_number(m.group(1)) if m else 0
            if n == 1:
                runs += [run] if len(run) >= 2 else []
                run, last = [i], 1
            elif run and n > last:
                run.append(i)
                last = n
        runs += [run] if len(run) >= 2 else []
    return runs


def _item_number(label: str) -> int:
    return _SEQUENCE.get(label) or cn_int(label) or 0


def doc_order(s: Sentence) -> tuple[str, int]:
    return s.chunk.source, s.chunk.start + s.start


_WHEN = re.compile(r"什么时候|何时|哪一年|哪年|哪一天|几月|哪个月|时间")
_HOW_MANY = re.compile(r"多少|几[年个次人岁倍]")
_DATE = re.compile(r"\d{4}\s*年|[一二三四五六七八九十]+月|\d+\s*月")
_NUMBER = re.compile(r"\d|[一二三四五六七八九十百千万两]+(?:年|个|次|倍|多)")


def answer_type(question: str):
    """A predicate for sentences of the expected answer type: dates for 「什么时候」, numbers for 「多少」."""
    if _WHEN.search(question):
        return lambda s: bool(_DATE.search(s))
    if _HOW_MANY.search(question):
        return lambda s: bool(_NUMBER.search(s))
    return lambda s: False
