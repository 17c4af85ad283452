"""Which PDF library extracts Chinese text best? Generates a book-like PDF and compares extractors.

    .venv/bin/python -m bench.pdf_extract            # libraries that are installed are measured
    .venv/bin/python -m bench.pdf_extract --pages 60

The PDF is written with reportlab (pinned for tests) in the CID font STSong-Light, with page labels (roman
front matter, body from 1) and a printed page number in the footer, from the excerpt's own paragraphs.
Quality is the similarity of each page's extracted text to the text drawn on it (spaces and line breaks
ignored), and the share of drawn lines found whole; speed is the best of three runs.
`write_pdf` is also used by tests/test_pdf.py.

A second table measures the third-party fixtures of tests/data/pdf/ (written by LibreOffice, see
scripts/make_pdf_fixtures.py; the text drawn is in its source.json): similarity with whitespace ignored, share
of extracted lines that are whole pieces of the source, spurious spaces between CJK characters, two-column
order, CJK punctuation kept, running header/footer removed by rag.ingest.pages, labels right, ms/page.
"""

from __future__ import annotations

import argparse
import difflib
import importlib.util
import itertools
import json
import re
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


def _pymupdf(path: Path) -> list[str]:
    import pymupdf

    with pymupdf.open(path) as doc:
        return [page.get_text() for page in doc]


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
    "pymupdf": ("pymupdf", _pymupdf),
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


def _labels(name: str, path: Path) -> list[str] | None:
    """The PDF's own /PageLabels as the library exposes them (None: no labels, or no way to read them)."""
    if name == "pypdf":
        from pypdf import PdfReader

        reader = PdfReader(path)
        return list(reader.page_labels) if "/PageLabels" in reader.trailer["/Root"] else None
    if name == "pymupdf":
        import pymupdf

        with pymupdf.open(path) as doc:
            got = [page.get_label() for page in doc]
        return got if any(got) else None
    if name in ("pdfplumber", "pdfminer.six"):
        import pdfplumber

        with pdfplumber.open(path) as pdf:
            try:
                return list(itertools.islice(pdf.doc.get_page_labels(), len(pdf.pages)))  # endless
            except Exception:  # pdfminer raises PDFNoPageLabels
                return None
    import pypdfium2 as pdfium

    doc = pdfium.PdfDocument(str(path))
    got = [doc.get_page_label(i) for i in range(len(doc))]
    return got if any(got) else None


_CJK_CHAR = r"[\u3400-\u9fff，。、：；！？“”‘’《》（）—…]"
_CJK_SPACE = re.compile(rf"(?<={_CJK_CHAR})[ \u3000\u00a0]+(?={_CJK_CHAR})")
PUNCT = "，。“”《》、：；！？（）—…"
FIXTURES = ROOT / "tests" / "data" / "pdf"


def _nospace(s: str) -> str:
    return re.sub(r"\s+", "", s)


def layout_score(name: str, pages: list[str], want: dict, title: str) -> dict[str, object]:
    """Figures for one fixture, measured on the pages as rag.ingest.pages leaves them (running lines out)."""
    from rag.ingest.pages import RawPage, strip_running_lines

    raw = [RawPage(t.replace("\r\n", "\n"), str(k + 1), "index", replaceable=True)
           for k, t in enumerate(pages)]
    kept = strip_running_lines(raw)
    text = "\n".join(p.text for p in kept)
    source = "\n".join(want["paragraphs"])
    flat, src = _nospace(text), _nospace(source)
    lines = [ln for ln in text.split("\n") if ln.strip()]
    spaced = source.replace("\u3000", " ")  # an ideographic space read as a plain one is not spurious
    spurious = sum(1 for m in _CJK_SPACE.finditer(text.replace("\u3000", " "))
                   if text[m.start() - 1] + " " + text[m.end()] not in spaced)
    order = "—"
    if want.get("columns"):
        paras = [_nospace(t) for col in want["columns"] for t in col]
        at = [flat.find(t) for t in paras]
        order = "yes" if all(a >= 0 for a in at) and at == sorted(at) else "no"
    kept_punct = sum(min(flat.count(c), src.count(c)) for c in PUNCT) / sum(src.count(c) for c in PUNCT)
    return {
        "similarity": difflib.SequenceMatcher(None, src, flat, autojunk=False).ratio(),
        "lines whole": sum(_nospace(ln) in src for ln in lines) / len(lines),
        "CJK spaces": spurious,
        "2-col order": order,
        "punct kept": kept_punct,
        "header out": "yes" if title not in text and not re.search(r"^\s*\d+\s*$", text, re.M) else "no",
        "labels": "yes" if [p.label for p in kept] == want["labels"] else "no",
    }


def third_party_table(fixtures: Path = FIXTURES) -> None:
    """The table of the module docstring's second paragraph, one row per library and fixture."""
    source = json.loads((fixtures / "source.json").read_text(encoding="utf-8"))
    cols = ["similarity", "lines whole", "CJK spaces", "2-col order", "punct kept", "header out", "labels"]
    print(f"\n{'library':<12}{'fixture':<13}" + "".join(f"{c:>12}" for c in cols) + f"{'ms/page':>9}")
    for name, (module, fn) in EXTRACTORS.items():
        if name == "pdfminer.six" or importlib.util.find_spec(module) is None:
            continue
        for fixture in (k for k in source if k.endswith(".pdf")):
            path, runs = fixtures / fixture, []
            for _ in range(3):
                t0 = time.perf_counter()
                got = fn(path)
                runs.append(time.perf_counter() - t0)
            row = layout_score(name, got, source[fixture], source["title"])
            cells = "".join(f"{v:>12.4f}" if isinstance(v, float) else f"{v!s:>12}" for v in row.values())
            print(f"{name:<12}{fixture:<13}{cells}{1000 * min(runs) / len(got):>9.2f}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pages", type=int, default=30)
    ap.add_argument("--out", type=Path, default=Path("/tmp/rag-pdf-bench.pdf"))
    ap.add_argument("--fixtures", type=Path, default=FIXTURES, help="third-party PDFs + source.json")
    ap.add_argument("--no-fixtures", action="store_true", help="only the reportlab table")
    args = ap.parse_args(argv)
    pages = book_pages(args.pages)
    footers = ["i", "ii"] + [str(k - 1) for k in range(2, len(pages))]
    write_pdf(args.out, pages, labels=[(0, "ROMAN_LOWER", 1), (2, "ARABIC", 1)], footers=footers)
    print(f"{args.pages} pages, {sum(len(''.join(p)) for p in pages)} chars, {args.out.stat().st_size} bytes")
    print(f"{'library':<14}{'similarity':>11}{'lines whole':>13}{'ms/page':>9}{'/PageLabels':>13}")
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
        labels = "yes" if _labels(name, args.out) == footers else "no"
        print(f"{name:<14}{sim:>11.4f}{whole:>13.3f}{1000 * min(runs) / len(pages):>9.2f}{labels:>13}")
    if not args.no_fixtures:
        third_party_table(args.fixtures)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
