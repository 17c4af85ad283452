"""Composing the extractive answer: which ranked sentences to say, in what order, with which [n] markers.

A plain question gets its best sentence (plus close runners-up, at most three); a list question gets the whole
list — the enumeration of the section it is about (第一，…第四，…), or the sentence that lists the items itself,
with the sentence that introduces it. Sentences keep the book's order, and every one is cited verbatim.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Sequence

from rag.answer.cite import make_citation
from rag.answer.extract import (LIST_QUESTION, Scored, Sentence, SentenceStore, coverage, doc_order, enumeration,
                         inline_list, near_duplicate, question_terms, section_sentences)
from rag.store.lexical import terms
from rag.types import Answer, Chunk, Citation

KEEP_MARGIN = 0.02  # runners-up kept when they score within this of the best sentence (non-list questions)
MAX_PLAIN = 3  # at most this many sentences for a non-list question
MAX_LIST = 5
HEADING_MATCH = 0.5  # a list question is about a section when it covers this much of the heading's terms
_SOURCE_QUESTION = re.compile(r"引自|出自|出处|哪本书|来源|引用")
_NUMBERING = re.compile(r"^[◇◆●■□\s]*(?:[一二三四五六七八九十]+、|（[一二三四五六七八九十]+）|第.{1,3}[章节])?\s*")
_DISPLAY_MARKS = re.compile(r"\^?[①-⑳]|^[▲◇◆●■]\s*")


class Composer:
    def __init__(self, store: SentenceStore, chunks: Sequence[Chunk], tokenizer) -> None:
        self.store = store
        self.chunks = chunks
        self.tokenizer = tokenizer

    def choose(self, text: str, ranked: Sequence[Scored]) -> list[Sentence]:
        """The sentences that answer `text`, in book order."""
        if LIST_QUESTION.search(text):
            items = self.list_items(text, ranked)
            if items:
                return items
        best = ranked[0]
        chosen = [best.sentence]
        for s in ranked[1:]:
            if len(chosen) >= MAX_PLAIN or s.score < best.score - KEEP_MARGIN:
                break
            if not any(near_duplicate(s.sentence.text, c.text) for c in chosen):
                chosen.append(s.sentence)
        chosen += self.footnotes(text, chosen)
        return sorted(chosen, key=doc_order)

    def list_items(self, text: str, ranked: Sequence[Scored]) -> list[Sentence]:
        """A list question's complete answer: the numbered enumeration of the section the question names, else
        the best sentence with the 「A、B、C」 sentence next to it (or alone when it lists by itself)."""
        items = self.numbered_items(text, ranked)
        if items:
            return items
        best = ranked[0].sentence
        if inline_list(best.text):
            return [best]
        around = section_sentences(self.store, self.chunks, best.chunk)
        at = next((i for i, x in enumerate(around) if _same(x, best)), None)
        if at is None:
            return []
        near = [x for x in around[max(0, at - 2) : at + 3] if not _same(x, best) and inline_list(x.text)]
        return sorted([best, near[0]], key=doc_order) if near else []

    def numbered_items(self, text: str, ranked: Sequence[Scored]) -> list[Sentence]:
        """第一，…第四，… (or （一）…, 首先…最后) of the section whose heading the question names best (at least
        HEADING_MATCH of the heading's weighted terms); the first sentence of each item."""
        qterms = question_terms(self.tokenizer, text)
        heads: dict[tuple[str, ...], tuple[float, Chunk]] = {}
        for chunk in self.chunks:
            if chunk.kind == "body" and chunk.section and chunk.section not in heads:
                heading = frozenset(terms(self.tokenizer, _NUMBERING.sub("", chunk.section[-1])))
                heads[chunk.section] = (coverage(self.store, heading, qterms), chunk)
        for score, chunk in sorted(heads.values(), key=lambda x: -x[0]):
            if score < HEADING_MATCH:
                break
            items = enumeration(section_sentences(self.store, self.chunks, chunk))
            if items:
                return items[:MAX_LIST]
        return []

    def footnotes(self, text: str, chosen: Sequence[Sentence]) -> list[Sentence]:
        """For 「引自哪本书」: the footnote a chosen sentence points to (「…^①」)."""
        if not _SOURCE_QUESTION.search(text):
            return []
        out = []
        for s in chosen:
            mark = re.search(r"[①-⑳]", s.text)
            for c in self.chunks if mark else ():
                if c.kind == "footnote" and c.section == s.chunk.section and mark.group(0) in c.text[:4]:
                    spans = self.store.spans(c)
                    out += [Sentence(c, *spans[0], s.rank, 0.0)] if spans else []
        return out


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
        parts.append(display(s.text, cite.n))
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
