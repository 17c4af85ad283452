"""Practice items made from the book's own structure, with no LLM: 填空, 选择, 判断, 简答.

Every item keeps its answer key as verbatim spans of the chunks it cites (book, section path, page), so a
wrong answer can show the passage to reread. `bank` makes every item a scope allows, in book order and the
same every time; `draw` picks a round from it, the same round for the same seed.

- 填空: a 提法 in quotation marks, what a role is (「实质是____」) or a rare book term, blanked in its clause.
- 选择: the same blank with three distractors: sibling terms of the same sentence or list first, then terms
  of other sections (never one the prompt shows, never one that contains the answer or is part of it).
- 判断: a clause as the book says it, or altered — a term swapped for a sibling or another section's, two
  roles swapped (根本目的 ↔ 实质), or a number changed; an altered statement never occurs in the book.
- 简答: a list the book makes (child headings, 第一…第四, 首先…最后, a definition's clauses, a thing's roles),
  graded by the key points covered (rag/study/grade.py).
"""

from __future__ import annotations

import hashlib
import random
import re
from dataclasses import dataclass, field
from typing import Literal, Sequence

from rag.study.mine import Listing, Span, Structure, Term, mine, scope_chunks, topic
from rag.text.fold import squeeze
from rag.text.numerals import part_key
from rag.types import Chunk

Kind = Literal["fill", "choice", "judge", "short"]
KINDS: tuple[Kind, ...] = ("fill", "choice", "judge", "short")
KIND_NAMES: dict[str, str] = {"fill": "填空", "choice": "选择", "judge": "判断", "short": "简答"}
BLANK = "____"
TRUE, FALSE = "对", "错"
WINDOW = 26  # a blank or a statement gets at least this many characters of its sentence around it
MAX_WINDOW = 90
_CLAUSE = re.compile(r"[^，；：。！？]+[，；：。！？]*")
_NUMBER = re.compile(r"\d+")


@dataclass(frozen=True)
class Key:
    """Where an answer is in the book: `text` is verbatim `chunk.text[start:end]` of chunk `chunk_id`."""

    text: str
    chunk_id: str
    book: str
    section: tuple[str, ...]
    page: str  # 「约第3页」 as the page shows it
    start: int
    end: int

    @classmethod
    def of(cls, span: Span) -> Key:
        c = span.chunk
        return cls(span.text, c.id, c.book, c.section, span.page, span.start, span.end)


@dataclass(frozen=True)
class Item:
    id: str
    kind: Kind
    prompt: str
    answer: str  # 填空: the term; 选择: the right option; 判断: 对/错; 简答: the key points, joined
    keys: tuple[Key, ...]
    options: tuple[str, ...] = ()
    points: tuple[str, ...] = ()  # 简答: one key point per key
    statement: str = ""  # 判断: the sentence shown (the book's own, or altered)
    exclude: tuple[str, ...] = field(default=(), compare=False)  # 简答: words the prompt gives away

    @property
    def book(self) -> str:
        return self.keys[0].book

    @property
    def section(self) -> tuple[str, ...]:
        return self.keys[0].section


def item_id(kind: str, spans: Sequence[Span], variant: str = "") -> str:
    """Stable across rebuilds: chunk ids are content hashes, offsets are into the chunk."""
    raw = "|".join([kind, variant] + [f"{s.chunk.id}:{s.start}:{s.end}" for s in spans])
    return f"{kind[0]}-{hashlib.sha1(raw.encode('utf-8')).hexdigest()[:10]}"


# --- the bank ------------------------------------------------------------------------------------------------


def bank(chunks: Sequence[Chunk], lexicon: Sequence[str] = (), book: str | None = None,
         section: str | None = None) -> list[Item]:
    """Every item the scope allows (one book, or every book), in book order."""
    items: list[Item] = []
    books = sorted({c.book for c in chunks if book is None or c.book == book})
    for b in books:
        scoped = scope_chunks(chunks, b, section)
        if not scoped:
            continue
        whole = "".join(c.text for c in chunks if c.book == b)
        items += book_items(mine(scoped, whole, lexicon))
    return items


