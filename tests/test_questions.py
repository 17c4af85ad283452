"""The project's question set (tests/data/questions.jsonl) checked against the shipped book text.

Why: retrieval and answer evaluation (issues 4 and 5) score the system against these questions. A question
whose evidence is not verbatim in the book, whose key phrases are not next to that evidence, or whose expected
page or section is wrong would silently measure nothing. Pure text checks on the real corpus file; no model.

Conventions of the file (one JSON object per line):
- `evidence`: exact substrings of the book, each occurring once; a retrieved passage "hits" when it contains
  any of them (enumerations spread over several paragraphs list one string per paragraph).
- `answer_phrases`: what a correct answer must contain; for list questions every item of the enumeration.
  Compare ignoring whitespace (the 版权页 writes "2015 年 2 月").
- `section`: the innermost heading of the first evidence as printed in the book (without the "◇ " ornament,
  as section paths carry it), or the named front-matter part (版权页, 序言, 目录).
- `page`: the printed page label of the first evidence. The excerpt carries no page numbers, so body pages
  follow the project's estimation rule (rag/types.py, PageSource "estimated"): 第一章 starts on the page the
  目录 gives, and every blank-line gap that splits running text mid-sentence is a page break. A caption or
  footnote keeps the page it is printed on.
- `out_of_scope`: not answerable from the loaded text; `pointer` names the 目录 chapter (› section) covering it.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BOOK = ROOT / "corpus" / "qunzhong-gongzuo-excerpt.txt"
QUESTIONS = ROOT / "tests" / "data" / "questions.jsonl"

TYPES = {
    "fact", "list", "definition", "who_when", "paraphrase", "toc", "copyright", "followup", "out_of_scope",
}
REQUIRED = {
    "id": str, "question": str, "type": str, "history": list, "answerable": bool, "evidence": list,
    "answer_phrases": list, "section": (str, type(None)), "page": (str, type(None)),
}
OPTIONAL = {"notes": str, "pointer": str}

TEXT = BOOK.read_text(encoding="utf-8")
ROWS = [json.loads(line) for line in QUESTIONS.read_text(encoding="utf-8").splitlines() if line.strip()]
ANSWERABLE = [r for r in ROWS if r.get("answerable")]

# Front-matter parts in book order, each starting at a landmark of the excerpt; "正文" is the body.
PARTS = [("封面", 0), ("版权页", TEXT.index("责任编辑：")), ("序言", TEXT.index("序 言")),
         ("目录", TEXT.index("目 录")), ("正文", TEXT.index("\n第一章\n"))]
PARAGRAPH = re.compile(r"(?:[^\n]*\S[^\n]*(?:\n|$))+")  # a run of non-blank lines
HEADINGS = [re.compile(p) for p in (r"第[一二三四五六七八九十]+章", r"第[一二三四五六七八九十]+节 \S.*",
                                    r"◇ \S.*", r"（[一二三四五六七八九十]+）\S.*")]
TOC_LINE = re.compile(r"^\t?(第[一二三四五六七八九十]+[章节])\s+(.+?)\s*·+\t(\d+)$", re.M)


def _ids(rows: list[dict]) -> list[str]:
    return [r.get("id", "?") for r in rows]


def part_of(offset: int) -> str:
    return [name for name, start in PARTS if start <= offset][-1]


def paragraph_of(offset: int) -> str:
    for m in PARAGRAPH.finditer(TEXT):
        if m.start() <= offset < m.end():
            return m.group()
    raise AssertionError(f"偏移 {offset} 不在任何段落内")


def _body_paragraphs() -> list[re.Match[str]]:
    body = dict(PARTS)["正文"]
    return [m for m in PARAGRAPH.finditer(TEXT) if m.start() >= body]


def _splits_mid_sentence(par: str) -> bool:
    """Running text (not a heading, photo caption or footnote) that stops before its sentence ends."""
    s = par.strip()
    if len(s) < 25 or s[0] in "▲(^":
        return False
    return s.rstrip("”’」』）)")[-1] not in "。！？：；…"


def page_of(offset: int) -> str:
    part = part_of(offset)
    if part != "正文":
        return part
    first = int(re.search(r"第一章\t[^\n]*?(\d+)\n", TEXT).group(1))
    pars = _body_paragraphs()
    breaks = [p.end() for p, nxt in zip(pars, pars[1:])
              if _splits_mid_sentence(p.group()) and not nxt.group().startswith("^")]
    return str(first + sum(1 for end in breaks if end <= offset))


def heading_path(offset: int) -> list[str]:
    levels: dict[int, str] = {}
    for m in _body_paragraphs():
        if m.start() > offset:
            break
        text = m.group().strip()
        for level, pattern in enumerate(HEADINGS, start=1):
            if pattern.fullmatch(text):
                levels = {k: v for k, v in levels.items() if k < level}
                levels[level] = text.removeprefix("◇ ")  # an ornament, not part of the heading
    return [levels[k] for k in sorted(levels)]


def toc_pointers() -> set[str]:
    """Every chapter heading of the 目录 and every "chapter › section" path, as `pointer` may name them."""
    out: set[str] = set()
    chapter = ""
    for number, title, _page in TOC_LINE.findall(TEXT):
        heading = f"{number} {title}"
        if number.endswith("章"):
            chapter = heading
            out.add(heading)
        else:
            out.add(f"{chapter} › {heading}")
    return out


def test_file_has_enough_questions_of_every_type() -> None:
    counts = Counter(r.get("type") for r in ROWS)
    assert len(ROWS) >= 40, f"{QUESTIONS} 只有 {len(ROWS)} 题，至少需要 40 题"
    assert set(counts) == TYPES, f"{QUESTIONS} 的题型 {sorted(counts)} 与要求的 {sorted(TYPES)} 不一致"
    thin = {t: n for t, n in counts.items() if n < 5}
    assert not thin, f"这些题型少于 5 题，按题型的指标没有意义：{thin}"


def test_ids_are_unique_and_well_formed() -> None:
    ids = _ids(ROWS)
    dupes = [i for i, n in Counter(ids).items() if n > 1]
    assert not dupes, f"{QUESTIONS} 中重复的 id：{dupes}"
    bad = [i for i in ids if not re.fullmatch(r"q\d{3}", str(i))]
    assert not bad, f"id 应为 q001 这样的格式：{bad}"
    assert len({r["question"] for r in ROWS if not r["history"]}) == sum(1 for r in ROWS if not r["history"])


@pytest.mark.parametrize("row", ROWS, ids=_ids(ROWS))
def test_schema(row: dict) -> None:
    unknown = set(row) - set(REQUIRED) - set(OPTIONAL)
    assert not unknown, f"{row.get('id')}: 未知字段 {unknown}"
    for key, kind in {**REQUIRED, **{k: v for k, v in OPTIONAL.items() if k in row}}.items():
        assert key in row, f"{row.get('id')}: 缺少字段 {key}"
        assert isinstance(row[key], kind), f"{row['id']}: 字段 {key} 的类型不对：{row[key]!r}"
    assert row["type"] in TYPES, f"{row['id']}: 未知题型 {row['type']!r}"
    assert row["question"].strip()
    for key in ("history", "evidence", "answer_phrases"):
        assert all(isinstance(s, str) and s.strip() for s in row[key]), f"{row['id']}: {key} 含空值或非字符串"
        assert len(set(row[key])) == len(row[key]), f"{row['id']}: {key} 有重复项"


@pytest.mark.parametrize("row", ROWS, ids=_ids(ROWS))
def test_type_answerable_and_history_agree(row: dict) -> None:
    scope = row["type"] != "out_of_scope"
    assert row["answerable"] is scope, f"{row['id']}: 只有 out_of_scope 题应为 answerable=false"
    assert bool(row["history"]) is (row["type"] == "followup"), f"{row['id']}: 只有 followup 题带 history"
    if scope:
        assert row["evidence"] and row["answer_phrases"], f"{row['id']}: 可回答的题必须有证据和要点"
        assert "pointer" not in row, f"{row['id']}: pointer 只用于 out_of_scope 题"
    else:
        assert row["evidence"] == [] and row["answer_phrases"] == [], f"{row['id']}: 书外题不应有证据"
        assert row["section"] is None and row["page"] is None, f"{row['id']}: 书外题的 section/page 应为 null"


@pytest.mark.parametrize("row", ANSWERABLE, ids=_ids(ANSWERABLE))
def test_evidence_is_verbatim_and_unique_in_the_book(row: dict) -> None:
    for ev in row["evidence"]:
        n = TEXT.count(ev)
        assert n == 1, f"{row['id']}: 证据 {ev!r} 在 {BOOK.name} 中出现 {n} 次（应恰好 1 次，逐字复制原文）"
        assert len(ev) <= 45, f"{row['id']}: 证据 {ev!r} 太长，取能唯一定位段落的最短原文"


@pytest.mark.parametrize("row", ANSWERABLE, ids=_ids(ANSWERABLE))
def test_answer_phrases_sit_next_to_the_evidence(row: dict) -> None:
    """目录 phrases may come from the whole 目录 (e.g. the chapter of a section); 版权页 ones from the evidence
    line itself; body phrases from a paragraph that holds one of the evidence strings."""
    scopes = []
    for ev in row["evidence"]:
        part = part_of(TEXT.index(ev))
        if part == "目录":
            scopes.append(TEXT[dict(PARTS)["目录"]:dict(PARTS)["正文"]])
        elif part in ("版权页", "封面"):
            scopes.append(ev)
        else:
            scopes.append(paragraph_of(TEXT.index(ev)))
    missing = [p for p in row["answer_phrases"] if not any(p in s for s in scopes)]
    assert not missing, f"{row['id']}: 要点 {missing} 不在任何证据所在的段落中"


@pytest.mark.parametrize("row", ANSWERABLE, ids=_ids(ANSWERABLE))
def test_section_and_page_match_the_first_evidence(row: dict) -> None:
    at = TEXT.index(row["evidence"][0])
    part = part_of(at)
    if part == "正文":
        path = heading_path(at)
        assert row["section"] in path, f"{row['id']}: section {row['section']!r} 不在标题路径 {path} 中"
    else:
        assert row["section"] == part, f"{row['id']}: section 应为 {part!r}"
    assert row["page"] == page_of(at), f"{row['id']}: page 应为 {page_of(at)!r}，而不是 {row['page']!r}"


def test_pointers_name_real_toc_entries() -> None:
    valid = toc_pointers()
    assert "第六章 开拓“网络群工”是新手段" in valid and len(valid) == 32  # 8 章 + 24 节
    bad = {r["id"]: r["pointer"] for r in ROWS if "pointer" in r and r["pointer"] not in valid}
    assert not bad, f"pointer 不是目录中的章或“章 › 节”：{bad}"
    assert sum("pointer" in r for r in ROWS) >= 3, "至少 3 道书外题应指向目录中的后续章节"


def test_page_rule_on_known_breaks() -> None:
    """The oracle itself: 第一章 starts on page 1 (目录 001) and 彭湃 follows the 安源 page break."""
    assert page_of(TEXT.index("掌握党的群众工作的基本观点")) == "1"
    assert page_of(TEXT.index("安源路矿\n")) == "3" and page_of(TEXT.index("工人俱乐部，")) == "4"
    assert page_of(TEXT.index("^① 《习近平谈治国理政》")) == page_of(TEXT.index("开展群众工作，解决民生问题"))
    path = heading_path(TEXT.index("（一）推动经济社会发展") + 12)
    assert path[-2:] == ["三、群众工作的作用", "（一）推动经济社会发展"]


def test_paraphrases_share_no_word_with_their_evidence() -> None:
    """A paraphrase tests semantic retrieval only if BM25 cannot match it: no common jieba word."""
    import jieba

    tok = jieba.Tokenizer()

    def words(s: str) -> set[str]:
        return {w for w in tok.lcut(s) if len(w) >= 2 and re.fullmatch(r"[\u4e00-\u9fff]+", w)}

    shared = {}
    for r in (r for r in ROWS if r["type"] == "paraphrase"):
        common = words(r["question"]) & set().union(*(words(e) for e in r["evidence"]))
        if common:
            shared[r["id"]] = sorted(common)
    assert not shared, f"这些改写题与证据共享词语，不能检验语义检索：{shared}"


BOOK_QUESTIONS = ROOT / "tests" / "data" / "book_questions.jsonl"  # issue 13: tune / held-out by hash of the id
BOOK_ROWS = [json.loads(line) for line in BOOK_QUESTIONS.read_text(encoding="utf-8").splitlines() if line.strip()]


def test_book_questions_quote_the_book_and_do_not_repeat() -> None:
    """Evidence and key phrases of tests/data/book_questions.jsonl are the book's own words (spaces ignored), ids
    are unique, and no question is asked twice: a twin in the other split would leak tune into held-out."""
    flat = re.sub(r"\s", "", TEXT)
    ids = [r["id"] for r in BOOK_ROWS]
    assert len(ids) == len(set(ids)) and len(BOOK_ROWS) >= 300
    asked = [(r["question"], tuple(r["history"])) for r in BOOK_ROWS]
    assert len(asked) == len(set(asked)), [q for q, n in Counter(asked).items() if n > 1]
    for r in BOOK_ROWS:
        quotes = [*r["evidence"], *(e for p in r.get("parts") or () for e in p.get("evidence") or ())]
        assert all(re.sub(r"\s", "", e) in flat for e in quotes), r["id"]
        keys = [*r["answer_phrases"], *(k for p in r.get("parts") or () for k in p.get("answer_phrases") or ())]
        assert all(any(re.sub(r"\s", "", alt) in flat for alt in k.split("|")) for k in keys), r["id"]
        assert r["answerable"] == (r["type"] != "out_of_scope"), r["id"]
