"""Hits → Answer: a short Chinese answer whose every sentence cites a verbatim quote of the book.

Order of decisions for one question: clean it (InputError when empty) → a direct answer from the 版权页/目录 when
it asks about the book itself → retrieval → the refusal rule (out of scope: say so, point to the 目录) → the
extractive answer (default) or, when an LLM is configured, the LLM's answer checked against the passages, with
the extractive answer as the fallback. The refusal rule always runs before the LLM.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Iterator, Sequence

import numpy as np

from rag.text.fold import spaceless as squeeze
from rag.answer.compose import Composer, compose
from rag.config import Settings
from rag.answer.library import Library
from rag.errors import LLMError
from rag.answer.extract import (LAST_ITEM, LIST_QUESTION, ORDINAL_FOLLOWUP, Scored, Sentence, SentenceStore,
                                answer_type, asked_kind, coverage_of, list_items, question_terms)
from rag.answer.llm import REFUSAL, LLMClient, Verifier, build_messages, llm_answer
from rag.answer.refusal import Scope, Unloaded
from rag.answer.facts import renumbered
from rag.retrieve.query import expand_followup, resolve, split_compound
from rag.text.fold import is_cjk
from rag.text.numerals import cn_int
from rag.types import Answer, Citation, Hit, Query, QueryParams

REFUSAL_TEXT = REFUSAL + "。"

# Sentence score = W_DENSE·cosine(question, sentence) + W_COVER·weighted term coverage + W_RANK/hit rank.
# Weights and thresholds chosen on tests/data/questions.jsonl (bench/RESULTS.md, "Answers"): the gold sentence
# ranks first for most answerable questions, and the refusal rule separates the out-of-scope ones.
W_DENSE, W_COVER, W_RANK = 1.0, 0.05, 0.01
W_TYPE = 0.05  # 「多少年」「什么时候」: a sentence with a number or a date is preferred
W_QUOTE = 0.03  # a term the question puts in quotes (「哪几个“有所”」) must be in the sentence
W_LIST = 0.1  # list questions: a sentence that enumerates (「A、B、C」) is preferred,
W_ITEM, MAX_ITEMS = 0.002, 10  # and the longer its list, the more (up to MAX_ITEMS items); both scaled by the
# term coverage of the list and its lead sentence, so a list about something else does not outrank the sentence
# that answers (chosen on the tune split of tests/data/book_questions.jsonl)
W_KIND = 0.03  # … and a list whose items each name what the question asks for (asked_kind: 「有……的矛盾，有……的矛盾」)
# The refusal rule and its thresholds: rag/answer/refusal.py.
# English questions, measured (bench/RESULTS.md, "Reliability"): with the 4-bit e5-small the best sentence
# for an English question about the book scores 0.77–0.80, no better than English questions the book does not
# answer (0.72–0.80), so the refusal rule cannot tell them apart and refuses both. A question with Chinese
# terms in it (「群众工作的core是什么？」) is answered. A refused question without any Chinese says why.
FOREIGN_NOTICE = ("本书是中文教材；当前的嵌入模型用不含中文的问题检索中文原文并不可靠，请改用中文提问"
                  "（例如：这本书第一章讲什么？）。")
CANDIDATE_HITS = 8  # passages whose sentences compete (the LLM sees the first settings.answer.passages)
POOL_COVERAGE, POOL_EXTRA = 0.6, 3  # sentence-level lexical matches added to the retrieved passages
# 「展开讲讲」「详细说说」: say more of what was just named (with an ordinal: of that item)
_MORE = re.compile(r"(?:(?:请|再)?(?:展开|详细|具体|仔细|多)(?:讲|说|谈|解释)(?:讲|说|谈|一下|一讲)?|(?:的|是)?什么意思|"
                   r"(?:的)?意思是什么|(?:应该|应当)?(?:怎么|如何|怎样)理解)(?:吧|呢)?[？?。！!…]*")
# a question of nothing but why (「为什么这么说？」「那这是为什么呢」), or asking for more: it asks about what the
# previous turn named
_WHY_ONLY = re.compile(r"(那么?|这是|这又是)?(为什么|为何|何以|凭什么|怎么讲|此话怎讲)(这么说|这样说|这么讲|这样讲)?呢?"
                       rf"[？?。！!…]*|{_MORE.pattern}")


@dataclass(frozen=True)
class Plan:
    query: Query
    hits: tuple[Hit, ...] = ()
    passages: int = 5  # how many of the hits an LLM reads
    book: str | None = None
    final: Answer | None = None  # direct answer or refusal: nothing more to do
    extractive: Answer | None = None


def foreign(text: str) -> bool:
    """A question written in letters with no Chinese character at all (English, pinyin …)."""
    return not any(is_cjk(ch) for ch in text) and sum(ch.isalpha() for ch in text) >= 3


def elsewhere_notice(unloaded: Unloaded) -> str:
    """What the reader is told when another book answers a question about a section whose text is missing."""
    where = unloaded.facts.pointer_to(unloaded.entry, note=False)
    return f"《{unloaded.facts.book.title}》讲这一内容的部分（{where}）正文未载入，以下回答出自其他书。"


class Answerer:
    """Read-only after construction and shared by all sessions (sentence vectors are cached under a lock).

    Its collaborators are made by rag.pipeline.Pipeline.load: the retriever, the books' facts (目录, 版权页),
    the LLM client (None when none is configured), the marker verifier and an optional reranker of hits."""

    def __init__(self, settings: Settings, index, retriever, embedder, facts: Library,
                 llm: LLMClient | None = None, verifier: Verifier | None = None, reranker=None) -> None:
        self.settings = settings
        self.index = index
        self.retriever = retriever
        self.embedder = embedder
        self.facts = facts
        self.llm = llm
        self.verifier = verifier or Verifier(embedder)
        self.reranker = reranker  # Callable[[Query, Sequence[Hit]], Sequence[Hit]] or None
        self.store = SentenceStore(embedder, index.tokenizer, index.chunks, index.sentence_vectors,
                                   index.passages)
        self.composer = Composer(self.store, index.chunks, index.tokenizer)
        self.scope = Scope(facts, embedder, index.passages)  # the refusal rule and the 目录 look-up by meaning

    def warm(self) -> None:
        """Gather every chunk's sentence vectors and terms and encode the 目录 titles now (the app calls this
        once, while the page loads) instead of in the first question that needs them."""
        self.store.vectors(self.index.chunks)
        self.store.holding(frozenset())  # its index of the sentences' terms
        self.scope.titles(None)

    # --- public ---------------------------------------------------------------------------------------------

    def answer(self, query: Query, params: QueryParams = QueryParams()) -> Answer:
        answer = None
        for item in self.answer_stream(query, params):
            if isinstance(item, Answer):
                answer = item
        assert answer is not None
        return answer

    def answer_stream(self, query: Query, params: QueryParams = QueryParams()) -> Iterator[str | Answer]:
        """Text pieces while an LLM writes (none in extractive mode), then always the final Answer."""
        plan = self.plan(query, params)
        if plan.final is not None:
            yield plan.final
            return
        assert plan.extractive is not None
        if self.llm is None or params.mode == "extractive":
            yield plan.extractive
            return
        yield from self._with_llm(plan)

    # --- planning -------------------------------------------------------------------------------------------

    def plan(self, query: Query, params: QueryParams = QueryParams(), whole: bool = True) -> Plan:
        """Everything up to the extractive answer; `final` is set when the LLM must not be asked.

        A compound question (`whole`: not already a part of one) is answered part by part, each part cited,
        a part the book does not cover named as such."""
        passages = params.passages or self.settings.answer.passages
        own, turns = query.words, query.history
        resolved = query.text if query.expanded else None
        base = Answer(question=query.original, text="", citations=(), mode="extractive", notices=query.notices,
                      resolved_question=resolved)
        direct = self.facts.answer(own, turns, params.book)
        parts = split_compound(own) if whole and not query.expanded else [own]
        if len(parts) > 1 and (direct is None or self._all_direct(query, parts, params.book)):
            return Plan(query, final=self._compound(base, query, parts, params))
        if direct is None:  # encoded once: 目录 titles by meaning, retrieval and sentence scoring
            qvec = self.embedder.encode_queries([query.text])[0]
            direct = self.scope.toc_by_meaning(own, turns, qvec, params.book)
        if direct is not None:  # 「信访工作在第几章讲？从哪页开始？」: one 目录 row answers both parts
            return Plan(query, final=replace(base, text=direct.text, citations=direct.citations, mode="direct",
                                             refused=direct.refused))
        items = self._ordinal_followup(own, turns, params.book)
        if items and _MORE.search(own):  # 「第三点展开讲讲」: the item with what the book says of it
            items = self.composer.item_extent(items[0])
        items = items or self._why_followup(own, turns, params.book)
        hits = self._search(query, qvec, max(CANDIDATE_HITS, passages), params.book)
        if items:
            return Plan(query, hits, passages, params.book, extractive=compose(base, items, REFUSAL_TEXT))
        ranked = self._rank(query.text, hits, qvec, own if query.expanded else None, params.book)
        unloaded = self.scope.unloaded_entry(own, ranked, qvec, params.book)
        if unloaded is not None and unloaded.elsewhere:  # another book says it: answered from the others
            ranked = [s for s in ranked if s.sentence.chunk.book != unloaded.facts.book.id]
            hits = tuple(h for h in hits if h.chunk.book != unloaded.facts.book.id)  # the LLM's passages too
            if unloaded.named:
                base = replace(base, notices=base.notices + (elsewhere_notice(unloaded),))
            unloaded = None
        if unloaded is not None or self.scope.outside(query.text, ranked, params.book):
            notices = base.notices + ((FOREIGN_NOTICE,) if foreign(own) else ())
            pointer = (unloaded.facts.pointer_to(unloaded.entry) if unloaded
                       else self.facts.pointer(query.text, params.book))
            refusal = replace(base, text=REFUSAL_TEXT, refused=True, pointer=pointer, notices=notices)
            return Plan(query, hits, passages, params.book, final=refusal)
        chosen = self.composer.choose(query.text, ranked)
        return Plan(query, hits, passages, params.book, extractive=compose(base, chosen, REFUSAL_TEXT))

    def _all_direct(self, query: Query, parts: Sequence[str], book: str | None) -> bool:
        """Every part of a compound question has a direct answer of its own (「第五章讲什么，从第几页开始」)."""
        return all(self.facts.answer(part, (*query.history, *parts[:i]), book) is not None
                   for i, part in enumerate(parts))

    def _compound(self, base: Answer, query: Query, parts: Sequence[str], params: QueryParams) -> Answer:
        """One answer per part, their citations numbered on from each other; a refused part is said to be
        outside the loaded text, with its 目录 pointer."""
        texts: list[str] = []
        cites: list[Citation] = []
        answers: list[Answer] = []
        for i, part in enumerate(parts):
            sub = resolve(part, (*query.history, *parts[:i]), self.settings.answer.max_question_chars)
            plan = self.plan(sub, params, whole=False)
            a = plan.final or plan.extractive
            assert a is not None
            answers.append(a)
            if a.refused:
                pointer = f"（可参阅{a.pointer}）" if a.pointer else ""
                texts.append(f"关于“{part.rstrip('？?')}”：{REFUSAL}{pointer}。")
                continue
            text, numbered = renumbered(a.text, a.citations, cites)
            said = "".join(texts)
            texts.append("".join(s for s in re.findall(r"[^。]+。?", text) if s not in said))  # once each
            cites += [c for c in numbered if c not in cites]
        refused = all(a.refused for a in answers)
        mode = "direct" if all(a.mode == "direct" for a in answers) else "extractive"
        pointer = next((a.pointer for a in answers if a.refused and a.pointer), None)
        return replace(base, text="".join(texts), citations=tuple(cites), refused=refused, mode=mode,
                       pointer=pointer if refused else None)

    def _search(self, query: Query, qvec: np.ndarray, k: int, book: str | None) -> tuple[Hit, ...]:
        hits = self.retriever.search(query, qvec, k, book).hits
        return tuple(self.reranker(query, hits)) if self.reranker is not None else hits

    def _rank(self, text: str, hits: Sequence[Hit], qvec: np.ndarray, own: str | None = None,
              book: str | None = None) -> list[Scored]:
        """Every body sentence of the hits, best first (目录 and 版权页 lines are the direct answers' job).

        `own` is a follow-up's own wording: its terms, not the borrowed topic, measure the coverage."""
        tok = self.index.tokenizer
        qterms = question_terms(tok, own or text) or question_terms(tok, text)
        hits = self._pool(hits, qterms, book)
        if not hits:
            return []
        listing = bool(LIST_QUESTION.search(text))
        kind = asked_kind(tok, own or text) if listing else None
        wants = answer_type(own or text)
        quoted = [squeeze(m)[0] for m in re.findall(r"[“「\"]([^”」\"]{1,12})[”」\"]", own or text)]
        vectors = self.store.vectors([h.chunk for h in hits])
        covers = coverage_of(self.store, qterms)
        scored: list[Scored] = []
        for h in hits:
            spans = self.store.spans(h.chunk)
            items = [list_items(h.chunk.text[a:b]) if listing else 0 for a, b in spans]
            cosines = (vectors[h.chunk.id] @ qvec).tolist()  # one product per chunk, not per sentence
            for i, (a, b) in enumerate(spans):
                s = Sentence(h.chunk, a, b, h.rank, h.score)
                if s.text.rstrip().endswith(("？", "?")):
                    continue  # the book's own rhetorical questions answer nothing
                dense = cosines[i]
                cov = covers(self.store.terms(s))
                lead = Sentence(h.chunk, *spans[i - 1], 0, 0.0) if i else s
                bonus = (self._listed(s, lead, items[i], covers, kind) + (W_TYPE if wants(s.text) else 0.0)
                         + (W_QUOTE if quoted and all(t in squeeze(s.text)[0] for t in quoted) else 0.0))
                score = W_DENSE * dense + W_COVER * cov + W_RANK / h.rank + bonus
                scored.append(Scored(s, score, dense, cov))
        return sorted(scored, key=lambda x: -x.score)

    def _listed(self, s: Sentence, lead: Sentence, items: int, covers, kind: str | None = None) -> float:
        """List questions: a sentence enumerating three or more items gains W_LIST (+ W_ITEM per item), scaled
        by how much of the question it and the sentence before it name — a list is about what its lead says
        (「……一项重要工作是正确处理人民内部矛盾。有经济发展中的矛盾，有……」)."""
        if items < 3:
            return 0.0
        named = W_KIND if kind and s.text.count(kind) >= 3 else 0.0
        return named + (W_LIST + W_ITEM * (min(items, MAX_ITEMS) - 3)) * covers(self.store.terms(s) | self.store.terms(lead))

    def _pool(self, hits: Sequence[Hit], qterms: frozenset[str], book: str | None = None) -> list[Hit]:
        """The body hits, plus any chunk holding a sentence that covers most of the question's terms (a cheap
        sentence-level lexical search over the book, for answers retrieval ranked too low)."""
        pool = [h for h in hits if h.chunk.kind not in ("toc", "front")]
        have = {h.chunk.id for h in pool}
        covers = coverage_of(self.store, qterms)
        extra: list[tuple[float, Hit]] = []
        # a sentence without any of the question's terms covers nothing: only those holding one are looked at
        for row, sentences in self.store.holding(qterms).items():
            c = self.store.chunks[row]
            if c.id in have or (book is not None and c.book != book):  # the book picked, if any
                continue
            best = max(covers(self.store.terms(s)) for s in sentences)
            if best >= POOL_COVERAGE:
                extra.append((best, Hit(c, 0.0, len(hits) + 1)))
        extra.sort(key=lambda x: -x[0])
        return pool + [h for _, h in extra[:POOL_EXTRA]]

    # --- follow-ups ---------------------------------------------------------------------------------------

    def _ordinal_followup(self, text: str, history: Sequence[str], book: str | None) -> list[Sentence]:
        """「那第三个方面呢？」 after a list question: item three of the enumeration that question was answered
        from, or of the numbered subsections its best sentence introduces (the list question is re-retrieved;
        no LLM); after another question, item three of the list its answer announced (Composer.announced)."""
        m = ORDINAL_FOLLOWUP.search(text)
        if not m or len(text) > 14:
            return []
        n = LAST_ITEM if m.group(m.lastindex or 1) == "最后" else cn_int(m.group(m.lastindex or 1)) or 0
        for back, asked in enumerate(reversed(history)):
            listing = bool(LIST_QUESTION.search(asked))
            if not listing and back:  # another question's announced list: only the turn just before
                continue
            # that turn as it was read: 「它包括哪几点？」 after 「什么是群众工作的历史地位？」 is about 历史地位
            previous = expand_followup(asked, history[:len(history) - 1 - back])
            qvec = self.embedder.encode_queries([previous])[0]
            earlier = Query(text=previous, original=asked, own=asked)
            ranked = self._rank(previous, self._search(earlier, qvec, CANDIDATE_HITS, book), qvec, book=book)
            if not listing:  # 「……有什么特点？」: a list when its best sentence announces one
                _head, items = self.composer.announced(previous, ranked)
                if not items:
                    continue
                return [items[-1]] if n == LAST_ITEM else [items[n - 1]] if 0 < n <= len(items) else []
            _lead, items = self.composer.enumerated(previous, ranked)
            if not items and ranked:  # the list is the numbered subsections its answer introduces
                heads, complete = self.composer.heading_items(ranked[0].sentence)
                if n == LAST_ITEM:
                    return heads[-1] if heads and complete else []
                return heads[n - 1] if 0 < n <= len(heads) else []
            if n == LAST_ITEM and items:
                return [items[-1]]
            return [items[n - 1]] if 0 < n <= len(items) else []
        return []

    def _why_followup(self, text: str, history: Sequence[str], book: str | None) -> list[Sentence]:
        """「为什么这么说？」 right after 「第三个是什么？」: the item that turn named, with what the book says
        of it up to the next item."""
        if not _WHY_ONLY.fullmatch(text.strip()) or not history:
            return []
        item = self._ordinal_followup(history[-1], history[:-1], book)
        return self.composer.item_extent(item[0]) if item else []

    # --- LLM ------------------------------------------------------------------------------------------------

    def _with_llm(self, plan: Plan) -> Iterator[str | Answer]:
        assert self.llm is not None and plan.extractive is not None
        passages = [h.chunk for h in plan.hits[: plan.passages]]
        pieces: list[str] = []
        try:
            for piece in self.llm.stream(build_messages(plan.query.text, passages, self.facts.titles())):
                pieces.append(piece)
                yield piece
            checked = self.verifier.check("".join(pieces), passages)
        except LLMError as exc:
            notice = f"{exc}；已改用摘录式回答。"
            yield replace(plan.extractive, notices=plan.extractive.notices + (notice,))
            return
        answer = llm_answer(plan.query.original, checked, plan.extractive.notices)
        pointer = self.facts.pointer(plan.query.text, plan.book) if checked.refused else None
        yield replace(answer, resolved_question=plan.extractive.resolved_question, pointer=pointer)