def book_items(st: Structure) -> list[Item]:
    out: list[Item] = []
    seen: set[str] = set()
    for t in st.terms:
        for make in (fill_item, choice_item):
            _add(out, seen, make(t, st))
        _add(out, seen, judge_false(t, st))
    for s in st.sentences:
        _add(out, seen, judge_true(s))
        _add(out, seen, judge_number(s, st))
    for listing in st.listings:
        _add(out, seen, short_item(listing))
    return out


def _add(out: list[Item], seen: set[str], item: Item | None) -> None:
    if item is not None and item.id not in seen:
        seen.add(item.id)
        out.append(item)


def window(sentence: Span, start: int, end: int) -> Span:
    """The clauses of `sentence` around [start, end), at least WINDOW characters when the sentence has them."""
    clauses = [(m.start(), m.end()) for m in _CLAUSE.finditer(sentence.text)]
    i = next((k for k, (a, b) in enumerate(clauses) if a <= start < b), 0)
    j = next((k for k, (a, b) in enumerate(clauses) if a < end <= b), i)
    while clauses[j][1] - clauses[i][0] < WINDOW and (i > 0 or j < len(clauses) - 1):
        if i > 0 and (j == len(clauses) - 1 or clauses[j][1] - clauses[i - 1][0] <= MAX_WINDOW):
            i -= 1
        elif j < len(clauses) - 1:
            j += 1
        else:
            break
    a, b = clauses[i][0], clauses[j][1]
    text = sentence.text[a:b]
    return sentence.sub(a, a + len(text.rstrip("，；：")) if j < len(clauses) - 1 else b)


def _term_window(t: Term) -> Span | None:
    i = t.sentence.text.find(t.text)
    return None if i < 0 else window(t.sentence, i, i + len(t.text))


def fill_item(t: Term, st: Structure) -> Item | None:
    w = _term_window(t)
    if w is None:
        return None
    prompt = w.text.replace(t.text, BLANK)
    if len(squeeze(prompt.replace(BLANK, ""))) < 8:
        return None
    return Item(item_id("fill", [w], t.text), "fill", prompt, t.text, (Key.of(w),))


def distractors(t: Term, st: Structure, shown: str, n: int = 3) -> list[str]:
    """Sibling terms (same sentence, same kind, same section) first, then terms of other sections."""
    def ok(x: str) -> bool:
        return x != t.text and x not in shown and t.text not in x and x not in t.text

    same = [u.text for u in st.terms if u.sentence == t.sentence]
    kin = [u.text for u in st.terms if u.kind == t.kind and u.sentence.chunk.section == t.sentence.chunk.section]
    other = [u.text for u in st.terms if u.sentence.chunk.section != t.sentence.chunk.section]
    other.sort(key=lambda x: (-_common_suffix(x, t.text), abs(len(x) - len(t.text)), x))
    out: list[str] = []
    for x in same + kin + other:
        if ok(x) and x not in out:
            out.append(x)
    return out[:n]


def _common_suffix(a: str, b: str) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[-1 - n] == b[-1 - n]:
        n += 1
    return n


def _shuffled(options: list[str], salt: str) -> tuple[str, ...]:
    """A fixed order that does not depend on the seed nor put the answer first."""
    return tuple(sorted(options, key=lambda o: hashlib.sha1(f"{salt}|{o}".encode()).hexdigest()))


def choice_item(t: Term, st: Structure) -> Item | None:
    w = _term_window(t)
    if w is None:
        return None
    prompt = w.text.replace(t.text, BLANK)
    wrong = distractors(t, st, prompt)
    if len(wrong) < 3 or len(squeeze(prompt.replace(BLANK, ""))) < 8:
        return None
    iid = item_id("choice", [w], t.text)
    return Item(iid, "choice", prompt, t.text, (Key.of(w),), options=_shuffled([t.text] + wrong, iid))


