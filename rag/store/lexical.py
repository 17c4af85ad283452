"""BM25 over jieba tokens, with a book lexicon so the book's own terms (大群工, 网络群工 …) stay whole.

Library choice, measured on CMRC 2018 trial (`python -m bench.retrieval_cmrc --bm25-libs`; the same jieba
terms over the same 550 chunks, 1002 questions, times include jieba): bm25s 0.3.16 R@1 0.978 / R@5 0.993 /
MRR@10 0.985, 0.56 ms per query; rank-bm25 0.2.2 (BM25Okapi, same k1/b) 0.979 / 0.993 / 0.985, 3.2 ms per
query. Equal quality; bm25s scores from a precomputed sparse matrix instead of looping over every document in
Python (6x faster here, the gap grows with the corpus) and saves its index as plain .npy/.json files, no
pickle. Hence bm25s, pinned.

The index is built once at build time and saved with the dense index; queries only tokenise and score. The
vocabulary is sorted before indexing because bm25s would otherwise number tokens in set order, which changes
with Python's hash seed and would make two builds of the same corpus differ byte for byte.
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path
from typing import Iterable, Protocol, Sequence

import numpy as np

from rag.text.fold import compact
from rag.text.numerals import HEADING_NUMBER

# bm25s files written by BM25.save (the non-occurrence array exists only for BM25L/BM25+, not for "lucene").
BM25_FILES = ("data.csc.index.npy", "indices.csc.index.npy", "indptr.csc.index.npy", "vocab.index.json",
              "params.index.json")
K1, B = 1.5, 0.75  # bm25s defaults
_QUOTED = re.compile(r"[「“『\"]([^「」“”『』\"\s]{2,10})[」”』\"]")


class TokenizerLike(Protocol):
    def tokens(self, text: str) -> list[str]: ...


def terms(tokenizer: TokenizerLike, text: str) -> list[str]:
    """BM25 terms: jieba words (rag.text drops punctuation and stop words) plus the character bigrams of words
    longer than two characters, so "大群工" also matches "群工" and a name jieba split differently still
    overlaps. Measured on CMRC: words alone R@1 0.968, with these bigrams 0.978 (R@5 0.986 → 0.995).

    Spaces next to CJK characters are dropped first: the PDF text says "主 编" and "2015 年", a reader types
    "主编" and "2015年"."""
    out: list[str] = []
    for word in tokenizer.tokens(compact(text)[0]):
        out.append(word)
        if len(word) > 2:
            out.extend(word[i:i + 2] for i in range(len(word) - 1))
    return out


class LexicalStore(Protocol):
    """BM25 over the chunk table (row i = chunk i): the top n rows for a question, and its term coverage."""

    size: int

    def search(self, query: str, n: int) -> tuple[np.ndarray, np.ndarray, float]: ...

    def save(self, folder: Path) -> list[Path]: ...


class Lexical:
    """The bm25s backend of LexicalStore, saved as plain files in the index folder."""

    def __init__(self, bm25, tokenizer: TokenizerLike) -> None:
        self._bm25 = bm25
        self._tokenizer = tokenizer
        self.size = int(bm25.scores["num_docs"])
        # Document frequency of each vocabulary id (columns of bm25s' sparse score matrix), for `coverage`.
        self._df = np.diff(np.asarray(bm25.scores["indptr"]))

    @classmethod
    def build(cls, texts: Sequence[str], tokenizer: TokenizerLike) -> Lexical:
        import bm25s

        docs = [terms(tokenizer, t) for t in texts]
        vocab = {tok: i for i, tok in enumerate(sorted({t for d in docs for t in d}))}
        bm25 = bm25s.BM25(k1=K1, b=B)
        bm25.index(([[vocab[t] for t in d] for d in docs], vocab), show_progress=False)
        return cls(bm25, tokenizer)

    def save(self, folder: Path) -> list[Path]:
        folder.mkdir(parents=True, exist_ok=True)
        self._bm25.save(str(folder), show_progress=False)
        return [folder / name for name in BM25_FILES]

    @classmethod
    def load(cls, folder: Path, tokenizer: TokenizerLike) -> Lexical:
        import bm25s

        return cls(bm25s.BM25.load(str(folder), show_progress=False), tokenizer)

    def search(self, query: str, n: int) -> tuple[np.ndarray, np.ndarray, float]:
        """(rows, BM25 scores) of the best n rows with a positive score, best first (ties by row), and the
        query's coverage (see `query`)."""
        scores, coverage = self.query(query)
        rows = np.asarray(top_rows(scores, n, 0.0), dtype=np.int64)
        return rows, scores[rows], coverage

    def scores(self, query: str) -> np.ndarray:
        """BM25 score of every row for the query (zeros when no query term occurs in the book)."""
        return self.query(query)[0]

    def query(self, query: str) -> tuple[np.ndarray, float]:
        """BM25 scores of every row, and the query's coverage: the IDF-weighted share of its terms that occur
        in the corpus at all. A paraphrase in everyday words (老百姓、腰包) has a low coverage, and its BM25
        scores rest on a few generic words, so fusion trusts them less."""
        vocab = self._bm25.vocab_dict
        words = terms(self._tokenizer, query)
        known = [t for t in words if t in vocab]
        if not known:
            return np.zeros(self.size, dtype=np.float32), 0.0
        idf = {t: np.log1p(self.size / max(0.5, self._df[vocab[t]] if t in vocab else 0.0)) for t in words}
        coverage = sum(idf[t] for t in known) / sum(idf[t] for t in words)
        return np.asarray(self._bm25.get_scores(known), dtype=np.float32), float(coverage)


