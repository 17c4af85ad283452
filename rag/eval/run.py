"""The metric groups of `python -m rag eval`: each a function `(pipeline, questions) -> GroupReport`."""

from __future__ import annotations

from typing import Callable, Sequence

from rag.errors import InputError
from rag.eval.answers import answers
from rag.eval.llm import llm
from rag.eval.questions import GroupReport, Question
from rag.eval.quiz import quiz
from rag.eval.retrieval import retrieval

GROUPS: dict[str, Callable[..., GroupReport]] = {"retrieval": retrieval, "answers": answers, "quiz": quiz,
                                                 "llm": llm}


def evaluate(pipeline, questions: Sequence[Question],
             groups: Sequence[str] = ("retrieval",)) -> list[GroupReport]:
    unknown = [g for g in groups if g not in GROUPS]
    if unknown:
        raise InputError(f"未知的评测组：{'、'.join(unknown)}。可选：{'、'.join(GROUPS)}。")
    return [GROUPS[g](pipeline, questions) for g in groups]
