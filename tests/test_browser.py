"""The whole path in a real browser: `python -m rag serve` (what `make run` starts) on a free local port,
driven by Debian's chromium.

Playwright's Python package drives /usr/bin/chromium (`playwright install` cannot download anything here).
Set RAG_UPDATE_SCREENSHOT=1 to refresh docs/screenshot.png, the README's picture of the page.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from rag.commands.serve import free_port, stop, wait_healthy

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]
PAGE_LABEL = re.compile(r"(约)?第\d+(–\d+)?页")
XSS = "<script>alert(1)</script> 和 <img src=x onerror=alert(1)> 是什么意思？"


@pytest.fixture(scope="module")
def server(built, tmp_path_factory: pytest.TempPathFactory):
    """The page as users get it, on the session's real index; stopped (its own process group) afterwards."""
    port = free_port()
    log = tmp_path_factory.mktemp("browser") / "streamlit.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
    env.update(RAG_INDEX_DIR=str(built.index_dir), RAG_FEEDBACK_PATH=str(log.with_name("feedback.jsonl")),
               HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    cmd = [sys.executable, "-m", "rag", "serve", "--port", str(port)]  # what `make run` starts
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        if not wait_healthy(f"http://127.0.0.1:{port}/_stcore/health", 180, proc):
            raise TimeoutError("streamlit not healthy after 180 s")
        yield f"http://127.0.0.1:{port}/"
    finally:
        stop(proc)
        if proc.returncode not in (0, -15):
            print(log.read_text("utf-8", errors="replace")[-3000:])


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.fail("缺少 /usr/bin/chromium：请运行 scripts/system-deps.sh（make system-deps）")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield b
        b.close()


def _open(browser, url: str, height: int = 1100):
    page = browser.new_page(viewport={"width": 1280, "height": height}, locale="zh-CN")
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto(url)
    page.get_by_test_id("stChatInputTextArea").wait_for(timeout=120_000)
    return page, dialogs


def _ask(page, question: str) -> None:
    box = page.get_by_test_id("stChatInputTextArea")
    box.fill(question)
    box.press("Enter")


def _last_answer(page):
    """The newest assistant message, once its feedback widget (rendered last) is there."""
    from playwright.sync_api import expect

    messages = page.get_by_test_id("stChatMessage")
    expect(messages).to_have_count(2, timeout=120_000)
    answer = messages.last
    expect(answer.get_by_test_id("stFeedback")).to_be_visible(timeout=120_000)
    return answer


def test_question_shows_answer_with_cited_page(server: str, browser) -> None:
    from playwright.sync_api import expect

    page, dialogs = _open(browser, server, height=1500)
    _ask(page, "群众工作的核心是什么？")
    answer = _last_answer(page)
    expect(answer).to_contain_text("[1]")
    card = answer.locator(".rag-passage").first
    expect(card.locator("mark")).to_have_count(1)
    expect(answer).to_contain_text(PAGE_LABEL)
    expect(answer).to_contain_text("第一章")
    shot = ROOT / "docs" / "screenshot.png" if os.environ.get("RAG_UPDATE_SCREENSHOT") else None
    page.get_by_test_id("stChatMessage").first.scroll_into_view_if_needed()
    page.wait_for_timeout(300)
    if shot is not None:
        tmp = shot.with_suffix(".png.tmp")
        page.screenshot(path=str(tmp), full_page=True, type="png")
        os.replace(tmp, shot)  # write-and-rename: never a half-written picture in docs/
    else:
        assert len(page.screenshot(full_page=True)) > 10_000
    assert dialogs == []
    page.close()


def test_markup_in_a_question_stays_text(server: str, browser) -> None:
    from playwright.sync_api import expect

    page, dialogs = _open(browser, server)
    _ask(page, XSS)
    _last_answer(page)
    question = page.get_by_test_id("stChatMessage").first
    expect(question).to_contain_text("<script>alert(1)</script>")
    expect(question).to_contain_text("<img src=x onerror=alert(1)>")
    injected = page.evaluate(
        """() => ({
            imgs: document.querySelectorAll('img[src="x"], img[onerror]').length,
            scripts: [...document.querySelectorAll('script')]
                .filter(s => s.textContent.includes('alert(1)')).length,
        })"""
    )
    page.wait_for_timeout(500)  # an onerror handler would have fired by now
    assert injected == {"imgs": 0, "scripts": 0}
    assert dialogs == []
    page.close()
