"""PDF files → raw pages with the label a reader would cite (page labels, else printed number, else index).

Library choice, measured (`python -m bench.pdf_extract --pages 30`: a 30-page Chinese PDF written with
reportlab in STSong-Light, page number in the footer; similarity of the extracted page text to the drawn
text with spaces ignored / share of drawn lines found whole / ms per page, best of 3):

    pypdf 7.1.1          0.9987   1.000   21 ms
    pdfminer.six 2026    0.9964   1.000   59 ms
    pdfplumber 0.11.10   0.9987   1.000  108 ms
    pypdfium2 5.15.2     0.9970   1.000   47 ms

All four keep every line whole; pypdf is as accurate as the best, the fastest, pure Python (no native
wheel to install) and exposes the PDF's own page labels (`PdfReader.page_labels`), so it is the one used.

Re-measured on PDFs made by LibreOffice (issue 14, tests/data/pdf/, figures in bench/RESULTS.md): pypdf,
pymupdf (AGPL) and pypdfium2 tie — text exact, no spaces inside CJK runs, punctuation kept, two columns in
order, running header/footer removable; pdfplumber interleaves the columns. pypdf stays: permissive and
pure Python, fast enough (~7 ms/page). A page without a text layer but with an image is a scan: it is read
as empty and named by `scanned_notices` (no OCR), so the rest of the book is still indexed.
"""

from __future__ import annotations

import io
import logging

from pypdf import PageObject, PdfReader
from pypdf.errors import PyPdfError

from rag.errors import CorpusError
from rag.ingest.pages import RawPage, strip_running_lines


def read_pdf_pages(data: bytes, name: str) -> list[RawPage]:
    """One RawPage per PDF page. Labels come from /PageLabels when the PDF has them ("label"); otherwise the
    page index is used ("index") and rag.ingest.pages replaces it with a printed footer/header number if found."""
    logging.getLogger("pypdf").setLevel(logging.ERROR)
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise CorpusError(f"PDF 文件 {name} 已加密，无法读取。请提供未加密的版本。")
        labels = reader.page_labels if "/PageLabels" in reader.trailer["/Root"] else None
        texts = [page.extract_text() or "" for page in reader.pages]
        scanned = [not t.strip() and _has_image(page) for t, page in zip(texts, reader.pages)]
    except CorpusError:
        raise
    except (PyPdfError, ValueError, KeyError, TypeError, OSError) as exc:
        raise CorpusError(f"无法解析 PDF 文件 {name}：{exc}。请确认文件完整，或另存为新的 PDF。") from exc
    if labels:
        return [RawPage(t, labels[i], "label", scanned=s) for i, (t, s) in enumerate(zip(texts, scanned))]
    return [RawPage(t, str(i + 1), "index", replaceable=True, scanned=s)
            for i, (t, s) in enumerate(zip(texts, scanned))]


def pdf_title(data: bytes) -> str | None:
    """The title in the PDF's document information (None when it has none or it cannot be read)."""
    try:
        title = PdfReader(io.BytesIO(data)).metadata.title
    except (PyPdfError, ValueError, KeyError, TypeError, OSError, AttributeError):
        return None
    return title.strip() if isinstance(title, str) and title.strip() else None


def _has_image(page: PageObject) -> bool:
    """A page without text that shows an image is a scan (a blank verso page has no image)."""
    try:
        return len(page.images) > 0
    except (PyPdfError, ValueError, KeyError, TypeError, OSError):
        return False


def scanned_notices(pages: list[RawPage]) -> list[str]:
    """One notice per page without a text layer, naming it by the page a reader would look up (printed or
    counted label, after rag.ingest.pages has read the printed numbers) and by its place in the PDF."""
    out = []
    for k, page in enumerate(strip_running_lines(pages)):
        if page.scanned:
            where = f"第{page.label}页" + ("" if page.label == str(k + 1) else f"（PDF 第{k + 1}页）")
            out.append(f"{where}没有文字层（扫描页），未能提取")
    return out