def judge_true(sentence: Span) -> Item | None:
    text = squeeze(sentence.text)
    if not 12 <= len(text) <= MAX_WINDOW:
        return None
    return Item(item_id("judge", [sentence], TRUE), "judge", "判断正误：", TRUE, (Key.of(sentence),),
                statement=sentence.text)


def _false(span: Span, altered: str, variant: str, st: Structure) -> Item | None:
    if squeeze(altered) in st.text or altered == span.text:
        return None
    return Item(item_id("judge", [span], variant), "judge", "判断正误：", FALSE, (Key.of(span),),
                statement=altered)


def judge_false(t: Term, st: Structure) -> Item | None:
    """Two roles swapped (「根本目的是密切党群关系，实质是推动发展」), or the term replaced by a sibling's."""
    w = _term_window(t)
    if w is None or len(w.text) > MAX_WINDOW:
        return None
    if t.kind == "role":
        other = next((u.text for u in st.terms if u.kind == "role" and u.sentence == t.sentence
                      and u.text != t.text and u.text in w.text), None)
        if other:
            altered = w.text.replace(t.text, "\0").replace(other, t.text).replace("\0", other)
            return _false(w, altered, f"swap:{t.text}:{other}", st)
    for x in distractors(t, st, w.text, n=1):
        if not _also_said(st, x, w.text.replace(t.text, "")):
            return _false(w, w.text.replace(t.text, x), f"replace:{t.text}:{x}", st)
    return None


def _also_said(st: Structure, term: str, context: str) -> bool:
    """Whether some sentence of the book has `term` with most of this context (then the swap may be true)."""
    words = set(re.findall(r"[\u4e00-\u9fff]{2}", context))
    return any(term in s.text and len(words & set(re.findall(r"[\u4e00-\u9fff]{2}", s.text))) > len(words) / 2
               for s in st.sentences)


def judge_number(s: Span, st: Structure) -> Item | None:
    """A number changed: a year by one to three, others by about a tenth (at least one)."""
    m = _NUMBER.search(s.text)
    if m is None:
        return None
    w = window(s, m.start(), m.end())
    if len(w.text) > MAX_WINDOW:
        return None
    n = int(m.group())
    step = int(hashlib.sha1(w.text.encode()).hexdigest(), 16) % 3 + 1
    new = n + step if 1000 <= n <= 2100 else n + max(1, round(n / 10)) * (1 if step % 2 else -1)
    if new <= 0:
        new = n + 1
    i = m.start() - (w.start - s.start)
    altered = w.text[:i] + str(new) + w.text[i + len(m.group()):]
    return _false(w, altered, f"number:{n}:{new}", st)


SHORT_PROMPTS = {
    "headings": "教材「{topic}」一部分分哪几个方面来讲？请分点作答。",
    "ordinal": "教材在「{topic}」中分「第一……第{n}」论述了哪几点？请分点简述。",
    "sequence": "教材在「{topic}」中按「首先、其次……最后」讲了哪几层意思？请分点简述。",
    "definition": "按教材的界定，什么是{topic}？请答出要点。",
    "roles": "按教材，{topic}的{roles}各是什么？",
}


def short_item(listing: Listing) -> Item | None:
    spans = listing.items
    points = tuple(topic(s.text) if listing.kind == "headings" else s.text.rstrip("。；，") for s in spans)
    roles = "、".join(s.text.split("是", 1)[0] for s in spans) if listing.kind == "roles" else ""
    prompt = SHORT_PROMPTS[listing.kind].format(topic=listing.topic, n=_cn(len(spans)), roles=roles)
    exclude = (listing.topic,) + ((roles,) if roles else ())
    return Item(item_id("short", spans), "short", prompt, "；".join(points), tuple(Key.of(s) for s in spans),
                points=points, exclude=exclude)


