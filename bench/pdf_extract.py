"""Which PDF library extracts Chinese text best? Generates a book-like PDF and compares extractors.

    .venv/bin/python -m bench.pdf_extract            # libraries that are installed are measured
    .venv/bin/python -m bench.pdf_extract --pages 60

The PDF is written with reportlab (pinned for tests) in the CID font STSong-Light, with page labels (roman
front matter, body from 1) and a printed page number in the footer, from the excerpt's own paragraphs.
Quality is the similarity of each page's extracted text to the text drawn on it (spaces and line breaks
ignored), and the share of drawn lines found whole; speed is the best of three runs.
`write_pdf` is also used by tests/test_pdf.py.
"""

from __future__ import annotations

import argparse
import difflib
import importlib.util
import time
from pathlib import Path
from typing import Callable, Sequence

from rag.text.fold import compact

ROOT = Path(__file__).resolve().parent.parent
LINE_CHARS = 36
LINES_PER_PAGE = 38


def write_pdf(path: Path, pages: Sequence[Sequence[str]], labels: Sequence[tuple[int, str, int]] = (),
              footers: Sequence[str | None] = ()) -> Path:
    """One PDF page per item of `pages` (lines drawn top-down), an optional footer line on each, and page
    labels as (first page index, style "ARABIC" / "ROMAN_LOWER", start number)."""
    from reportlab.lib.pagesizes import A4
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.cidfonts import UnicodeCIDFont
    from reportlab.pdfgen import canvas

    pdfmetrics.registerFont(UnicodeCIDFont("STSong-Light"))
    c = canvas.Canvas(str(path), pagesize=A4)
    width, height = A4
    for k, lines in enumerate(pages):
        c.setFont("STSong-Light", 12)
        y = height - 72
        for line in lines:
            c.drawString(60, y, line)
            y -= 18
        footer = footers[k] if k < len(footers) else None
        if footer:
            c.setFont("STSong-Light", 10)
            c.drawCentredString(width / 2, 40, footer)
        c.showPage()
    for index, style, start in labels:
        c.addPageLabel(index, style=style, start=start)
    c.save()
    return path


def book_pages(n_pages: int) -> list[list[str]]:
    """The excerpt's body paragraphs, wrapped like a printed page (indent, 36 chars a line)."""
    text = (ROOT / "corpus" / "qunzhong-gongzuo-excerpt.txt").read_text(encoding="utf-8")
    paragraphs = [p.strip() for p in text.split("\n") if len(p.strip()) > 60]
    lines: list[str] = []
    while len(lines) < n_pages * LINES_PER_PAGE:
        for p in paragraphs:
            p = "　　" + p
            lines += [p[i:i + LINE_CHARS] for i in range(0, len(p), LINE_CHARS)]
    return [lines[i:i + LINES_PER_PAGE] for i in range(0, n_pages * LINES_PER_PAGE, LINES_PER_PAGE)]


def _pypdf(path: Path) -> list[str]:
    from pypdf import PdfReader

    return [p.extract_text() or "" for p in PdfReader(path).pages]


def _pdfminer(path: Path) -> list[str]:
    from pdfminer.high_level import extract_text

    return extract_text(str(path)).split("\f")


def _pdfplumber(path: Path) -> list[str]:
    import pdfplumber

    with pdfplumber.open(path) as pdf:
        return [p.extract_text() or "" for p in pdf.pages]


def _pypdfium2(path: Path) -> list[str]:
    import pypdfium2 as pdfium

    doc = pdfium.PdfDocument(str(path))
    return [doc[i].get_textpage().get_text_range() for i in range(len(doc))]


EXTRACTORS: dict[str, tuple[str, Callable[[Path], list[str]]]] = {
    "pypdf": ("pypdf", _pypdf),
    "pdfminer.six": ("pdfminer", _pdfminer),
    "pdfplumber": ("pdfplumber", _pdfplumber),
    "pypdfium2": ("pypdfium2", _pypdfium2),
}


def score(expected: list[list[str]], got: list[str]) -> tuple[float, float]:
    """(mean page similarity, share of drawn lines found whole), both on the compact form."""
    sims, found, total = [], 0, 0
    for k, lines in enumerate(expected):
        page = compact(got[k])[0].replace(" ", "") if k < len(got) else ""
        want = "".join(compact(ln)[0].replace(" ", "") for ln in lines)
        sims.append(difflib.SequenceMatcher(None, want, page, autojunk=False).ratio())
        for ln in lines:
            total += 1
            found += compact(ln)[0].replace(" ", "") in page
    return sum(sims) / len(sims), found / total


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pages", type=int, default=30)
    ap.add_argument("--out", type=Path, default=Path("/tmp/rag-pdf-bench.pdf"))
    args = ap.parse_args(argv)
    pages = book_pages(args.pages)
    write_pdf(args.out, pages, footers=[str(k + 1) for k in range(len(pages))])
    print(f"{args.pages} pages, {sum(len(''.join(p)) for p in pages)} chars, {args.out.stat().st_size} bytes")
    print(f"{'library':<14}{'similarity':>11}{'lines whole':>13}{'ms/page':>9}")
    for name, (module, fn) in EXTRACTORS.items():
        if importlib.util.find_spec(module) is None:
            print(f"{name:<14}  not installed")
            continue
        runs = []
        for _ in range(3):
            t0 = time.perf_counter()
            got = fn(args.out)
            runs.append(time.perf_counter() - t0)
        sim, whole = score(pages, got)
        print(f"{name:<14}{sim:>11.4f}{whole:>13.3f}{1000 * min(runs) / len(pages):>9.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
