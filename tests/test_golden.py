"""The differential test of the restructuring (issue 12): `rag search|ask --batch tests/data/questions.jsonl
--json` print what tests/data/golden/ holds, the output taken before it started. A change of an answer is made
on purpose: refresh the files in a commit that says why (RAG_UPDATE_GOLDEN=1 rewrites them)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "tests" / "data" / "golden"
QUESTIONS = ROOT / "tests" / "data" / "questions.jsonl"


@pytest.mark.parametrize("command", ["search", "ask"])
def test_batch_json_output_equals_the_stored_copy(built, command: str) -> None:
    env = {**os.environ, "RAG_INDEX_DIR": str(built.index_dir), "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-m", "rag", command, "--batch", str(QUESTIONS), "--json"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=True).stdout
    path = GOLDEN / f"{command}.jsonl"
    if os.environ.get("RAG_UPDATE_GOLDEN") == "1":
        path.write_text(out, encoding="utf-8")
    got = [json.loads(line) for line in out.splitlines()]
    want = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g == w, (w.get("query") or w.get("question"))
