"""The whole path in a real browser: `python -m rag serve` (what `make run` starts) on a free local port,
driven by Debian's chromium.

Playwright's Python package drives /usr/bin/chromium (`playwright install` cannot download anything here).
Set RAG_UPDATE_SCREENSHOT=1 to refresh docs/screenshot.png, the README's picture of the page, and
docs/screenshot-practice.png and docs/screenshot-teacher.png, the pictures of the 练习 and 教师视图 pages.
The history store and the feedback log are temp files: nothing is written under embeddings/.
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
def history_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The server's history store (RAG_HISTORY_PATH): a temp file, never embeddings/history.sqlite3."""
    return tmp_path_factory.mktemp("history") / "history.sqlite3"


@pytest.fixture(scope="module")
def server(built, history_path: Path, tmp_path_factory: pytest.TempPathFactory):
    """The page as users get it, on the session's real index; stopped (its own process group) afterwards."""
    port = free_port()
    log = tmp_path_factory.mktemp("browser") / "streamlit.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
    env.update(RAG_INDEX_DIR=str(built.index_dir), RAG_FEEDBACK_PATH=str(log.with_name("feedback.jsonl")),
               RAG_HISTORY_PATH=str(history_path), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
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


def _save_screenshot(page, name: str) -> None:
    """docs/<name> with RAG_UPDATE_SCREENSHOT=1 (write-and-rename), else just check a picture is taken.

    Streamlit scrolls inside its main block, so the viewport is first made as tall as the page's content."""
    page.evaluate("() => document.querySelector('[data-testid=\"stMain\"]')?.scrollTo(0, 0)")
    height = page.evaluate("() => document.querySelector('[data-testid=\"stMain\"]')?.scrollHeight || 0")
    if height > page.viewport_size["height"]:
        page.set_viewport_size({"width": page.viewport_size["width"], "height": min(int(height), 6000)})
        page.wait_for_timeout(500)
    if os.environ.get("RAG_UPDATE_SCREENSHOT"):
        shot = ROOT / "docs" / name
        tmp = shot.with_suffix(".png.tmp")
        page.screenshot(path=str(tmp), full_page=True, type="png")
        os.replace(tmp, shot)
    else:
        assert len(page.screenshot(full_page=True)) > 10_000


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


PRACTICE_SEED = 3
PRACTICE_ITEMS = 3


def _wrong_answer(item) -> str:
    """An answer the grader marks wrong, whatever the kind of the item."""
    from rag.study.quiz import FALSE, TRUE

    if item.kind == "judge":
        return FALSE if item.answer == TRUE else TRUE
    if item.kind == "choice":
        return next(o for o in item.options if o != item.answer)
    return "不知道"


def test_practice_page_grades_and_shows_passage_to_reread(server: str, pipeline, browser) -> None:
    from playwright.sync_api import expect

    from rag.study.grade import grader_for
    from rag.study.quiz import bank, draw

    page = browser.new_page(viewport={"width": 1280, "height": 1100}, locale="zh-CN")
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto(server + "练习")  # Streamlit's URL for pages/1_练习.py: the page name, number prefix dropped
    expect(page.get_by_role("heading", name="练习")).to_be_visible(timeout=120_000)
    start = page.get_by_test_id("stButton").filter(has_text="出题")
    expect(start).to_be_visible(timeout=120_000)

    # A known round: the seed set on the page, the same round drawn here from the same index.
    count = page.get_by_label("题数")  # a short round keeps the picture readable
    count.fill(str(PRACTICE_ITEMS))
    count.press("Enter")
    expect(count).to_have_value(str(PRACTICE_ITEMS))
    items = draw(bank(pipeline.index.chunks, pipeline.index.lexicon), PRACTICE_ITEMS, PRACTICE_SEED)
    first = items[0]
    wrong = _wrong_answer(first)
    assert grader_for(pipeline.index).grade(first, wrong).score < 1
    page.wait_for_timeout(500)
    seed = page.get_by_label("种子（同一种子出同一组题）")
    seed.fill(str(PRACTICE_SEED))
    seed.press("Enter")
    expect(seed).to_have_value(str(PRACTICE_SEED))
    page.wait_for_timeout(500)
    start.locator("button").click()
    question = page.get_by_test_id("stMarkdown").filter(has_text="1.【").first
    expect(question).to_contain_text(first.prompt[:12], timeout=30_000)

    if first.kind in ("judge", "choice"):
        page.get_by_test_id("stRadio").first.get_by_text(wrong, exact=True).click()
    elif first.kind == "fill":
        box = page.get_by_placeholder("填入空格处的词").first
        box.fill(wrong)
        box.press("Enter")
    else:
        box = page.get_by_placeholder("分点作答").first
        box.fill(wrong)
        box.press("Control+Enter")
    page.wait_for_timeout(1000)
    page.get_by_test_id("stButton").filter(has_text="交卷评分").locator("button").click()

    expect(page.get_by_test_id("stAlert").filter(has_text="得分：")).to_contain_text(
        f"得分：0 / {len(items)}", timeout=60_000)
    expect(page.get_by_text("✗ 不正确").first).to_be_visible()
    reread = page.get_by_test_id("stExpander").first
    expect(reread).to_contain_text("重读原文")
    expect(reread).to_contain_text(first.keys[0].page)
    reread.locator("summary").click()
    expect(reread.locator(".rag-passage mark").first).to_be_visible()
    page.mouse.move(0, 0)
    page.wait_for_timeout(500)
    _save_screenshot(page, "screenshot-practice.png")
    assert dialogs == []
    page.close()


def test_teacher_page_shows_counts_table_and_chart(server: str, pipeline, history_path: Path,
                                                     browser) -> None:
    from playwright.sync_api import expect

    from rag.study.history import History, HistorySettings, new_token
    from rag.study.quiz import bank, draw

    # Practice results of two sessions, written straight to the server's temp history store (this test does
    # not depend on the practice test having run first).
    store = History(HistorySettings(history_path))
    items = draw(bank(pipeline.index.chunks, pipeline.index.lexicon), 12, 7)
    for token in (new_token(), new_token()):
        for i, it in enumerate(items):
            store.record(token, it, (0.0, 0.5, 1.0)[i % 3])

    page = browser.new_page(viewport={"width": 1600, "height": 1100}, locale="zh-CN")
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto(server + "教师视图")
    expect(page.get_by_role("heading", name="教师视图")).to_be_visible(timeout=120_000)
    expect(page.get_by_test_id("stDataFrame")).to_be_visible(timeout=120_000)
    chart = page.get_by_test_id("stVegaLiteChart")
    expect(chart).to_be_visible()
    expect(chart.locator("canvas, svg").first).to_be_visible(timeout=30_000)
    expect(page.get_by_test_id("stMetric").first).to_be_visible()
    expect(page.get_by_test_id("stDownloadButton")).to_contain_text("导出 CSV")
    page.get_by_test_id("stRadio").get_by_text("页", exact=True).click()  # by page: one bar group a page
    expect(chart.locator("canvas, svg").first).to_be_visible(timeout=30_000)
    expect(page.get_by_test_id("stDataFrame")).to_be_visible()
    page.wait_for_timeout(1000)  # the chart's and the table's canvases drawn
    _save_screenshot(page, "screenshot-teacher.png")
    assert dialogs == []
    page.close()
