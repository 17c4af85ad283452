"""The chat page as users start it: `make run` (`python -m rag serve`) → first answer, and its memory after
100 questions.

    .venv/bin/python -m bench.perf_app [--questions 100] [--json]

Starts the server in a fresh process on a free local port (the default index, built first if missing or
stale), opens the page in headless chromium (Playwright, /usr/bin/chromium), asks the first question of the
set and waits for the answer's feedback widget (rendered last). Cold start = process start → that answer on
screen. `rag serve` starts loading the model and index with the server; plain `streamlit run app.py` (also
measured, first answer only) loads them when the first session arrives. Then the rest of the questions in the
same server (a fresh page every 10, so one conversation does not grow without end) and the server's RSS.
Also: `python -m rag ask` in a fresh process, process start → answer printed (the CLI cold start), and the
floor of this machine in the same run: a bare Streamlit page (a title, the chat input, an echoed answer with the
same feedback widget; no rag import) started and asked the same way (`bare_first_answer_s`, and the ratio of
`make run`'s first answer to it).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from bench.common import ROOT, load, questions, rss_mb
from rag.commands.serve import free_port, stop, wait_healthy

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]
# The floor: the least page a user could be asked on (a title, the chat input, an answer with the feedback widget).
BARE_PAGE = textwrap.dedent("""\
    import streamlit as st

    st.title("教材问答")
    turns = st.session_state.setdefault("turns", [])
    for i, (question, answer) in enumerate(turns):
        with st.chat_message("user"):
            st.write(question)
        with st.chat_message("assistant"):
            st.write(answer)
            st.feedback("thumbs", key=f"feedback-{i}")
    if question := st.chat_input("输入问题"):
        turns.append((question, "答：" + question))
        st.rerun()
""")


def _ask(page, question: str, turns: int) -> None:
    from playwright.sync_api import expect

    box = page.get_by_test_id("stChatInputTextArea")
    box.fill(question)
    box.press("Enter")
    messages = page.get_by_test_id("stChatMessage")
    expect(messages).to_have_count(2 * turns, timeout=180_000)
    expect(messages.last.get_by_test_id("stFeedback")).to_be_visible(timeout=180_000)


def server_figures(n_questions: int, launcher: str = "serve") -> dict:
    from playwright.sync_api import sync_playwright

    qs = [q for q, h in questions() if not h]
    qs = (qs * (n_questions // len(qs) + 1))[:n_questions]
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")} | {"HF_HUB_OFFLINE": "1"}
    scratch = tempfile.TemporaryDirectory()
    script = Path(scratch.name, "bare.py") if launcher == "bare" else Path("app.py")
    if launcher == "bare":
        script.write_text(BARE_PAGE, encoding="utf-8")
    cmd = ([sys.executable, "-m", "rag", "serve", "--port", str(port)] if launcher == "serve" else
           [sys.executable, "-m", "streamlit", "run", str(script), "--server.headless", "true", "--server.port",
            str(port), "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false"])
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)  # started before the clock
        start = time.monotonic()
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
        try:
            if not wait_healthy(f"http://127.0.0.1:{port}/_stcore/health", 300, proc):
                raise TimeoutError("streamlit not healthy after 300 s")
            healthy = time.monotonic() - start
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{port}/")
            _ask(page, qs[0], 1)
            first = time.monotonic() - start
            rss_first = rss_mb(proc.pid)
            t = time.monotonic()
            for i, q in enumerate(qs[1:], start=1):
                if i % 10 == 0:
                    page.close()
                    page = browser.new_page()
                    page.goto(f"http://127.0.0.1:{port}/")
                _ask(page, q, i % 10 + 1)
            per_question = (time.monotonic() - t) / max(1, len(qs) - 1)
            rss_after = rss_mb(proc.pid)
        finally:
            stop(proc)
            browser.close()
            scratch.cleanup()
    return {"healthy_s": healthy, "first_answer_s": first, "rss_first_mb": rss_first,
            "questions": len(qs), "rss_after_mb": rss_after, "page_s_per_question": per_question}


def cli_cold_start() -> dict:
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "rag", "ask", questions()[0][0]], cwd=ROOT,
                          capture_output=True, text=True, timeout=300,
                          env=os.environ | {"HF_HUB_OFFLINE": "1"})
    return {"cli_ask_s": time.monotonic() - start, "cli_ok": done.returncode == 0}


def ensure_index() -> float:
    """The default index for the current model/backend (a no-op-ish rebuild when up to date)."""
    start = time.monotonic()
    subprocess.run([sys.executable, "-m", "rag", "build"], cwd=ROOT, check=True, capture_output=True,
                   timeout=900)
    return time.monotonic() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=100)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    build_s = ensure_index()
    bare = server_figures(1, launcher="bare")
    plain = server_figures(1, launcher="streamlit")
    result = {"build_s": build_s, **cli_cold_start(), **server_figures(args.questions),
              "streamlit_run_first_answer_s": plain["first_answer_s"],
              "bare_first_answer_s": bare["first_answer_s"], "load": load()}
    result["first_answer_over_bare"] = result["first_answer_s"] / bare["first_answer_s"]
    print(json.dumps(result) if args.json else json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
