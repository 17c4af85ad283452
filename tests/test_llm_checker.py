"""LLM mode checked against realistic mistakes (issue 13, item 5): tests/data/llm_claims.jsonl.

Faithful paraphrases of the book and subtly wrong claims (a changed number, subject or name, a negation, a fact
taken from another passage), each citing one passage. Through the real Verifier with the shipped embedder, then
once end to end through the fake OpenAI-compatible server (tests/fake_llm.py) and the real Answerer.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from fake_llm import FakeLLM, claims_script

from rag.answer.llm import Verifier, binding_problems, frames, negations, numbers
from rag.config import ROOT, LLMSettings
from rag.eval.llm import KINDS, cited_chunk, load_claims, rates, run_claims
from rag.pipeline import Pipeline
from rag.types import Answer, QueryParams

# The targets, on the held-out 60 % (every rule of the check was chosen on the tune 40 %).
WRONG_FLAGGED, FAITHFUL_FLAGGED = 0.95, 0.05
# What the check reaches today on held-out (rag/eval/llm.py; see the report of the change): a floor, so
# that a change making it worse fails here even while the targets above are not met yet.
WRONG_FLOOR, FAITHFUL_CEILING = 0.86, 0.06


@pytest.fixture(scope="module")
def claims():
    return load_claims()


@pytest.fixture(scope="module")
def verdicts(pipeline, claims):
    return run_claims(pipeline, claims, Verifier(pipeline.embedder))


def test_the_claim_set_is_from_the_book(pipeline, claims) -> None:
    book = (ROOT / "corpus" / "qunzhong-gongzuo-excerpt.txt").read_text(encoding="utf-8")
    assert len({c.id for c in claims}) == len(claims)
    assert sum(c.kind == "faithful" for c in claims) >= 60 and sum(c.wrong for c in claims) >= 60
    assert {c.kind for c in claims} == set(KINDS)
    for c in claims:
        assert c.passage_evidence in book, c.id
        cited_chunk(pipeline.index.chunks, c.passage_evidence)  # raises when no chunk holds it
    tune = sum(c.split == "tune" for c in claims) / len(claims)
    assert 0.3 < tune < 0.5


def test_heldout_floor(claims, verdicts) -> None:
    r = rates([c for c in claims if c.split == "heldout"], verdicts)
    assert r["错误合计"][1] >= WRONG_FLOOR, r
    assert r["faithful"][1] <= FAITHFUL_CEILING, r
    for kind in ("number", "subject", "negation", "other_passage"):
        assert r[kind][1] >= 0.8, (kind, r)


@pytest.mark.xfail(strict=True, reason="issue 13 item 5 targets not met yet: held-out 88 % of wrong claims "
                                       "flagged, 5.2 % of faithful ones (see rag/eval/llm.py)")
def test_heldout_targets(claims, verdicts) -> None:
    r = rates([c for c in claims if c.split == "heldout"], verdicts)
    assert r["错误合计"][1] >= WRONG_FLAGGED and r["faithful"][1] <= FAITHFUL_FLAGGED, r


def test_numbers_are_normalised() -> None:
    keys = lambda s: [k for k, _, _ in numbers(s)]  # noqa: E731
    assert keys("两次") == keys("2次") and keys("九十多年") == keys("90多年")
    assert keys("二〇一五年") == keys("2015年") and keys("第一要务") != keys("第二要务")
    assert keys("一切为了群众，统一战线，一个阶段") == []  # words and articles, not counts
    assert keys("十八届三中全会") == [(False, 18.0, "届"), (False, 3.0, "中")]


def test_negation_words_that_are_not_negations() -> None:
    assert negations("不断提高，非常重要，无论如何，未来") == []
    assert len(negations("并非无时不在")) == 3


def test_a_copied_sentence_with_one_change_is_flagged(pipeline) -> None:
    chunk = next(c for c in pipeline.index.chunks if "毛泽东两次进入安源煤矿" in c.text)
    v = Verifier(pipeline.embedder)
    assert v.supported("1921年秋冬，毛泽东先后两次来到安源煤矿。", chunk)[0]
    for wrong in ("1921年秋冬，毛泽东先后三次来到安源煤矿。", "1921年秋冬，周恩来两次进入安源煤矿。",
                  "1921年秋冬，毛泽东并没有进入安源煤矿。"):
        ok, quote = v.supported(wrong, chunk)
        assert not ok and quote in chunk.text, wrong
    assert v.problems("1921年秋冬，毛泽东先后三次来到安源煤矿。", chunk)


def test_frames_and_roles_swapped_between_them() -> None:
    from rag.text.tokenizer import Tokenizer

    tok = Tokenizer()
    passage = "其根本目的是推动发展，实质是密切党群关系，核心是正确处理人民内部矛盾。"
    assert frames(tok, passage)[1] == (frozenset({"实质"}), frozenset({"党群关系"}))
    defined = "党的群众工作，是指以全体共产党员为工作者，以广大的人民群众为工作对象，以践行党的全心全意为人民服务的宗旨为原则。"
    assert (frozenset({"全体", "共产党员"}), frozenset({"工作者"})) in frames(tok, defined)
    swapped = "实质是正确处理人民内部矛盾，核心是密切党群关系。"
    assert len(binding_problems(tok, swapped, passage)) == 2
    assert binding_problems(tok, "群众工作的实质是密切党群关系，核心是正确处理人民内部矛盾。", passage) == []
    assert binding_problems(tok, "以广大人民群众为工作者，以全体共产党员为工作对象。", defined)
    assert binding_problems(tok, "党的群众工作以全体共产党员为工作者，以广大人民群众为工作对象。", defined) == []
    # one frame with another subject is a changed word (the word checks), not a swap between frames
    assert binding_problems(tok, "群众路线的实质是正确处理人民内部矛盾。", passage) == []


@pytest.fixture(scope="module")
def server():
    fake = FakeLLM()
    url = fake.start()
    yield fake, url
    fake.stop()


def test_end_to_end_a_wrong_claim_is_flagged_and_a_faithful_one_kept(pipeline, server) -> None:
    fake, url = server
    faithful = ("1920年，邓中夏等人进入北京长辛店铁路工厂开展群众工作，创办了工人夜校。",
                "1920年邓中夏等人就进入北京长辛店铁路工厂")
    wrong = ("1927年秋，共产党员沈玄庐在浙江萧山县衙前乡开展农民工作。",
             "共产党员沈玄庐在浙江萧山县衙前乡开展农民工作")
    fake.script, fake.requests[:] = claims_script([faithful, wrong]), []
    settings = replace(pipeline.settings, llm=LLMSettings(url, "fake-model", None, 5.0))
    answerer = Pipeline(settings, pipeline.index, pipeline.embedder, pipeline.retriever)
    items = list(answerer.ask_stream("党创立时期的群众工作是怎样开展的？", (), QueryParams(mode="llm")))
    a = items[-1]
    assert isinstance(a, Answer) and a.mode == "llm" and len(fake.requests) == 1
    good = next(c for c in a.citations if "邓中夏" in c.chunk.text and "长辛店" in c.quote)
    bad = next(c for c in a.citations if "沈玄庐" in c.chunk.text and c is not good)
    assert not good.flagged and bad.flagged
    assert f"[{good.n}]" in a.text and a.text.count("[") == 1  # only the faithful sentence keeps a marker
    assert "1927年秋" in a.text  # the wrong sentence stays, without a source it does not have
    assert any("核实" in n for n in a.notices)