def _cn(n: int) -> str:
    return "一二三四五六七八九十"[n - 1] if 1 <= n <= 10 else str(n)


# --- a round ---------------------------------------------------------------------------------------------------


def draw(items: Sequence[Item], n: int = 10, seed: int = 0,
         kinds: Sequence[str] = KINDS) -> list[Item]:
    """`n` items for this seed: the kinds taken in turn, at most one item per passage span, in book order."""
    rng = random.Random(seed)
    pools = {k: [it for it in items if it.kind == k] for k in kinds}
    for pool in pools.values():
        rng.shuffle(pool)
    if "judge" in pools:  # as many 错 as 对 (the book's own sentences outnumber the altered ones)
        true = [it for it in pools["judge"] if it.answer == TRUE]
        false = [it for it in pools["judge"] if it.answer == FALSE]
        pools["judge"] = [it for pair in zip(true, false) for it in pair] + true[len(false):] + false[len(true):]
        pools["judge"].reverse()  # popped from the end
    picked: list[Item] = []
    used: set[tuple[str, int]] = set()
    while len(picked) < n and any(pools.values()):
        for k in kinds:
            pool = pools[k]
            while pool and len(picked) < n:
                it = pool.pop()
                spans = {(key.chunk_id, key.start) for key in it.keys}
                if spans & used:
                    continue
                used |= spans
                picked.append(it)
                break
    order = {it.id: i for i, it in enumerate(items)}
    return sorted(picked, key=lambda it: order[it.id])


def sections_with_text(chunks: Sequence[Chunk], book: str | None = None) -> list[tuple[str, ...]]:
    """The 节 (or 章 without 节) paths that have body text, in book order: the scopes a round can have."""
    out: list[tuple[str, ...]] = []
    for c in scope_chunks(chunks, book):
        path = part_key(c.section)
        if path not in out:
            out.append(path)
    return out


def to_json(item: Item) -> dict[str, object]:
    """The item as `python -m rag quiz --json` prints it (without the words the grader ignores)."""
    return {"id": item.id, "kind": item.kind, "type": KIND_NAMES[item.kind], "prompt": item.prompt,
            "statement": item.statement or None, "options": list(item.options), "answer": item.answer,
            "points": list(item.points),
            "keys": [{"text": k.text, "chunk_id": k.chunk_id, "book": k.book, "section": list(k.section),
                      "page": k.page} for k in item.keys]}


def problems(items: Sequence[Item], chunks: Sequence[Chunk]) -> list[str]:
    """What breaks the promises of an item: a key not verbatim in the chunk it cites, an altered 判断
    statement that occurs in the book, a 选择 whose answer is not one of its options."""
    by_id = {c.id: c for c in chunks}
    books: dict[str, str] = {}
    for c in chunks:
        books[c.book] = books.get(c.book, "") + c.text
    books = {b: squeeze(t) for b, t in books.items()}
    out = []
    for it in items:
        for k in it.keys:
            c = by_id.get(k.chunk_id)
            if c is None or c.text[k.start:k.end] != k.text:
                out.append(f"{it.id}: 答案出处不是所引段落的原文：{k.text[:30]}")
        if it.kind == "judge" and it.answer == FALSE and squeeze(it.statement) in books.get(it.book, ""):
            out.append(f"{it.id}: 改动后的判断句出现在书中：{it.statement[:30]}")
        if it.kind == "choice" and it.answer not in it.options:
            out.append(f"{it.id}: 正确选项不在选项中")
    return out


def counts_by_section(items: Sequence[Item]) -> dict[tuple[str, ...], dict[str, int]]:
    """Items per 节 (the first two levels of the section path) and kind."""
    out: dict[tuple[str, ...], dict[str, int]] = {}
    for it in items:
        row = out.setdefault(part_key(it.section), {k: 0 for k in KINDS})
        row[it.kind] += 1
    return out
