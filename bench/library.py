"""A library of books (issue 14): search speed with 20 books, and the shipped book's figures with others.

`python -m bench.library [--copies 20] [--paragraphs 256] [--write]`: each copy is a folder of its own under a
scratch corpus (one book each, its 书名 changed), built into a scratch index with the shipped model; then the
shipped book with P CMRC 2018 trial paragraphs, each a book of its own (distinct books; 0 skips it); the
one-book index of the shipped corpus is built and searched in the same run as the baseline. Prints build
seconds, chunks, and search p50/p95 over the project's question set; --write puts them into bench/RESULTS.md.

`python -m bench.library --eval [--write]`: the shipped book's own figures (rag.eval, groups retrieval and
answers, on tests/data/questions.jsonl and tests/data/book_questions.jsonl; aggregate figures only) from its
one-book index and from library indexes, no book picked (scope 全部): + the 章/节/条 rules text (another
topic), + it and the LibreOffice PDF on the same topic (tests/data/pdf/book.pdf), then + a Markdown text on grassroots 群众工作
in the shipped book's words (tests/data/library/); and the four-book library with the book picked. The
differences are what other books do to the shipped book's figures.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from bench.common import ROOT, load, machine, pct, questions, stamp, write_section

SOURCE = ROOT / "corpus" / "qunzhong-gongzuo-excerpt.txt"
TITLE = re.compile(r"^(做好新形势下的群众工作)(\s*/)", re.M)
DATA = ROOT / "tests" / "data"
SETS = {"questions.jsonl": DATA / "questions.jsonl", "book_questions.jsonl": DATA / "book_questions.jsonl"}
# `python -m bench.library --eval` asks the eval groups for these figures of their 全部 rows
FIGURES = {"retrieval": ("R@1", "R@5", "MRR@10"), "answers": ("正确", "引文", "出处")}


def write_library(folder: Path, copies: int) -> None:
    text = SOURCE.read_text(encoding="utf-8")
    for i in range(1, copies + 1):
        book = folder / f"book-{i:02d}"
        book.mkdir(parents=True)
        (book / "excerpt.txt").write_text(TITLE.sub(rf"\1（第{i}册）\2", text, count=1), encoding="utf-8")


OTHER_BOOKS = {"rules": (DATA / "library" / "rules.md", None),
               "duben": (DATA / "pdf" / "book.pdf", "群众工作学习读本"),
               "jiceng": (DATA / "library" / "jiceng.md", None)}


def write_other_books(folder: Path, books: tuple[str, ...] = tuple(OTHER_BOOKS)) -> Path:
    """Books besides the shipped one, a folder each: rules = 社区议事规则 (Markdown, 章/节/条, no
    pages), duben = 群众工作学习读本 (a PDF with printed page numbers, on the shipped book's topic,
    titled by its book.json), jiceng = 基层群众工作方法十讲 (Markdown, 章/节, the shipped book's words)."""
    for book in books:
        source, title = OTHER_BOOKS[book]
        (folder / book).mkdir(parents=True, exist_ok=True)
        shutil.copy(source, folder / book / source.name)
        if title:
            (folder / book / "book.json").write_text(json.dumps({"title": title}, ensure_ascii=False),
                                                     encoding="utf-8")
    return folder


def measure(settings, embedder, label: str) -> dict:
    from rag.build import build
    from rag.pipeline import Pipeline
    from rag.types import QueryParams

    start = time.perf_counter()
    report = build(settings, embedder=embedder, force=True)
    build_s = time.perf_counter() - start
    pipeline = Pipeline.load(settings, embedder=embedder)
    qs = questions()
    for q, h in qs[:5]:
        pipeline.search(q, h)
    times = []
    for _ in range(2):
        for q, h in qs:
            t = time.perf_counter()
            pipeline.search(q, h, QueryParams(k=5))
            times.append((time.perf_counter() - t) * 1000)
    p50, p95 = pct(times)
    return {"label": label, "books": len(pipeline.books), "chunks": report.chunks, "sentences": report.sentences,
            "encoded": report.embedded, "build_s": build_s, "p50": p50, "p95": p95}


def speed(base, embedder, scratch: Path, copies: int, paragraphs: int = 0) -> str:
    from bench.scale_out import library

    write_library(scratch / "corpus", copies)
    one = measure(replace(base, index_dir=scratch / "one-index"), embedder, "shipped book")
    many = measure(replace(base, corpus=(scratch / "corpus",), index_dir=scratch / "library-index"),
                   embedder, f"{copies} copies")
    measured = [one, many]
    if paragraphs:  # distinct books: the shipped one and P CMRC paragraphs, a file (a book) each
        measured.append(measure(replace(base, corpus=library(scratch / "cmrc", paragraphs),
                                        index_dir=scratch / "cmrc-index"),
                                embedder, f"shipped book + {paragraphs} CMRC paragraphs"))
    rows = ["| index | books | chunks | sentence vectors | encoded now | build s | search p50 / p95 ms |",
            "|---|---|---|---|---|---|---|"]
    for r in measured:
        rows.append(f"| {r['label']} | {r['books']} | {r['chunks']} | {r['sentences']} | {r['encoded']} | "
                    f"{r['build_s']:.1f} | {r['p50']:.1f} / {r['p95']:.1f} |")
    cmrc = (f" The CMRC row: the shipped book and {paragraphs} CMRC 2018 trial paragraphs (CC BY-SA 4.0), "
            "each paragraph a book of its own, so its build encodes their sentences." if paragraphs else "")
    ratios = ", ".join(f"{r['label']} {r['p50'] / one['p50']:.2f}" for r in measured[1:])
    return (f"`python -m bench.library --copies {copies} --paragraphs {paragraphs}` ({stamp()}; load {load()}; "
            f"{machine()}). Each copy is a book of its own (a folder, its 书名 changed); the sentences are the "
            "same, so the embedding cache serves them and the build time is chunking, BM25 and the vector "
            f"store.{cmrc} Search: the 82 questions of tests/data/questions.jsonl × 2, one at a time.\n\n"
            + "\n".join(rows) + f"\n\nsearch p50 against one book: {ratios}")


class Picked:
    """A pipeline with one book picked (QueryParams.book), as the eval groups call it."""

    def __init__(self, pipeline, book: str) -> None:
        self.pipeline, self.book = pipeline, book

    def search(self, question, history=(), params=None):
        from rag.types import QueryParams

        return self.pipeline.search(question, history, replace(params or QueryParams(), book=self.book))

    def ask(self, question, history=(), params=None):
        from rag.types import QueryParams

        return self.pipeline.ask(question, history, replace(params or QueryParams(), book=self.book))


def figures(pipeline) -> dict[str, float]:
    """"set | split | group | metric" → value: the 全部 row of each group, per question set and split."""
    from rag.eval.questions import load_questions
    from rag.eval.run import evaluate

    out: dict[str, float] = {}
    for name, path in SETS.items():
        qs = load_questions(path)
        for split in ("all", "tune", "heldout"):
            chosen = [q for q in qs if split == "all" or q.split == split]
            for report in evaluate(pipeline, chosen, list(FIGURES)):
                group = "retrieval" if "R@1" in report.columns else "answers"
                for metric in FIGURES[group]:
                    out[f"{name} | {split} | {group} | {metric}"] = report.rows["全部"][metric]
    return out


def other_books(pipeline) -> str:
    """Retrieval on a few questions about the other books (tests/data/library/questions.jsonl), no book
    picked: the merge must not simply favour the shipped book."""
    from rag.eval.questions import load_questions
    from rag.eval.retrieval import retrieval

    loaded = {b.id for b in pipeline.books}
    path = DATA / "library" / "questions.jsonl"
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    books = {r["id"]: r["book"] for r in rows}
    qs = [q for q in load_questions(path) if books[q.id] in loaded]
    row = retrieval(pipeline, qs).rows["全部"]
    return f"R@1 {row['R@1']:.3f}, R@5 {row['R@5']:.3f} ({len(qs)} questions)"


def loaded(base, embedder, scratch: Path, name: str, books: tuple[str, ...]):
    from rag.build import build
    from rag.pipeline import Pipeline

    corpus = (*base.corpus, write_other_books(scratch / name, books)) if books else base.corpus
    settings = replace(base, corpus=corpus, index_dir=scratch / f"{name}-index")
    build(settings, embedder=embedder, force=True)
    return Pipeline.load(settings, embedder=embedder)


def interference(base, embedder, scratch: Path) -> str:
    one = loaded(base, embedder, scratch, "one", ())
    two = loaded(base, embedder, scratch, "two", ("rules",))
    three = loaded(base, embedder, scratch, "three", ("rules", "duben"))
    four = loaded(base, embedder, scratch, "four", tuple(OTHER_BOOKS))
    shipped = one.books[0].id
    alone = figures(one)
    columns = {"2 books, 全部": figures(two), "3 books, 全部": figures(three), "4 books, 全部": figures(four),
               "4 books, book picked": figures(Picked(four, shipped))}
    rows = ["| question set | split | group | figure | one book | " + " | ".join(f"{c} | Δ" for c in columns)
            + " |", "|---" * (5 + 2 * len(columns)) + "|"]
    for key, value in alone.items():
        cells = "".join(f" {c[key]:.3f} | {c[key] - value:+.3f} |" for c in columns.values())
        rows.append(f"| {key} | {value:.3f} |{cells}")
    worst = ", ".join(f"{n} {max(abs(c[k] - v) for k, v in alone.items()):.3f}" for n, c in columns.items())
    return (f"`python -m bench.library --eval` ({stamp()}; load {load()}). The shipped book's figures "
            "(rag.eval groups retrieval and answers, 全部 rows) from its one-book index and from library "
            "indexes: 2 books = + 社区议事规则 (another topic); 3 books = + 群众工作学习读本 (PDF, the same "
            "topic); 4 books = + 基层群众工作方法十讲; 全部 = no book picked.\n\n" + "\n".join(rows) + f"\n\nlargest |Δ|: {worst}\n\nOther books' "
            f"questions, no book picked: 4 books {other_books(four)}; 3 books {other_books(three)}")


def main() -> None:
    from rag.config import Settings, offline_environment

    offline_environment()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=20)
    parser.add_argument("--paragraphs", type=int, default=256,
                        help="also a library of the shipped book and this many CMRC paragraphs, one book each "
                             "(0: not measured)")
    parser.add_argument("--eval", action="store_true",
                        help="the shipped book's figures, alone and in libraries")
    parser.add_argument("--write", action="store_true",
                        help="measure both (speed and --eval) and write them into bench/RESULTS.md")
    args = parser.parse_args()
    from rag.model.embed import load_embedder

    base = Settings.from_env({})
    embedder = load_embedder(base.model)
    scratch = Path(tempfile.mkdtemp(prefix="rag-library-"))
    try:
        parts = []
        if args.write or not args.eval:
            parts.append(speed(base, embedder, scratch / "speed", args.copies, args.paragraphs))
        if args.write or args.eval:
            parts.append(interference(base, embedder, scratch / "eval"))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    body = "\n\n".join(parts)
    print(body)
    if args.write:
        write_section("A library of books (issue 14)", body)


if __name__ == "__main__":
    main()
