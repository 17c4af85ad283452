"""Question preparation and follow-up expansion (no model needed)."""

from __future__ import annotations

import pytest

from rag.errors import InputError
from rag.retrieve.query import clean, expand_followup, is_followup, prepare


def test_clean_drops_escapes_invisible_characters_and_collapses_whitespace() -> None:
    raw = "\x1b[31m什么是\u200b党的\x00群众\u202e工作\x1b[0m？\t\n  \u3000 请回答\ufeff"
    assert clean(raw) == "什么是党的群众工作？ 请回答"


@pytest.mark.parametrize("raw", ["", "   ", "\u200b\u200d\x00\n\t", "\x1b[2J\x1b[H"])
def test_empty_question_is_refused_with_a_chinese_hint(raw: str) -> None:
    with pytest.raises(InputError, match="请输入问题"):
        prepare(raw, 500)


def test_traditional_is_converted_and_the_user_told() -> None:
    q = prepare("什麼是黨的群眾工作？", 500)
    assert q.text == "什么是党的群众工作？"
    assert q.converted and any("繁体" in n for n in q.notices)
    assert not prepare("什么是党的群众工作？", 500).notices


def test_long_input_is_shortened_with_a_notice() -> None:
    q = prepare("群众工作" * 300, 500)
    assert len(q.text) == 500 and q.truncated
    assert any("500" in n for n in q.notices)


@pytest.mark.parametrize(
    ("question", "history", "expected"),
    [
        ("它的出发点和落脚点是什么？", ["什么是党的群众工作？"], "党的群众工作的出发点和落脚点是什么？"),
        ("它的含义是什么？", ["什么是“大群工”？"], "大群工的含义是什么？"),
        ("这一章从第几页开始？", ["第六章讲什么？"], "第六章从第几页开始？"),
        ("那它的实质呢？", ["群众工作的核心是什么？"], "群众工作的实质呢？"),
    ],
)
def test_pronoun_led_followup_takes_the_topic_of_the_previous_question(question, history, expected) -> None:
    assert expand_followup(question, history) == expected


def test_ordinal_followup_in_a_chain_refers_to_the_last_standalone_question() -> None:
    history = ["党的群众工作的历史地位体现在哪几个方面？", "第一个方面讲的是什么？"]
    expanded = expand_followup("那第三个方面呢？", history)
    assert expanded.startswith("党的群众工作的历史地位") and "第三个方面" in expanded
    assert "第一个" not in expanded


def test_standalone_questions_and_missing_history_are_left_alone() -> None:
    assert expand_followup("大群工是什么？", ["什么是党的群众工作？"]) == "大群工是什么？"
    assert expand_followup("它的含义是什么？", []) == "它的含义是什么？"
    assert not is_followup("共产党和其他政党有什么不同？")
    assert is_followup("为什么？") and is_followup("第二点呢？") and is_followup("其他方面呢？")


def test_a_bare_why_of_the_previous_turns_words_is_a_follow_up() -> None:
    for q in ("为什么这么说？", "为什么这么叫？", "此话怎讲？"):
        assert is_followup(q), q
        assert expand_followup(q, ["什么是大群工？"]).startswith("大群工"), q


def test_a_part_that_asks_only_what_the_book_says_takes_the_topic_before_it() -> None:
    """「……新形势是怎样的？书里如何分析？」: 书里/书中 name the book, not a topic, so the second part has none
    of its own (分析 is all it says) and is about the first part's topic."""
    from rag.retrieve.query import expand_followup, is_followup

    assert is_followup("书里如何分析？") and is_followup("书中怎么说？")
    assert expand_followup("书里如何分析？", ["当前群众工作所处的新形势是怎样的？"]).startswith("当前群众工作所处的新形势")
    assert not is_followup("书中提到的“一化三改”是什么？")


def test_that_other_thing_is_the_same_question_about_it() -> None:
    """「那农民运动呢？」 after 「党创立时期，工人运动是怎么组织起来的？」 asks the same about 农民运动: the word of
    the same kind (运动) is replaced, not the topic glued in front; a bare attribute (「那核心呢？」) is left to the
    attribute rule."""
    from rag.retrieve.query import expand_followup

    asked = ["党创立时期，工人运动是怎么组织起来的？"]
    assert expand_followup("那农民运动呢？", asked) == "党创立时期，农民运动是怎么组织起来的？"
    assert "实质" in expand_followup("那核心呢？", ["群众工作的实质是什么？"])
    # an item of a list is no other thing of the same kind: 「第三个方面」 is not put in place of 「哪几个方面」
    item = expand_followup("那第三个方面呢？", ["群众工作的历史地位有哪几个方面？"])
    assert "有第三个方面？" not in item and item.endswith("第三个方面呢？"), item
