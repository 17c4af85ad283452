"""Composing the extractive answer: which ranked sentences to say, in what order, with which [n] markers.

A plain question gets its best sentence (plus close runners-up, at most three); a list question gets the whole
list — the enumeration of the section it is about (第一，…第四，…), or the sentence that lists the items itself,
with the sentence that introduces it; so does a question whose best sentence only announces a list (「……有三个
突出的特点。」). A question about one slot of a definition by slots (「以A为工作对象，以B为原则，……」) gets the
definition's subject and that clause; a why-question gets the reason before a 「所以……」 conclusion, or the
explanation after a claim it merely restates. Sentences keep the book's order, and every one is cited verbatim. A clause
that cannot be read alone (「是……的工作；」 continuing a definition whose subject came clauses earlier) is preceded
by that subject, quoted and cited too: 「在新的历史条件下，党的群众工作[1]……是依靠民主和法治……的工作[2]。」
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Sequence

from rag.answer.cite import make_citation
from rag.answer.extract import (LIST_QUESTION, Scored, Sentence, SentenceStore, coverage, doc_order,
                                enumeration, enumerations, inline_list, near_duplicate, section_sentences)
from rag.store.lexical import terms
from rag.text.fold import bigrams, spaceless
from rag.text.numerals import cn_int
from rag.types import Answer, Chunk, Citation

KEEP_MARGIN = 0.02  # runners-up kept when they score within this of the best sentence (non-list questions)
MAX_PLAIN = 3  # at most this many sentences for a non-list question
MAX_LIST = 5
LEAD_GAP = 3  # a list starting within this many sentences after the best sentence is the list it introduces
# A why-question's restated claim brings this many sentences after it; a claim is restated when this share of
# its char bigrams are the question's. No tune question reaches the rule (the tune eval is the same with and
# without it): the values say what the rule means (most of the sentence is the question), not a fit.
REASONS = 2
RESTATED = 0.8
HEADING_MATCH = 0.5  # a list question is about a section when it covers this much of the heading's terms
HEADING_FULL = 0.95  # … and certainly when it has (nearly) all of them
_SOURCE_QUESTION = re.compile(r"引自|出自|出处|哪本书|来源|引用")
_NUMBERING = re.compile(r"^[◇◆●■□\s]*(?:[一二三四五六七八九十]+、|（[一二三四五六七八九十]+）|第.{1,3}[章节])?\s*")
_HEADING_ITEM = re.compile(r"^[◇◆●■□\s]*（([一二三四五六七八九十]+)）")  # （二）解决民生问题
_DISPLAY_MARKS = re.compile(r"\^?[①-⑳]|^[▲◇◆●■]\s*")
_WHY = re.compile(r"为什么|为何|何以|原因|理由")
_POINT = re.compile(r"(?:想|是想|要|是要|意在)?(?:说明|表明|证明|反映)(?:了)?(?:什么|哪些|啥)|用意")
_SUMS_UP = re.compile(r"(?:这些|这|以上|上述|凡此)")  # a sentence that points back at what came before
_CONCLUDES = re.compile(r"(?:所以|因此|因而|由此可见|可见)[，,]")
# a clause of a definition by slots: 「以广大的人民群众为工作对象」 (what, the slot it fills), between commas
_SLOT = re.compile(r"(?<=[，,：:是指])以([^，,；;。]{1,60}?)为([^，,；;。为]{1,8})(?=[，,；;。])")
_EACH = re.compile(r"分别|各自|各有|各是|各指|各讲")
_JOIN = re.compile(r"[和与及]")
_CLAUSE_END = re.compile(r"[，,。；;？?！!：:]")
_NO_SUBJECT = re.compile(r"^(?:也|就|而|都|还)?是")  # a clause that begins with its verb: the subject came before
_SUBJECT = re.compile(r"^(.{2,40}?)，?(?=(?:也|就|都)?是)")  # the subject part of a clause (「党的群众工作，是……」)


@dataclass(frozen=True)
class Lead(Sentence):
    """The subject part of the clause that a chosen clause continues (「在新的历史条件下，党的群众工作，」)."""


class Composer:
    def __init__(self, store: SentenceStore, chunks: Sequence[Chunk], tokenizer) -> None:
        self.store = store
        self.chunks = chunks
        self.tokenizer = tokenizer

    def choose(self, text: str, ranked: Sequence[Scored]) -> list[Sentence]:
        """The sentences that answer `text`, in book order; for 「A和B分别……」 also the best sentence naming
        whichever of A and B the others leave out."""
        chosen = self._choose(text, ranked)
        missing = [w for w in self.conjuncts(text) if not any(w in s.text for s in chosen)]
        for w in missing:
            extra = next((x.sentence for x in ranked if w in x.sentence.text
                          and not any(near_duplicate(x.sentence.text, c.text) for c in chosen)), None)
            chosen += [extra] if extra is not None else []
        if not missing:
            return chosen
        return self.with_leads(sorted((c for c in chosen if not isinstance(c, Lead)), key=doc_order))

    def conjuncts(self, text: str) -> list[str]:
        """「前期和后期……分别……」「在农村和在企业……各有……」: the two things asked about (the words on either side
        of 和/与/及), when the question asks for each of them."""
        both = _EACH.search(text)
        join = _JOIN.search(text, 0, both.start()) if both else None
        if join is None:
            return []
        left = self.tokenizer.tokens(_CLAUSE_END.split(text[:join.start()])[-1])
        right = self.tokenizer.tokens(_CLAUSE_END.split(text[join.end():])[0])
        return [w for w in (left[-1:] + right[:1]) if len(w) >= 2]

    def _choose(self, text: str, ranked: Sequence[Scored]) -> list[Sentence]:
        if LIST_QUESTION.search(text) and not self.conjuncts(text):  # 「A和B分别是什么」 asks two things, no list
            items = self.list_items(text, ranked)
            if items:
                return items
        best = ranked[0]
        slot = self.slot_clause(text, best.sentence)
        if slot:  # 「群众工作要用什么方法？」: 「党的群众工作……以正确运用党的群众路线为根本方法。」
            return slot
        head, items = self.announced(text, ranked)
        if items:  # 「……有三个突出的特点。」 and the three
            return self.with_leads(sorted([head, *items], key=doc_order))
        chosen = [best.sentence]
        for s in ranked[1:]:
            if len(chosen) >= MAX_PLAIN or s.score < best.score - KEEP_MARGIN:
                break
            if not any(near_duplicate(s.sentence.text, c.text) for c in chosen):
                chosen.append(s.sentence)
        chosen += self.footnotes(text, chosen)
        if _WHY.search(text):
            chosen = self.with_reasons(text, self.with_premises(chosen))
        if _POINT.search(text):
            chosen = self.with_point(chosen)
        return self.with_leads(sorted(chosen, key=doc_order))

    def with_point(self, chosen: Sequence[Sentence]) -> list[Sentence]:
        """「这些例子是想说明什么？」: the book sums up its examples in a sentence after them that points back at
        them (「这些群众工作，是党推动发展的重要工作。」, LEAD_GAP sentences at most after the last one chosen);
        that sentence is said too."""
        if not chosen:
            return list(chosen)
        last = max(chosen, key=doc_order)
        around, at = self.locate(last)
        point = next((x for x in around[at + 1:at + 1 + LEAD_GAP] if _SUMS_UP.match(x.text.strip())), None) \
            if at is not None else None
        return [*chosen, point] if point is not None else list(chosen)

    def with_reasons(self, text: str, chosen: Sequence[Sentence]) -> list[Sentence]:
        """A why-question answered only by the claim it asks about (「为什么说群众工作是党和群众走到一起的
        桥梁？」 → 「群众工作是党和群众走到一起的“桥梁”。」): the book explains a claim after stating it, so the
        sentences that follow it in its paragraph (at most REASONS) are said too."""
        if len(chosen) != 1 or not _restates(chosen[0].text, text):
            return list(chosen)
        claim = chosen[0]
        around, at = self.locate(claim)
        if at is None:
            return list(chosen)
        return [claim, *around[at + 1:at + 1 + REASONS]]

    def with_premises(self, chosen: Sequence[Sentence]) -> list[Sentence]:
        """A why-question's sentence that draws a conclusion (「所以，正确处理人民内部矛盾，是社会主义建设的保证。」)
        with the sentence before it, which gives the reason (「……如果处理不好，就会引起社会动乱……」)."""
        out = list(chosen)
        for s in chosen:
            if not _CONCLUDES.match(s.text.strip()):
                continue
            around, at = self.locate(s)
            if at and not any(_same(around[at - 1], x) for x in out):
                out.append(around[at - 1])
        return out

    def slot_clause(self, text: str, best: Sentence) -> list[Sentence]:
        """A definition by slots (「党的群众工作，是指以全体共产党员为工作者，以广大的人民群众为工作对象，……」)
        asked for one of them (「……的对象是谁？」「……用什么方法？」): its subject and that one clause, each
        quoted and cited; [] when the sentence is no such definition or the question names no single slot."""
        m = _SUBJECT.match(best.text)
        if m is None:
            return []
        clauses = [(c.start(), c.end(), c.group(2)) for c in _SLOT.finditer(best.text)]
        if len(clauses) < 2:
            return []
        named = [(a, b) for a, b, slot in clauses if any(n in text for n in _slot_names(slot))]
        if len(named) != 1:
            return []
        a, b = named[0]
        lead = Lead(best.chunk, best.start + m.start(1), best.start + m.end(1), best.rank, best.hit_score)
        return [lead, Sentence(best.chunk, best.start + a, best.start + b, best.rank, best.hit_score)]

    def announced(self, text: str, ranked: Sequence[Scored]) -> tuple[Sentence | None, list[Sentence]]:
        """A question that is no list question, answered by a sentence that only announces the list after it
        (「基层群众工作有三个突出的特点。」 for 「……有什么特点？」): (that sentence, the list's items), else
        (None, [])."""
        if not ranked or not announces(ranked[0].sentence.text):  # (the lead `enumerated` finds is the best)
            return None, []
        lead, items = self.enumerated(text, ranked)
        head = lead or ranked[0].sentence
        if items and announces(head.text, len(items)) and self.introduces(head, items[0]):
            return head, items
        return None, []

    def locate(self, s: Sentence) -> tuple[list[Sentence], int | None]:
        """The sentences of `s`'s section, and where `s` is among them (None: not a sentence of them)."""
        around = section_sentences(self.store, self.chunks, s.chunk)
        return around, next((i for i, x in enumerate(around) if _same(x, s)), None)

    def introduces(self, head: Sentence, first: Sentence) -> bool:
        """The list's first item comes at most LEAD_GAP sentences after `head`, in its section."""
        around, at = self.locate(head)
        to = next((i for i, x in enumerate(around) if _same(x, first)), None)
        return at is not None and to is not None and 0 < to - at <= LEAD_GAP

    def list_items(self, text: str, ranked: Sequence[Scored]) -> list[Sentence]:
        """A list question's complete answer: the enumeration of the section the question names, or the list the
        best sentence belongs to or introduces (with that lead sentence), else the best sentence with the
        「A、B、C」 sentence next to it (or alone when it lists by itself)."""
        lead, items = self.enumerated(text, ranked)
        if items:
            return self.with_leads(sorted([lead, *items] if lead else items, key=doc_order))
        best = ranked[0].sentence
        if inline_list(best.text):
            return self.with_leads([best])
        around, at = self.locate(best)
        if at is None:
            return []
        near = [x for x in around[max(0, at - 2) : at + 3] if not _same(x, best) and inline_list(x.text)]
        return self.with_leads(sorted([best, near[0]], key=doc_order)) if near else []

    def with_leads(self, chosen: Sequence[Sentence]) -> list[Sentence]:
        """`chosen` (in book order) with a Lead before each clause that has no subject of its own (it begins
        with 「是」 and follows clauses ending in 「；」): the subject of the first clause of that chain, once
        per chain, unless a sentence of the chain is already said."""
        out: list[Sentence] = []
        for s in chosen:
            lead = self.lead_of(s)
            if lead is not None and not any(_same(lead, x) or x.chunk.start + x.start in range(
                    lead.chunk.start + lead.start, s.chunk.start + s.start) for x in out):
                out.append(lead)
            out.append(s)
        return out

    def lead_of(self, s: Sentence) -> Lead | None:
        if isinstance(s, Lead) or not _NO_SUBJECT.match(s.text.strip()):
            return None
        around, at = self.locate(s)
        head = None
        i = (at or 0) - 1
        while at is not None and i >= 0 and around[i].text.rstrip().endswith("；"):
            head, i = around[i], i - 1
        m = _SUBJECT.match(head.text.strip()) if head is not None else None
        if head is None or m is None or _NO_SUBJECT.match(head.text.strip()):
            return None
        start = head.start + head.text.find(m.group(1))
        return Lead(head.chunk, start, start + len(m.group(1)), s.rank, s.hit_score)

    def enumerated(self, text: str, ranked: Sequence[Scored]) -> tuple[Sentence | None, list[Sentence]]:
        """The numbered list a list question asks for, as (its lead sentence or None, its items): the
        enumeration of the section whose heading the question names (numbered_items, `within` the best
        sentence's section); else the enumeration the best sentence introduces (it starts within LEAD_GAP
        sentences after it, or, for an item of a list, before that list's next item) or belongs to, gathered
        across the section's paragraphs and chunks."""
        if not ranked:
            return None, []
        best = ranked[0].sentence
        items = self.numbered_items(text, ranked, within=best)
        if items:
            return None, items
        if inline_list(best.text):
            return None, []
        around, at = self.locate(best)
        if at is None:
            return None, []
        runs = enumerations(around)
        member = next((r for r in runs if at in r), None)
        # an item's own extent ends where the next item of its list begins
        end = next((i for i in member if i > at), len(around)) if member else at + LEAD_GAP + 1
        led = next((r for r in runs if at < r[0] < end and r is not member), None)
        if led is not None:
            return best, [around[i] for i in led[:MAX_LIST]]
        return None, [around[i] for i in member[:MAX_LIST]] if member else []

    def heading_items(self, anchor: Sentence) -> tuple[list[list[Sentence]], bool]:
        """The numbered subsections right under the anchor's section (三、群众工作的作用 → （一）推动经济社会发展,
        （二）…), counting up from the first: each as its heading line and its first sentence, and whether the
        loaded text holds all of them (it goes on past the section; an excerpt may stop inside it, so the
        last loaded one need not be the last). For a list question whose answer introduces them, these are its
        items (「第二个呢？」)."""
        parent = anchor.chunk.section
        under = [c for c in self.chunks if c.kind == "body" and c.source == anchor.chunk.source
                 and len(c.section) == len(parent) + 1 and c.section[:-1] == parent]
        firsts: dict[tuple[str, ...], Chunk] = {}
        for c in sorted(under, key=lambda c: (c.ordinal, c.start)):
            firsts.setdefault(c.section, c)
        numbered = [(m, c) for c in firsts.values() if (m := _HEADING_ITEM.match(c.section[-1].strip()))]
        if len(numbered) < 2 or [cn_int(m.group(1)) for m, _ in numbered] != list(range(1, len(numbered) + 1)):
            return [], False
        out = []
        for _m, c in numbered:
            line = c.text.split("\n", 1)[0]
            if spaceless(c.section[-1])[0] not in spaceless(line)[0]:
                return [], False  # a subsection whose chunk does not print its heading first
            first = [Sentence(c, a, b, anchor.rank, 0.0) for a, b in self.store.spans(c)[:1] if a >= len(line)]
            out.append([Sentence(c, 0, len(line), anchor.rank, 0.0), *first])
        last = numbered[-1][1]
        complete = any(c.kind == "body" and c.source == last.source and c.start > last.start
                       and c.section[:len(parent)] != parent for c in self.chunks)
        return out, complete

    def item_extent(self, item: Sentence) -> list[Sentence]:
        """An item of a list with what the book says of it: its sentence and those after it, up to the list's
        next item (at most MAX_PLAIN after it) — what 「为什么这么说？」 asks of an item just named."""
        around, at = self.locate(item)
        if at is None:  # a subsection's heading line (heading_items): the start of its text
            return [item, *around[:MAX_PLAIN]] if item.start == 0 else [item]
        member = next((r for r in enumerations(around) if at in r), [])
        end = next((i for i in member if i > at), len(around))
        return around[at:min(end, at + 1 + MAX_PLAIN)]

    def numbered_items(self, text: str, ranked: Sequence[Scored],
                       within: Sentence | None = None) -> list[Sentence]:
        """第一，…第四，… (or （一）…, 首先…最后) of the section whose heading the question names best (at least
        HEADING_MATCH of the heading's weighted terms); the first sentence of each item. With `within`, only a
        section that holds that sentence, unless the question has all the heading's terms (HEADING_FULL): a
        heading word shared by chance names no section."""
        qterms = frozenset(terms(self.tokenizer, text))
        books = {s.sentence.chunk.book for s in ranked}  # the books answering (the picked one, if any)
        heads: dict[tuple[str, tuple[str, ...]], tuple[float, Chunk]] = {}
        for chunk in self.chunks:
            key = (chunk.book, chunk.section)
            if chunk.kind == "body" and chunk.section and chunk.book in books and key not in heads:
                heading = frozenset(terms(self.tokenizer, _NUMBERING.sub("", chunk.section[-1])))
                heads[key] = (coverage(self.store, heading, qterms), chunk)
        for score, chunk in sorted(heads.values(), key=lambda x: -x[0]):
            if score < HEADING_MATCH:
                break
            outside = within is not None and (within.chunk.book != chunk.book
                                              or within.chunk.section[:len(chunk.section)] != chunk.section)
            if outside and score < HEADING_FULL:
                continue
            items = enumeration(section_sentences(self.store, self.chunks, chunk))
            if items:
                return items[:MAX_LIST]
        return []

    def footnotes(self, text: str, chosen: Sequence[Sentence]) -> list[Sentence]:
        """For 「引自哪本书」: the footnote a chosen sentence points to (「…^①」), and for a chosen footnote the
        sentence that points to it, the nearest before it in the section (footnote marks restart on every
        page): 「书中引用了习近平的哪些话」 is answered by the quotation, then its source. Each said once."""
        if not _SOURCE_QUESTION.search(text):
            return []
        out: list[Sentence] = []
        for s in chosen:
            mark = re.search(r"[①-⑳]", s.text)
            if mark is None:
                continue
            if s.chunk.kind == "footnote":
                found = self._citing(s, mark.group(0))
            else:
                found = [Sentence(c, *self.store.spans(c)[0], s.rank, 0.0) for c in self.chunks
                         if c.kind == "footnote" and c.section == s.chunk.section and mark.group(0) in c.text[:4]
                         and self.store.spans(c)]
            out += [x for x in found if not any(_same(x, y) for y in (*chosen, *out))]
        return out

    def _citing(self, note: Sentence, mark: str) -> list[Sentence]:
        """The sentence of the section that carries `mark` last before the footnote `note` (in book order)."""
        at = note.chunk.start + note.start
        best: Sentence | None = None
        for c in self.chunks:
            if c.kind != "body" or c.section != note.chunk.section or c.source != note.chunk.source:
                continue
            for a, b in self.store.spans(c):
                if mark in c.text[a:b] and c.start + a < at and (best is None or doc_order(best) < (c.source,
                                                                                          c.start + a)):
                    best = Sentence(c, a, b, note.rank, 0.0)
        return [best] if best is not None else []


_ANNOUNCED = re.compile(r"([两二三四五六七八九十])[个点条项种层大][^，。；]{0,8}$")


def _restates(sentence: str, question: str) -> bool:
    """The sentence says (nearly) nothing the question does not: at least RESTATED of its char bigrams are
    the question's."""
    have = bigrams(spaceless(sentence)[0])
    return bool(have) and len(have & bigrams(spaceless(question)[0])) >= RESTATED * len(have)


def _slot_names(slot: str) -> set[str]:
    """The words a question may name a slot by: itself, its head (工作对象 → 对象), each of 「A和B」."""
    parts = re.split(r"[和与及]", slot)
    return {slot, *parts, *(p[-2:] for p in parts if len(p) > 2)} - {""}


def announces(text: str, items: int | None = None) -> bool:
    """A sentence that is nothing but the announcement of the list after it: it ends in 「：」, or in the
    number of items that follow (「基层群众工作有三个突出的特点。」 before 一是…二是…三是…); `items` None:
    whether it may be one (it ends so, whatever the count)."""
    body = text.strip().rstrip("。.")
    if body.endswith(("：", ":")):
        return True
    m = _ANNOUNCED.search(body)
    return m is not None and (items is None or cn_int(m.group(1)) == items)


def _same(a: Sentence, b: Sentence) -> bool:
    return a.chunk.source == b.chunk.source and a.chunk.start + a.start == b.chunk.start + b.start


def compose(base: Answer, sentences: Sequence[Sentence], refusal: str) -> Answer:
    """The answer text with one [n] per sentence; a sentence failing the verbatim check is dropped."""
    parts: list[str] = []
    cites: list[Citation] = []
    for s in sentences:
        cite = make_citation(len(cites) + 1, s.chunk, s.text, s.hit_score)
        if cite is None:
            continue
        cites.append(cite)
        parts.append(f"{display(s.text, cite.n)[:-1]}……" if isinstance(s, Lead) else display(s.text, cite.n))
    if not cites:
        return replace(base, text=refusal, refused=True)
    return replace(base, text="".join(parts), citations=tuple(cites))


def display(sentence: str, n: int) -> str:
    """A quoted sentence as answer text: line breaks inside it removed, print marks (▲, ^①) dropped, its
    marker [n] before the closing punctuation (「即“大群工”[1]。」), a clause's 「；」 shown as 「。」."""
    text = re.sub(r"\s*\n\s*", "", sentence.strip())
    text = _DISPLAY_MARKS.sub("", text).strip()
    if text.endswith("”") and text.count("”") > text.count("“"):
        text = text[:-1]  # the end of a quotation that began in an earlier sentence
    if text.startswith("“") and text.count("“") > text.count("”"):
        text = text[1:]  # the start of a quotation that goes on in a later sentence
    m = re.match(r"^(.*?)([。！？；…]*)$", text, re.S)
    body, stop = (m.group(1), m.group(2)) if m else (text, "")
    if not stop and body.endswith(("”", "’", "」", "』")):
        return f"{body}[{n}]"  # 「……奋斗目标。”」: the whole quotation is the sentence
    return f"{body}[{n}]{stop.replace('；', '。') or '。'}"
