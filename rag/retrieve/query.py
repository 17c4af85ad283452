"""Question preparation: clean what the user typed, Traditional → Simplified, shorten, and resolve follow-ups.

Runs before any retrieval, so the retriever, the answerer and the UI all see the same cleaned question.
Follow-up expansion is rule-based (no LLM): a short or pronoun-led question borrows its topic from the
previous user turn, e.g. history ["什么是党的群众工作？"] + "它的历史地位是什么？" →
"党的群众工作的历史地位是什么？".
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import replace
from functools import lru_cache
from typing import Sequence

from rag.errors import InputError
from rag.text.numerals import ORDINAL_REF
from rag.types import Query

EMPTY_MESSAGE = "请输入问题。问题为空或只包含空白、控制字符，例如可以问：这本书第一章讲什么？"
NO_WORDS_MESSAGE = "问题里没有文字（只有表情符号或标点），请用文字说说想问什么，例如：这本书第一章讲什么？"
TOO_SHORT_MESSAGE = "问题只有一个字（「{text}」），请说得具体一些，例如：这本书第一章讲什么？"
INPUT_LIMIT = 50_000  # characters of a paste looked at (its head and tail); the question part is used
_ASKS = ("？", "?")
_SENTENCE_END = re.compile(r"[。！？!?；;]+[”’」』）)]*")

# ANSI/VT escape sequences (CSI … final byte, OSC … BEL/ST, and two-byte ESC x) pasted from a terminal.
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-Z\\-_]")
_SPACE = re.compile(r"\s+")


@lru_cache(maxsize=1)
def _converter():
    import opencc

    return opencc.OpenCC("t2s")


def clean(text: str) -> str:
    """Drop escape sequences and invisible characters (NUL, zero-width, bidi); collapse whitespace."""
    text = _ANSI.sub("", text)
    kept = []
    for ch in text:
        cat = unicodedata.category(ch)
        if ch.isspace():
            kept.append(" ")
        elif cat in ("Cc", "Cf", "Cs", "Co", "Cn"):
            continue  # control, format (zero-width, bidi, BOM, soft hyphen), surrogate, private, unassigned
        else:
            kept.append(ch)
    return _SPACE.sub(" ", "".join(kept)).strip()


def prepare(question: str, max_chars: int) -> Query:
    """Cleaned, simplified and length-limited question; raises InputError when nothing usable is left.

    Bounded work for any paste: at most INPUT_LIMIT characters are looked at (head and tail, where a question
    sits), and only the question part (at most `max_chars`) is converted and used."""
    text = clean(_bounded(question or ""))
    if not text:
        raise InputError(EMPTY_MESSAGE)
    part = question_part(text, max_chars)
    words = sum(1 for ch in part if unicodedata.category(ch)[0] in "LN")  # in what is used, not the rest
    if words < 2:
        raise InputError(NO_WORDS_MESSAGE if not words else TOO_SHORT_MESSAGE.format(text=part[:20]))
    notices: list[str] = []
    truncated = part != text
    simplified = _converter().convert(part)
    converted = simplified != part
    if converted:
        notices.append("已将繁体字转换为简体字后检索。")
    if truncated:
        notices.append(f"输入过长，已截取前 {max_chars} 字。" if text.startswith(part) and not part.endswith(_ASKS)
                       else f"输入过长（{len(question)} 字），已截取其中的问句：{part[:60]}")
    return Query(simplified, question, tuple(notices), converted, truncated, shown=part)


def _bounded(question: str) -> str:
    """A huge paste cut to its head and tail (INPUT_LIMIT characters in all), where a question is asked."""
    if len(question) <= INPUT_LIMIT:
        return question
    half = INPUT_LIMIT // 2
    return f"{question[:half]}\n{question[-half:]}"


def question_part(text: str, max_chars: int) -> str:
    """The part of an over-long input that is the question: its last sentence when that asks something
    (text pasted, then asked about), else its first one when that asks (asked, then text pasted), else the
    first `max_chars` characters."""
    if len(text) <= max_chars:
        return text
    ends = [m.end() for m in _SENTENCE_END.finditer(text)]
    spans = list(zip([0, *ends], [*ends, len(text)]))
    candidates = [text[a:b].strip() for a, b in (spans[-1], spans[0])]
    if not candidates[0]:  # the input ends with a sentence mark: the last sentence is the one before it
        candidates[0] = text[spans[-2][0]:spans[-2][1]].strip() if len(spans) > 1 else ""
    for part in candidates:
        if part.endswith(_ASKS) and 2 <= len(part) <= max_chars:
            return part
    return text[:max_chars].rstrip()


def resolve(question: str, history: Sequence[str], max_chars: int) -> Query:
    """The question prepared once for every stage: `prepare`d, the usable earlier questions kept in
    `history`, and a follow-up's reference filled in from them (`text`; the user's own words stay in `own`)."""
    query = prepare(question, max_chars)
    turns = tuple(usable_history(history, max_chars))
    expanded = expand_followup(query.text, turns)
    return replace(query, own=query.text, history=turns, text=expanded, expanded=expanded != query.text)


def usable_history(history: Sequence[str], max_chars: int) -> list[str]:
    """The prepared text of each earlier question; one that cannot be asked (blank, emoji only) is skipped
    rather than failing the question that follows it."""
    turns = []
    for h in history:
        try:
            turns.append(prepare(h, max_chars).text)
        except InputError:
            continue
    return turns


# --- follow-ups -------------------------------------------------------------------------------------------

# Leading words that point back at the previous turn; longest first so "这一章" wins over "这".
_PRONOUNS = ("这一部分", "这一章", "这一节", "这一条", "这一点", "这部分", "这方面", "这几点", "这些", "那些",
             "这个", "那个", "这种", "这章", "这节", "它们", "他们", "她们", "该", "它", "他", "她", "其", "此",
             "这", "那")
_NOT_PRONOUN = ("其他", "其实", "其余", "此外", "这样", "那样", "那么", "这么", "那里", "这里")
_CONNECTIVES = ("那么", "还有", "另外", "此外", "然后", "那", "再")
# Question words and particles: what is left after removing them is the topic of a question.
_QWORDS = re.compile(
    r"请问|请你|请|介绍一下|介绍|简述|说说|谈谈|讲讲|解释一下|解释|具体|详细|主要讲了|主要讲|讲的是什么|讲了什么|讲什么|"
    r"讲的是|讲了|是什么时候|什么时候|哪一年|哪几个|哪几|哪里|哪儿|"
    r"是什么|是指什么|指的是什么|指什么|有哪些|有什么|包括哪些|包括什么|是哪些|是谁|是哪|怎么样|怎样|如何|"
    r"怎么|为什么|为何|什么是|何为|什么|哪些|哪个|多少|几个|几|吗|呢|吧|啊|的内容|内容|呀|"
    r"这么说|这样说|这么讲|这样讲|此话怎讲|怎么讲|这么叫|这样叫|这么称呼|这样称呼|"
    r"书里|书中|文中|教材里|教材中"
)
# "群众工作的核心是什么？" → "那它的实质呢？" asks about another attribute of 群众工作, not of its 核心.
_ATTRIBUTE = re.compile(r"的(?:核心|实质|本质|根本目的|目的|作用|功能|地位|历史地位|内涵|含义|意义|概念|定义|特点|"
                        r"要求|任务|原则|方法|基础|途径|内容)$")
_PUNCT = re.compile(r"[\s\W_]+")


def _topic(question: str) -> str:
    """What a question is about, e.g. "什么是党的群众工作？" → "党的群众工作"."""
    return _PUNCT.sub("", _QWORDS.sub("", question))


def _strip_connective(text: str) -> str:
    for word in _CONNECTIVES:
        if text.startswith(word) and not text.startswith(_NOT_PRONOUN) and len(text) > len(word):
            return text[len(word):].lstrip("，, ")
    return text


def _leading_pronoun(text: str) -> str | None:
    if text.startswith(_NOT_PRONOUN):
        return None
    return next((p for p in _PRONOUNS if text.startswith(p)), None)


def is_followup(question: str) -> bool:
    """A question that cannot stand alone: pronoun-led, an ordinal ("第二点"), a connective, or nearly empty."""
    text = question.strip()
    body = _strip_connective(text)
    return (
        body != text
        or text.startswith(("其他", "其余"))
        or _leading_pronoun(body) is not None
        or bool(ORDINAL_REF.search(text)) and len(_topic(ORDINAL_REF.sub("", text))) <= 4
        or len(_topic(text)) <= 2
    )


def expand_followup(question: str, history: Sequence[str] = ()) -> str:
    """The question with what it refers to filled in from the history (oldest first); unchanged otherwise."""
    if not history or not is_followup(question):
        return question
    # The referent of a chain of follow-ups is the last question that stood on its own: after
    # ["历史地位有哪几个方面？", "第一个方面讲的是什么？"], "那第三个方面呢？" is about 历史地位, not the first aspect.
    anchor = next((h for h in reversed(history) if not is_followup(h)), history[-1])
    if not _topic(question) and not ORDINAL_REF.search(question) and is_followup(history[-1]):
        # a question of nothing but question words (「为什么这么说？」) asks about the whole previous turn, as
        # that turn was read: after ["历史地位有哪几个方面？", "第三个是什么？"], about the third aspect
        anchor = expand_followup(history[-1], history[:-1])
    topic = _topic(anchor)
    if not topic:
        return question
    body = _strip_connective(question.strip())
    pronoun = _leading_pronoun(body)
    if pronoun is not None:
        rest = body[len(pronoun):]
        if rest.startswith("的"):
            topic = _ATTRIBUTE.sub("", topic) or topic
        joiner = "的" if pronoun == "其" and rest[:1] not in ("的", "中", "") else ""  # 其作用 → …的作用
        return f"{topic}{joiner}{rest}"
    parallel = _parallel(anchor, body)
    if parallel is not None:
        return parallel
    return f"{topic} {body}"


def _parallel(anchor: str, body: str) -> str | None:
    """「那农民运动呢？」 after 「党创立时期，工人运动是怎么组织起来的？」: the same question about the other thing —
    the anchor with its word of the same kind (the same last two characters: 运动) put in its place."""
    thing = _PUNCT.sub("", _QWORDS.sub("", body))
    if not 3 <= len(thing) <= 8 or thing in anchor or ORDINAL_REF.search(body):  # 「那第三个方面呢」: an item
        return None
    head = thing[-2:]
    at = anchor.find(head)
    if at < 2 or anchor.find(head, at + 1) >= 0:  # one word of that kind, with something before its head
        return None
    start = at
    while start > 0 and at - start < len(thing) - 2 and not _PUNCT.match(anchor[start - 1]):
        start -= 1
    return anchor[:start] + thing + anchor[at + 2:]


# --- compound questions -------------------------------------------------------------------------------------

# A clause that asks something: a question word or a question particle.
_ASKING = re.compile(r"什么|哪|谁|几|多少|为什么|为何|怎样|怎么|如何|是否|吗|呢|何时|何处")
_PART_END = re.compile(r"[？?；;]+")
_CLAUSE = re.compile(r"[，,、]")
_CONTINUES = ("又", "还", "另外", "并且", "而且", "以及", "同时", "那么", "那")


def split_compound(text: str) -> list[str]:
    """The questions a compound question asks, in order: 「A是什么？B又是什么？」, 「第五章讲什么，从第几页开始？」,
    「多少册，是哪家公司印刷的，由谁经销」. A single question (「A和B分别是什么」) comes back alone. A clause is a
    part of its own only when it asks something itself; a part keeps its own words (follow-up words such as
    「又」 are dropped, a pronoun is resolved later against the parts before it)."""
    sentences = [s.strip() for s in _PART_END.split(text) if s.strip()]
    parts: list[str] = []
    for sentence in sentences:
        clauses = [c.strip() for c in _CLAUSE.split(sentence) if c.strip()]
        asking = [bool(_ASKING.search(c)) for c in clauses]
        if len(clauses) > 1 and all(asking) and all(len(_topic(c)) >= 1 for c in clauses):
            parts += clauses
        else:
            parts.append(sentence)
    parts = [_drop_continuation(p) for p in parts]
    parts = [p for p in parts if len(p) >= 3 and _ASKING.search(p) or len(parts) == 1]
    if len(parts) < 2:
        return [text]
    return [_carry_reference(p, parts[i - 1]) + "？" if i else p + "？" for i, p in enumerate(parts)]


_REFERENCE = re.compile(r"^(?:第[0-9一二三四五六七八九十百零两]+章)?(?:第[0-9一二三四五六七八九十百零两]+节)?")


def _carry_reference(part: str, before: str) -> str:
    """「第五章讲什么，从第几页开始」: the second part is about the chapter the first one names."""
    ref = _REFERENCE.match(before).group(0)
    if ref and not re.search(r"第[0-9一二三四五六七八九十百零两]+[章节]", part) and re.search(r"页|节|章|讲", part):
        return ref + part
    return part


def _drop_continuation(part: str) -> str:
    for word in _CONTINUES:
        if part.startswith(word) and len(part) > len(word) + 2:
            part = part[len(word):]
            break
    return part.replace("又是", "是").replace("又该", "该").replace("又有", "有").replace("还要", "要")
