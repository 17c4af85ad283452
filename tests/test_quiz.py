"""Practice items (rag/study/quiz.py), their grader (rag/study/grade.py), `python -m rag quiz` and the 练习 page.

Oracles: the items' promises are checked against the book itself (every key is the verbatim text of the chunk
it cites; an altered 判断 statement is nowhere in the book); the 简答 grader against hand grades
(tests/data/quiz_graded.jsonl, Cohen's κ)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from rag.eval.quiz import GRADED, cohen_kappa, graded_split, load_graded, quiz
from rag.study.grade import grader_for
from rag.study.quiz import FALSE, KINDS, bank, draw, problems, sections_with_text
from rag.text.fold import squeeze

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "pages" / "1_练习.py"


@pytest.fixture(scope="module")
def items(pipeline):
    return bank(pipeline.index.chunks, pipeline.index.lexicon)


def test_every_section_with_text_has_at_least_five_items(pipeline, items) -> None:
    sections = [p for p in sections_with_text(pipeline.index.chunks) if len(p) >= 2]
    assert sections
    for path in sections:
        mine = [it for it in items if it.section[:2] == path]
        assert len(mine) >= 5, path
        assert {it.kind for it in mine} == set(KINDS), path


def test_every_answer_key_is_verbatim_in_the_chunk_it_cites(pipeline, items) -> None:
    assert problems(items, pipeline.index.chunks) == []
    for it in items:
        for k in it.keys:
            chunk = pipeline.index.chunk(k.chunk_id)
            assert k.text and k.text in chunk.text and chunk.text[k.start:k.end] == k.text
            assert chunk.section == k.section and k.page


def test_an_altered_statement_never_occurs_in_the_book(pipeline, items) -> None:
    book = squeeze("".join(c.text for c in pipeline.index.chunks))
    altered = [it for it in items if it.kind == "judge" and it.answer == FALSE]
    assert len(altered) >= 5
    for it in altered:
        assert squeeze(it.statement) not in book
        assert it.keys[0].text != it.statement


def test_answers_and_options_are_consistent(items) -> None:
    for it in items:
        if it.kind == "choice":
            assert len(set(it.options)) == 4 and it.answer in it.options
            assert all(o not in it.prompt for o in it.options)
        if it.kind == "fill":
            assert "____" in it.prompt and it.answer in it.keys[0].text
        if it.kind == "short":
            assert len(it.points) == len(it.keys) >= 2


def test_a_round_is_the_same_for_a_seed_and_scoped(pipeline, items) -> None:
    a, b = draw(items, 10, seed=7), draw(items, 10, seed=7)
    assert [i.id for i in a] == [i.id for i in b] and len(a) == 10
    assert [i.id for i in a] != [i.id for i in draw(items, 10, seed=8)]
    assert {i.kind for i in a} == set(KINDS)
    scoped = bank(pipeline.index.chunks, pipeline.index.lexicon, section="（一）推动经济社会发展")
    assert scoped and all("（一）推动经济社会发展" in it.section for it in scoped)
    assert bank(pipeline.index.chunks, pipeline.index.lexicon, book="no-such-book") == []


def test_grader_exact_kinds_and_partial_credit(pipeline, items) -> None:
    g = grader_for(pipeline.index)
    fill = next(it for it in items if it.kind == "fill")
    assert g.grade(fill, f" “{fill.answer}” ").score == 1 and g.grade(fill, "").score == 0
    choice = next(it for it in items if it.kind == "choice")
    letter = "ABCD"[choice.options.index(choice.answer)]
    assert g.grade(choice, letter).score == 1 and g.grade(choice, choice.answer).score == 1
    judge = next(it for it in items if it.kind == "judge")
    assert g.grade(judge, judge.answer).score == 1 and g.grade(judge, "√" if judge.answer == FALSE else "×").score == 0
    roles = next(it for it in items if it.kind == "short" and it.points[0].startswith("根本目的"))
    assert g.grade(roles, "根本目的是推动发展，实质是密切党群关系，核心是正确处理人民内部矛盾。").score == 1
    assert g.grade(roles, "核心是正确处理人民内部矛盾。").score == 0.5
    assert g.grade(roles, "根本目的是密切党群关系，实质是正确处理人民内部矛盾，核心是推动发展。").score == 0
    assert g.grade(roles, "今天天气很好。").score == 0


def test_grader_slots_denials_and_word_pieces(pipeline, items) -> None:
    g = grader_for(pipeline.index)
    short = [it for it in items if it.kind == "short"]
    roles = next(it for it in short if it.points[0].startswith("根本目的"))
    definition = next(it for it in short if it.points[0].startswith("以全体共产党员"))
    uses = next(it for it in short if it.points == ("推动经济社会发展", "解决民生问题"))
    # a role named by its head word, answered after a colon
    assert g.grade(roles, "目的：推动发展；实质：密切党群关系；核心：正确处理人民内部矛盾").score == 1
    # 「不是A，而是B」: A earns nothing, B counts for the role A was denied for
    assert g.grade(roles, "核心不是推动发展，而是正确处理人民内部矛盾").covered == (0, 0, 1)
    assert g.grade(uses, "不是推动经济社会发展，而是解决民生问题").covered == (0, 1)
    # 「以……为原则」 frames: the book's words in the wrong frame earn nothing, in the right one they count
    assert g.grade(definition, "以群众路线为原则，以全心全意为人民服务为根本方法").score == 0
    right = g.grade(definition, "以全心全意为人民服务的宗旨为原则，以正确运用党的群众路线为根本方法")
    assert right.covered[2] == right.covered[5] == 1
    # a book term said in other words is credited by its pieces: 民生问题 → 民生 + 问题
    assert g.grade(uses, "推动经济社会发展，解决群众的民生困难").score == 1


def test_grader_terse_summaries_and_restated_headings(pipeline, items) -> None:
    g = grader_for(pipeline.index)
    short = [it for it in items if it.kind == "short"]
    layers = next(it for it in short if it.points[0].startswith("共产党人深入群众之中"))
    heads = next(it for it in short if it.points[0].startswith("党的群众工作的基本概念"))
    # a clause made only of a point's own words covers it, however short: four layers in a few words each
    terse = "首先问政于民，倾听群众呼声；其次践行宗旨，为群众造福；再次吃苦在前，发挥表率作用；最后加强监督和管理。"
    assert g.grade(layers, terse).score == 1
    assert g.grade(layers, "首先问政于民，倾听群众呼声；其次践行宗旨，为群众造福。").score == 0.5
    assert g.grade(layers, "首先要宣传群众；其次要组织群众；再次要服务群众；最后要团结群众。").score == 0
    # restating the question's heading earns nothing; naming one of its points still counts
    assert g.grade(heads, "党的群众工作的地位和作用").score == 0 and g.grade(heads, "地位与作用").score == 0
    assert g.grade(heads, "群众工作的作用").score == 0.5


def test_grader_named_slots_foreign_roles_headings_and_traditional_script(pipeline, items) -> None:
    g = grader_for(pipeline.index)
    short = [it for it in items if it.kind == "short"]
    roles = next(it for it in short if it.points[0].startswith("根本目的"))
    definition = next(it for it in short if it.points[0].startswith("以全体共产党员"))
    heads = next(it for it in short if it.points[0].startswith("党的群众工作的基本概念"))
    four = next(it for it in short if it.points[0].startswith("党的群众工作，是党的事业"))
    # 繁体 is read as 简体
    assert g.grade(roles, "根本目的是推動發展，實質是密切黨群關係，核心是正確處理人民內部矛盾。").score == 1
    # a named slot filled with a few words of its point covers it; the slot's name is not the answer's word
    assert g.grade(definition, "原则：为人民服务，对象：人民群众").covered[:3] == (0, 1, 1)
    # a slot named and filled against the book keeps an otherwise complete answer from full marks
    full = "；".join(definition.points)
    assert g.grade(definition, full).score == 1
    means = "以宣传群众、组织群众、服务群众为工作手段"
    assert g.grade(definition, full.replace(means, "以行政命令为工作手段")).score == 0.5
    assert g.grade(definition, full.replace(means + "；", "")).score == 1  # one point missing: still full
    # a clause naming a role of the book (实质, 核心…) says nothing of a point that is not that role
    assert g.grade(four, "正确处理人民内部矛盾是可持续之基").covered[3] == 1
    assert g.grade(four, "正确处理人民内部矛盾是核心").covered[3] == 0
    assert g.grade(four, "第一是根本目的推动发展，第二是核心正确处理人民内部矛盾").score == 0
    # a heading point whose words the question all gives is said by what sets it apart: 作用
    assert g.grade(heads, "一、基本概念和内涵；二、历史地位；三、作用").score == 1
    assert g.grade(roles, "").score == 0 and g.grade(roles, "😀").score == 0


def test_hand_graded_answers_agree_with_the_grader(pipeline, tmp_path) -> None:
    rows = load_graded(GRADED)
    assert len(rows) >= 60 and {r["type"] for r in rows} == {"good", "partial", "wrong", "off-topic"}
    assert {r["grade"] for r in rows} == {0, 0.5, 1}
    assert all(r["split"] == graded_split(r["id"]) for r in rows)  # fixed by the id, never chosen by hand
    assert len({r["id"] for r in rows}) == len(rows) >= 150
    report = quiz(pipeline)
    # Floors under today's figures on the 376 answers (held out 0.753, tune 0.795, all 0.776; bench/RESULTS.md):
    # the target, κ ≥ 0.8 held out, is not met yet. The message shows figures only, no held-out answer.
    assert report.rows["全部"]["κ"] >= 0.76, report.rows
    assert report.rows["test（报告）"]["κ"] >= 0.73, report.rows  # held out: reported, see rag/eval/quiz.py
    # The first 166 answers (g01–g166) keep the floors they had before the set grew (now 0.854 / 0.819).
    first = tmp_path / "first-166.jsonl"
    first.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows[:166]), encoding="utf-8")
    earlier = quiz(pipeline, graded_path=first)
    assert earlier.rows["全部"]["κ"] >= 0.81, earlier.rows
    assert earlier.rows["test（报告）"]["κ"] >= 0.76, earlier.rows
    assert "全部通过" in report.notes[0]


def test_cohen_kappa_matches_a_hand_computation() -> None:
    assert cohen_kappa([0, 1, 0.5, 1], [0, 1, 0.5, 1]) == 1.0
    # 2x2 table: agree 0/0 ×2, 1/1 ×1, disagree 0/1 ×1 → po = 0.75, pe = (3·2 + 1·2)/16 = 0.5 → κ = 0.5
    assert cohen_kappa([0, 0, 1, 0], [0, 0, 1, 1]) == pytest.approx(0.5)


def test_cli_quiz_json_is_deterministic(built, capsys) -> None:
    from rag.__main__ import main

    args = ["quiz", "--index", str(built.index_dir), "-n", "5", "--seed", "11", "--json", "--section", "第一节"]
    assert main(args) == 0
    first = capsys.readouterr().out
    assert main(args) == 0
    assert capsys.readouterr().out == first
    rows = [json.loads(line) for line in first.splitlines()]
    assert len(rows) == 5 and all(r["keys"][0]["page"] and r["seed"] == 11 for r in rows)
    assert main(["quiz", "--index", str(built.index_dir), "--book", "nope"]) == 1


@pytest.fixture
def page_env(built, tmp_path, monkeypatch):
    for name in ("RAG_CORPUS", "RAG_MODEL", "RAG_LLM_BASE_URL", "RAG_LLM_MODEL", "RAG_HISTORY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("RAG_INDEX_DIR", str(built.index_dir))
    monkeypatch.setenv("RAG_FEEDBACK_PATH", str(tmp_path / "feedback.jsonl"))
    monkeypatch.setenv("RAG_HISTORY_PATH", str(tmp_path / "history.sqlite3"))
    return tmp_path


def test_practice_round_answer_grade_and_reread(page_env, pipeline) -> None:
    at = AppTest.from_file(str(PAGE), default_timeout=180)
    at.session_state["seed"] = 5
    at.run()
    assert not at.exception, at.exception
    round_ = at.session_state["round"]
    assert len(round_) == 8 and [i.id for i in round_] == [i.id for i in draw(
        bank(pipeline.index.chunks, pipeline.index.lexicon), 8, 5)]
    for i, it in enumerate(round_):  # the first item right, every other one wrong
        key = f"a-1-{i}"
        right = it.answer if it.kind != "short" else "；".join(it.points)
        if it.kind in ("choice", "judge"):
            wrong = next(o for o in (it.options or ("对", "错")) if o != it.answer)
            at.radio(key=key).set_value(right if i == 0 else wrong)
        elif it.kind == "fill":
            at.text_input(key=key).input(right if i == 0 else "不知道")
        else:
            at.text_area(key=key).input(right if i == 0 else "不知道")
    at.button(key="grade").click().run()
    assert not at.exception, at.exception
    grades = [g.score for g in at.session_state["graded"]]
    assert grades[0] == 1 and all(g == 0 for g in grades[1:])
    assert f"得分：1 / {len(round_)}" in [s.value for s in at.success]
    rereads = [e for e in at.expander if e.label.startswith("重读原文")]
    assert len(rereads) >= len(round_) - 1
    html = " ".join(m.value for e in rereads for m in e.markdown)
    assert "<mark>" in html and round_[1].keys[0].page in rereads[0].label
    con = sqlite3.connect(page_env / "history.sqlite3")
    assert con.execute("SELECT COUNT(*), SUM(score) FROM results").fetchone() == (len(round_), 1.0)
