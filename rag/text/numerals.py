"""Chinese numerals and the patterns built on them: 第X章/第X节/第X页 references, heading and list numbering.

One home for every stage that reads them: the 目录 parser and the layout (ingest), BM25's heading terms
(store), question routing, sentence extraction and follow-ups (retrieve, answer).
"""

from __future__ import annotations

import re
import unicodedata

CN_NUM = "一二三四五六七八九十百零〇两"  # the numerals a 目录 numbers its chapters with
CN_DIGITS = "一二三四五六七八九十"  # list numbering: 一、 （二） 第三，
_VALUE = {"零": 0, "〇": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9}
NUM = rf"[{CN_NUM}]+|\d+"

# A heading line of a chapter or section: "第一章 做好群众工作……", "第 二 节 ……" (number, then title).
CHAPTER_RE = re.compile(rf"^\s*(第\s*(?:{NUM})\s*章)\s*(.*)$")
SECTION_RE = re.compile(rf"^\s*(第\s*(?:{NUM})\s*节)\s*(.*)$")
# References in a question or a section path: 第三章, 第2节, 第十五页 (the number is group 1).
CHAPTER_REF = re.compile(rf"第([0-9]+|[{CN_NUM}]+)章")
SECTION_REF = re.compile(rf"第([0-9]+|[{CN_NUM}]+)节")
PAGE_REF = re.compile(rf"第([0-9]+|[{CN_NUM}]+)页")
# The numbering a heading starts with (◇ 一、 / （一） / 第一节 …), removed to get its topic words.
HEADING_NUMBER = re.compile(rf"^(?:[◇◆●■□△▲]\s*)?(?:第[{CN_NUM}\d]+[章节]|[{CN_DIGITS}]+、|"
                            rf"（[{CN_DIGITS}]+）|\d+[.、])?\s*")
# 「第六十条」 at the start of a line (a Markdown **第六十条** too): the article of a 章/节/条 text, its citation anchor.
ARTICLE_RE = re.compile(rf"^[\s*#]*(第[{CN_NUM}\d]+条)", re.M)
# 「第三点」「第二个方面」: an ordinal a follow-up asks about.
ORDINAL_REF = re.compile(rf"第([{CN_DIGITS}\d]+)(?:个方面|个|点|条|项|方面|部分)")


def cn_int(text: str) -> int | None:
    """「十二」→12, 「3」→3, 「一百零五」→105; None when it is not a number."""
    text = unicodedata.normalize("NFKC", text)
    if text.isdigit():
        return int(text)
    total, digit = 0, 0
    for ch in text:
        if ch in _VALUE:
            digit = _VALUE[ch]
        elif ch in "十百":
            total += (digit or 1) * (10 if ch == "十" else 100)
            digit = 0
        else:
            return None
    return total + digit if text else None


def int_cn(n: int) -> str:
    """12 → 「十二」 (1..99), larger numbers in digits."""
    if not 0 < n < 100:
        return str(n)
    tens, ones = divmod(n, 10)
    digits = "一二三四五六七八九"
    head = "" if tens == 0 else ("十" if tens == 1 else digits[tens - 1] + "十")
    return head + ("" if ones == 0 else digits[ones - 1])


def article_at(text: str, offset: int) -> str | None:
    """The article (「第六十条」) whose text holds `offset`: the last one that starts at or before it."""
    found = None
    for m in ARTICLE_RE.finditer(text):
        if m.start(1) > offset:
            break
        found = m.group(1)
    return found


def chapter_at(path) -> int | None:
    """Where the 章 heading is in a chunk's section path: first, or after the book's own title heading (a
    Markdown book's 「# 书名」 above its 「## 第一章 …」); None when neither is a 章."""
    return next((i for i, h in enumerate(tuple(path)[:2]) if CHAPTER_RE.match(h)), None)


def part_key(path) -> tuple[str, ...]:
    """A section path from its 章 to its 节 (or the 章 alone when it has no 节), without a book's title
    heading above the 章: the unit a practice round or a count by 节 works on; the first two headings of a
    path without a 章."""
    path = tuple(path)
    at = chapter_at(path) or 0
    return path[at:at + 2]