def top_rows(scores: np.ndarray, n: int, minimum: float) -> list[int]:
    """Rows of the n best scores above `minimum`; ties broken by row (results never depend on sort order)."""
    if n <= 0:
        return []
    rows = np.flatnonzero(scores > minimum)
    if len(rows) > n:  # a million chunks: sort only those at or above the n-th best score (ties kept)
        kth = np.partition(scores[rows], len(rows) - n)[len(rows) - n]
        rows = rows[scores[rows] >= kth]
    return [int(r) for r in rows[np.lexsort((rows, -scores[rows]))][:n]]


# --- the book lexicon (a jieba user dictionary) -----------------------------------------------------------

def quoted_terms(text: str) -> set[str]:
    """Terms the book puts in quotation marks: “大群工” “网络群工” “两个一百年” …"""
    return {m for m in _QUOTED.findall(text) if all(unicodedata.category(c)[0] in "LN" for c in m)}


def heading_terms(title: str, max_chars: int = 8) -> set[str]:
    """A short heading or 目录 title without its numbering (e.g. "群众工作的作用"), plus its quoted terms."""
    found = quoted_terms(title)
    bare = HEADING_NUMBER.sub("", title).replace(" ", "")
    if 2 <= len(bare) <= max_chars and all(unicodedata.category(c)[0] in "LN" for c in bare):
        found.add(bare)
    return found


def read_word_list(path: Path) -> list[str]:
    """A hand-kept word list: one term per line (a jieba frequency may follow), # starts a comment."""
    words = []
    for line in path.read_text(encoding="utf-8").splitlines():
        word = line.split("#", 1)[0].split()
        if word:
            words.append(word[0])
    return words


def build_lexicon(texts: Iterable[str], headings: Iterable[str], extra: Iterable[str] = ()) -> list[str]:
    """The sorted user dictionary of a corpus: quoted terms, short headings/目录 titles and hand-kept words."""
    words: set[str] = set(extra)
    for text in texts:
        words |= quoted_terms(text)
    for title in headings:
        words |= heading_terms(title)
    return sorted(w for w in words if len(w) >= 2)


def write_lexicon(words: Sequence[str], path: Path) -> None:
    path.write_text("".join(f"{w}\n" for w in words), encoding="utf-8")
