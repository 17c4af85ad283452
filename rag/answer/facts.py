"""Direct answers from the 版权页 fields (主编、定价、ISBN …) and the 序言's date and signature, cited to the lines
that show them.

Split from rag/answer/direct.py, which answers from the 目录; both return None for any other question.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

from rag.answer.cite import make_citation, quote_line
from rag.text.fold import find_span
from rag.types import BookInfo, Chunk, Citation

@dataclass(frozen=True)
class Field:
    """How readers ask for one 版权页 field: `words` (「A…B」: A, then B later in the question), the field
    names tried in BookInfo.fields, the answer template, and `also`: words that only say what kind of value
    is wanted (「电话」 for the 印装 line), blanked with the match so they do not name a second field."""

    words: tuple[str, ...]
    names: tuple[str, ...]
    template: str
    also: tuple[str, ...] = ()


# The longest match is taken first: 「第几次印刷」 is 印次, not 「印刷」; 「销售中心」 is not 「销售」 (经销); on a tie
# the field listed first. The words are what a reader calls each field (its meaning), not phrases of particular
# questions.
FIELDS: tuple[Field, ...] = (
    Field(("ISBN", "书号", "国际标准书号", "标准书号", "条形码", "条码"), ("ISBN",), "本书的ISBN（书号）是{v}"),
    Field(("定价", "价格", "多少钱", "售价", "价钱", "几块钱", "多少元", "卖多少", "标价", "原价", "价位"), ("定价",),
          "本书定价{v}"),
    Field(("字数", "多少字", "多少千字", "几千字", "多少万字", "几万字"), ("字数",), "本书字数为{v}"),
    Field(("印数", "印了多少", "印量", "印多少", "多少册", "几册", "多少本", "印刷数量", "发行量", "印刷量", "印刷册数"),
          ("印数",), "本书印数为{v}"),
    Field(("印次", "第几次印刷", "几次印刷", "印了几次", "第几印", "第几次印"), ("印次",), "本书印次为{v}"),
    Field(("版次", "第几版", "哪一版", "几版", "初版", "第一版", "哪个版本", "什么版本", "版本"), ("版次",), "本书版次为{v}"),
    Field(("开本", "尺寸", "多大开", "幅面", "规格", "大小"), ("开本",), "本书开本为{v}"),
    Field(("印张",), ("印张",), "本书印张为{v}"),
    Field(("责任编辑", "责编", "编辑是", "编辑叫", "哪位编辑", "编辑"), ("责任编辑",), "本书责任编辑是{v}"),
    Field(("封面设计", "封面是", "封面由", "设计封面", "封面"), ("封面设计",), "本书封面设计是{v}"),
    Field(("版式设计", "版式", "排版", "版面设计", "版面", "内文设计"), ("版式设计",), "本书版式设计是{v}"),
    Field(("责任校对", "校对", "校稿"), ("责任校对",), "本书责任校对是{v}"),
    Field(("主编", "主持编写", "领衔编写"), ("主编",), "本书主编是{v}"),
    Field(("出版地", "哪个城市出版", "在哪里出版", "在哪出版", "哪里出版", "哪儿出版", "出版城市", "哪座城市", "哪个城市"),
          ("出版地",), "本书的出版地是{v}"),
    Field(("印刷时间", "什么时候印刷", "何时印刷", "哪年印刷", "哪一年印刷", "印刷日期", "印刷…什么时候", "印刷…何时",
           "印刷…哪一年", "印刷…哪年", "印刷…时间", "印…什么时候"), ("印刷时间",), "本书印刷时间是{v}"),
    Field(("什么时候出版", "出版时间", "哪一年出版", "哪年出版", "何时出版", "出版日期", "出版年份", "出版年月", "几月出版",
           "哪月出版", "出版于", "问世", "哪一年", "哪年", "什么时候"), ("出版时间", "出版日期", "出版年"),
          "本书出版时间是{v}"),
    Field(("出版社", "哪家出版", "谁出版", "出版单位", "出版发行", "出版方", "出版机构", "哪个出版", "出版的", "哪家出",
           "谁出的"), ("出版社", "出版发行", "出版者"), "本书由{v}出版"),
    Field(("副主编",), ("副主编",), "本书副主编是{v}"),
    Field(("编写单位", "组织编写", "编写", "谁编", "编者", "编撰", "编著", "作者", "谁写", "编委会", "哪个机构编",
           "哪个单位编", "哪个部门编", "谁组织"), ("编写单位", "组织编写", "编者", "著者", "作者"), "本书由{v}组织编写"),
    Field(("印刷厂", "印刷单位", "哪里印", "谁印", "承印", "印制单位", "印制", "哪家厂", "哪个厂", "印厂", "印刷"),
          ("印刷单位", "印刷", "印刷厂", "印制"), "本书由{v}印刷"),
    Field(("经销", "发行", "销售", "哪里买", "哪儿买", "在哪买", "能买", "去哪买", "买到", "书店", "发售"), ("经销", "发行"),
          "本书由{v}经销"),
    Field(("核字", "CIP"), ("CIP 数据核字号", "CIP数据核字号", "CIP核字号", "核字号"), "本书CIP数据核字号为{v}"),
    Field(("中图分类号", "分类号", "图书分类", "中图分类"), ("中图分类号",), "本书中图分类号为{v}"),
    Field(("主题词", "关键词", "主题"), ("主题词",), "本书的主题词是{v}"),
    Field(("丛书", "系列", "套书", "哪一套", "哪套"), ("丛书名",), "本书属于{v}"),
    Field(("销售中心", "哪里邮购", "向谁邮购", "邮购找", "销售单位"), ("销售中心",), "本书邮购找{v}"),
    Field(("印装错误", "印装质量", "印装", "装订", "缺页", "破损", "印错", "更换", "调换", "退换", "换书", "能换"), ("电话",),
          "本书印装错误可随时更换，电话：{v}", also=("电话", "号码")),
    Field(("邮购电话", "购书电话", "订书电话", "销售中心电话", "邮购的电话", "联系电话", "电话"), ("邮购电话",),
          "本书邮购电话是{v}"),
    Field(("邮购地址", "邮寄地址", "购书地址", "地址", "寄到"), ("邮购地址",), "本书邮购地址是{v}"),
    Field(("责任印制",), ("责任印制",), "本书责任印制是{v}"),
    Field(("网址", "网站"), ("网址",), "本书网址是{v}"),
    Field(("书名", "书的名字", "叫什么名字", "什么书", "书叫什么", "书的名称", "教材的名称", "教材叫什么"), ("书名",),
          "本书书名为《{v}》"),
)
_BOOK_WORDS = re.compile(r"图书在版编目（?CIP）?数据|在版编目数据|CIP数据|版权页|这本教材|本教材|该教材|这本书|本书|该书|此书|这部书|教材|图书|书")
# Characters that carry no topic: question words, particles, punctuation. What remains is the real topic.
_FILLER = set("的了是什么谁哪家个位在年月日时候何多少呢吗啊呀？?。，,！!：:请问一下说讲这本该此其即为由和与及都有被怎么样")
# Words that hold a field's word without naming the field: 「群众工作者」 is not the book's 作者
_NOT_FIELD = re.compile(r"工作者|创作者|劳动者|参与者|组织者|领导者|服务者|建设者")
# A question asking for a reason is about what the book says, never a 版权页 field: 「作者为什么说要好学？」
_WHY = re.compile(r"为什么|为何|何以|原因|理由")


def _in_order(parts: tuple[str, ...], text: str) -> bool:
    """Whether the parts of a word (「A…B」: A, B) occur in `text` in that order."""
    at = 0
    for part in parts:
        at = text.find(part, at)
        if at < 0:
            return False
        at += len(part)
    return True


# Each field's words split into their parts, upper-cased as the question is (made once, not per question).
_FIELD_PARTS = tuple(tuple(tuple(w.upper().split("…")) for w in f.words) for f in FIELDS)


def _residual(text: str, *remove: str) -> str:
    for word in sorted(remove, key=len, reverse=True):
        if word:
            text = text.replace(word, "")
    text = _BOOK_WORDS.sub("", text)
    return "".join(ch for ch in text if ch not in _FILLER and not ch.isspace())


_PREFACE_DATE = re.compile(r"序言.*(落款|日期|哪天|哪一天|什么时候|何时|时间|写于)|(落款|日期).*序言")
_DATE = re.compile(r"\d{4}\s*年\s*\d{1,2}\s*月\s*\d{1,2}\s*日")
# who signed the 序言 (「序言是谁写的」「序言的署名」「谁作的序」), not who a sentence of it is about (「序言里说谁要好学」)
_PREFACE_WHO = re.compile(r"序言.{0,3}谁(写|作|签|撰)|序言.{0,4}(作者|署名|签名|落款人|落款是谁)"
                          r"|谁.{0,2}(写|作|签)的?序|(署名|签名).{0,6}序言")
_SIGNER_CHARS = 24  # a signature line: a name, perhaps with a post (「中共中央政治局常委 某某」), not a sentence
_SENTENCE_END = re.compile(r"[。！？；，：]")
_ADJACENT = 2  # characters between the dated chunk's end and a caption that follows it (a line break)


@dataclass(frozen=True)
class Cited:
    text: str
    citations: tuple[Citation, ...]


class FrontMatter:
    """Answers from the 版权页 (BookInfo.fields, cited to `sources`) and the 序言 (its dated last line)."""

    def __init__(self, info: BookInfo | None, sources: Sequence[Chunk], chunks: Sequence[Chunk]) -> None:
        self.info = info
        page = info.page if info else "版权页"
        self.sources = tuple(sorted(sources, key=lambda c: c.page != page))  # the 版权页 before the 封面
        self.preface = tuple(c for c in chunks if c.section[:1] and re.sub(r"\s", "", c.section[0]) == "序言")

    def answer(self, question: str) -> Cited | None:
        # the 序言's signer and date before the 版权页 fields: 「序言是谁写的」 is not asking for the book's 编写
        # body, nor 「序言写于哪一年」 for its 出版时间
        return self._preface_signer(question) or self._preface_date(question) or self._field(question)

    def _dated(self) -> tuple[Chunk, re.Match] | None:
        """The 序言 chunk whose text has the date it is signed with, and that date."""
        for chunk in self.preface:
            m = _DATE.search(chunk.text)
            if m:
                return chunk, m
        return None

    def _preface_signer(self, question: str) -> Cited | None:
        """Who signed the 序言, as the text shows it: the short line just above its date, or, when the signature
        is a picture, the extracted description of it, quoted as it is and said to be one (a caption chunk
        inside the dated chunk's span of the file or starting right after it: captions are chunked on their
        own)."""
        dated = self._dated() if _PREFACE_WHO.search(question) else None
        if dated is None:
            return None
        chunk, date = dated
        lines = [ln.strip() for ln in chunk.text[:date.start()].splitlines() if ln.strip()]
        above = lines[-1] if lines else ""
        date_cite = make_citation(2, chunk, date.group(0), 1.0)
        if above and len(above) <= _SIGNER_CHARS and not _SENTENCE_END.search(above):
            name = make_citation(1, chunk, above, 1.0)
            if name and date_cite:
                return Cited(f"序言末尾署名“{above}”[1]，落款日期是{date.group(0)}[2]。", (name, date_cite))
        picture = next((c for c in self.preface if c.kind == "caption" and c.source == chunk.source
                        and chunk.start <= c.start <= chunk.end + _ADJACENT), None)
        cite = make_citation(1, picture, picture.text.strip(), 1.0) if picture else None
        if cite is None or date_cite is None:
            return None
        return Cited(f"序言末尾的署名是一幅手写签名图片，已载入的文本中只有对它的描述：“{cite.quote}”[1]；"
                     f"落款日期是{date.group(0)}[2]。", (cite, date_cite))

    def _preface_date(self, question: str) -> Cited | None:
        dated = self._dated() if _PREFACE_DATE.search(question) else None
        if dated is None:
            return None
        chunk, m = dated
        cite = make_citation(1, chunk, m.group(0), 1.0)
        return Cited(f"序言的落款日期是{m.group(0)}[1]。", (cite,)) if cite else None

    def _field(self, question: str) -> Cited | None:
        """One sentence per 版权页 field the question names (「什么时候出版的？第几版？」 names two)."""
        if self.info is None or _WHY.search(question):
            return None
        q = rest = _NOT_FIELD.sub(" ", question.upper())
        asked: list[tuple[Field, int]] = []
        while True:  # the longest match first, blanked out, so 「什么时候出版的」 is not also read as 「出版的」
            found = [(sum(map(len, p)), i, f, p) for i, (f, words) in enumerate(zip(FIELDS, _FIELD_PARTS))
                     if f not in (a[0] for a in asked) and (p := next((p for p in words if _in_order(p, rest)), None))]
            if not found:
                break
            _n, _i, field, parts = max(found, key=lambda x: (x[0], -x[1]))
            asked.append((field, q.find(parts[0])))
            for part in (*parts, *field.also):
                rest = rest.replace(part.upper(), " ")
        asked.sort(key=lambda a: a[1])
        said = (p for f, _ in asked for w in (*f.words, *f.also) for p in w.split("…"))
        if not asked or len(_residual(q, *said)) > 4:
            return None
        sentences: list[str] = []
        cites: list[Citation] = []
        for field, _at in asked:
            names, template = field.names, field.template
            value = next((self.info.fields[n] for n in names if self.info.fields.get(n)), None)
            found = self.cite_value(value) if value else ()
            if not found:
                return None
            numbered = renumber(found, cites)
            cites += [c for c in numbered if c not in cites]
            sentences.append(f"{template.format(v=value)}{marks(numbered)}。")
        return Cited("".join(sentences), tuple(cites))

    def cite_value(self, value: str) -> tuple[Citation, ...]:
        """The 版权页 line that shows `value`, or one line showing all its parts (e.g. two publishers), or one
        line per part."""
        chunks = self.sources
        parts = [p for p in re.split(r"[、，,；;/]\s*", value) if p] or [value]
        for chunk in chunks:
            quote = quote_line(chunk, value) or _line_with_all(chunk, parts)
            if quote:
                cite = make_citation(1, chunk, quote, 1.0)
                return (cite,) if cite else ()
        cites: list[Citation] = []
        for part in parts:
            found = next(((c, q) for c in chunks if (q := quote_line(c, part))), None)
            if found is None:
                return ()
            if all(c.quote != found[1] for c in cites):
                cite = make_citation(len(cites) + 1, found[0], found[1], 1.0)
                cites += [cite] if cite else []
        return tuple(cites)


def renumber(found: Sequence[Citation], have: Sequence[Citation]) -> list[Citation]:
    """`found` numbered after `have`, reusing the number of an identical quote already cited."""
    out: list[Citation] = []
    n = len(have)
    for c in found:
        same = next((h for h in have if h.chunk.id == c.chunk.id and h.quote == c.quote), None)
        if same is None:
            n += 1
            same = Citation(n, c.chunk, c.quote, c.score)
        out.append(same)
    return out


def renumbered(text: str, found: Sequence[Citation], have: Sequence[Citation]) -> tuple[str, list[Citation]]:
    """An answer's text and citations numbered on after `have` (`renumber`), its [n] markers rewritten to match:
    answers joined into one (the parts of a compound question, each book's fact)."""
    numbered = renumber(found, have)
    new = {c.n: m.n for c, m in zip(found, numbered)}
    return re.sub(r"\[(\d+)\]", lambda m: f"[{new.get(int(m.group(1)), m.group(1))}]", text), numbered


def _line_with_all(chunk: Chunk, parts: Sequence[str]) -> str | None:
    for line in chunk.text.splitlines():
        if line.strip() and all(find_span(line, p) for p in parts):
            return line.strip()
    return None


def marks(cites: Sequence[Citation]) -> str:
    return "".join(f"[{c.n}]" for c in cites)
