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

import math
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
BOOK_SCORES = "book_scores.npy"  # a library's BM25 scores with each book's own statistics (see Lexical)
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


Runs = Sequence[tuple[int, int]]  # the rows of one book: (start, end) ranges, in row order


class LexicalStore(Protocol):
    """BM25 over the chunk table (row i = chunk i): the top n rows for a question, and its term coverage."""

    size: int

    def search(self, query: str, n: int) -> tuple[np.ndarray, np.ndarray, float]: ...

    def search_parts(self, query: str, n: int,
                     parts: Sequence[Runs]) -> list[tuple[np.ndarray, np.ndarray, float]]:
        """`search` within each part (a book's rows), scored with that part's own statistics where the
        store keeps them, with the part's own coverage."""
        ...

    def save(self, folder: Path) -> list[Path]: ...


class Lexical:
    """The bm25s backend of LexicalStore, saved as plain files in the index folder.

    Built for several books (`parts`), it also keeps every (chunk, term) score computed with the IDF and the
    mean length of that chunk's own book (BOOK_SCORES, aligned with bm25s' sparse matrix), so that a book's
    BM25 ranking does not depend on which other books are loaded; `search` keeps the library-wide scores.
    """

    def __init__(self, bm25, tokenizer: TokenizerLike, book_scores: np.ndarray | None = None) -> None:
        self._bm25 = bm25
        self._tokenizer = tokenizer
        self.size = int(bm25.scores["num_docs"])
        # Document frequency of each vocabulary id (columns of bm25s' sparse score matrix), for `coverage`.
        self._df = np.diff(np.asarray(bm25.scores["indptr"]))
        self._book_scores = book_scores

    @classmethod
    def build(cls, texts: Sequence[str], tokenizer: TokenizerLike, parts: Sequence[Runs] = ()) -> Lexical:
        return cls.from_terms([terms(tokenizer, t) for t in texts], tokenizer, parts)

    @classmethod
    def from_terms(cls, docs: Sequence[Sequence[str]], tokenizer: TokenizerLike,
                   parts: Sequence[Runs] = ()) -> Lexical:
        """The store of these chunk terms; with two or more `parts`, also the per-book scores."""
        vocab = {tok: i for i, tok in enumerate(sorted({t for d in docs for t in d}))}
        ids = [[vocab[t] for t in d] for d in docs]
        bm25 = _bm25(ids, dict(vocab))
        scores = _book_scores(bm25.scores, ids, parts) if len(parts) > 1 else None
        return cls(bm25, tokenizer, scores)

    def save(self, folder: Path) -> list[Path]:
        folder.mkdir(parents=True, exist_ok=True)
        self._bm25.save(str(folder), show_progress=False)
        if self._book_scores is None:
            return [folder / name for name in BM25_FILES]
        np.save(folder / BOOK_SCORES, self._book_scores, allow_pickle=False)
        return [folder / name for name in (*BM25_FILES, BOOK_SCORES)]

    @classmethod
    def load(cls, folder: Path, tokenizer: TokenizerLike) -> Lexical:
        import bm25s

        bm25 = bm25s.BM25.load(str(folder), show_progress=False)
        path = folder / BOOK_SCORES
        book_scores = np.load(path, allow_pickle=False) if path.is_file() else None
        if book_scores is not None and book_scores.shape != np.shape(bm25.scores["data"]):
            raise ValueError(f"{BOOK_SCORES} 与 BM25 矩阵大小不一致")
        return cls(bm25, tokenizer, book_scores)

    def search(self, query: str, n: int) -> tuple[np.ndarray, np.ndarray, float]:
        """(rows, BM25 scores) of the best n rows with a positive score, best first (ties by row), and the
        query's coverage (see `query`)."""
        scores, coverage = self.query(query)
        rows = np.asarray(top_rows(scores, n, 0.0), dtype=np.int64)
        return rows, scores[rows], coverage

    def search_parts(self, query: str, n: int,
                     parts: Sequence[Runs]) -> list[tuple[np.ndarray, np.ndarray, float]]:
        """Per part: its best n rows by its own BM25 statistics and its coverage. A single part holding every
        row is exactly `search`."""
        if len(parts) == 1 and list(parts[0]) == [(0, self.size)]:
            return [self.search(query, n)]
        words = terms(self._tokenizer, query)
        ids = [self._bm25.vocab_dict[t] for t in words if t in self._bm25.vocab_dict]
        scores = self._sum_scores(ids)
        best = _best_per_part(scores, n, parts)
        return [(rows, scores[rows], coverage) for rows, coverage in zip(best, self._coverages(words, parts))]

    def _sum_scores(self, ids: Sequence[int]) -> np.ndarray:
        """Every row's BM25 sum over the query term ids, from the per-book scores when there are any (summed
        term by term, in query order, as bm25s sums its own)."""
        if not ids:
            return np.zeros(self.size, dtype=np.float32)
        if self._book_scores is None:
            return np.asarray(self._bm25.get_scores(list(ids)), dtype=np.float32)
        indptr, indices = self._bm25.scores["indptr"], self._bm25.scores["indices"]
        scores = np.zeros(self.size, dtype=np.float32)
        for i in ids:
            np.add.at(scores, indices[indptr[i]:indptr[i + 1]], self._book_scores[indptr[i]:indptr[i + 1]])
        return scores

    def _coverages(self, words: Sequence[str], parts: Sequence[Runs]) -> list[float]:
        """`query`'s coverage over the rows of each part: the part's size, its document frequencies (all
        parts at once; the sums run in word order, as `query` adds them)."""
        if not words or not parts:
            return [0.0] * len(parts)
        vocab, indptr = self._bm25.vocab_dict, self._bm25.scores["indptr"]
        indices = self._bm25.scores["indices"]
        starts = np.asarray([a for runs in parts for a, _ in runs], dtype=np.int64)
        ends = np.asarray([b for runs in parts for _, b in runs], dtype=np.int64)
        owner = np.asarray([i for i, runs in enumerate(parts) for _ in runs], dtype=np.int64)
        sizes = np.bincount(owner, weights=ends - starts, minlength=len(parts))
        known = list(dict.fromkeys(t for t in words if t in vocab))
        df = np.zeros((len(parts), len(known) + 1))  # term → its document frequency in each part; last: 0
        for j, t in enumerate(known):
            column = indices[indptr[vocab[t]]:indptr[vocab[t] + 1]]  # rows in ascending order
            inside = np.searchsorted(column, ends) - np.searchsorted(column, starts)
            df[:, j] = np.bincount(owner, weights=inside, minlength=len(parts))
        at = {t: j for j, t in enumerate(known)}
        per_word = df[:, [at.get(t, len(known)) for t in words]]
        with np.errstate(divide="ignore", invalid="ignore"):
            idf = np.log1p(sizes[:, None] / np.maximum(0.5, per_word))
            seen = per_word > 0
            share = np.cumsum(np.where(seen, idf, 0.0), axis=1)[:, -1] / np.cumsum(idf, axis=1)[:, -1]
        return np.where(seen.any(axis=1) & (sizes > 0), share, 0.0).tolist()

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


def _bm25(ids: Sequence[Sequence[int]], vocab: dict[str, int]):
    """bm25s over term ids (bm25s adds its empty token "" to the vocabulary it is given)."""
    import bm25s

    bm25 = bm25s.BM25(k1=K1, b=B)
    bm25.index((ids, vocab), show_progress=False)
    return bm25


def _book_scores(library: dict, ids: Sequence[Sequence[int]], parts: Sequence[Runs]) -> np.ndarray:
    """The library matrix's entries re-scored book by book: each entry (term, row) with the IDF and the mean
    length of the row's own book, computed for all books at once. The arithmetic is bm25s' own
    (`_score_idf_lucene`, `_score_tfc_robertson`, float32 results from float64 steps), so a book's scores
    equal those of bm25s indexing that book alone, bit for bit (tests/test_lexical.py); indexing each book
    with bm25s took time proportional to books × vocabulary (2.5 s for 257 one-paragraph books)."""
    indptr, indices = np.asarray(library["indptr"]), np.asarray(library["indices"])
    n_rows = len(ids)
    columns = np.repeat(np.arange(len(indptr) - 1), np.diff(indptr))
    keys = columns.astype(np.int64) * n_rows + indices  # (term, row) of every library entry
    out = np.zeros(len(keys), dtype=np.float32)
    lengths = np.fromiter((len(d) for d in ids), np.int64, n_rows)
    owner = np.full(n_rows, -1, dtype=np.int64)
    size, mean = np.zeros(len(parts), dtype=np.int64), np.zeros(len(parts))
    for i, runs in enumerate(parts):
        rows = np.concatenate([np.arange(a, b) for a, b in runs])
        owner[rows], size[i] = i, len(rows)
        mean[i] = lengths[rows].mean()  # bm25s' avg_doc_len: the same numpy mean over the book's rows in order
    flat = np.fromiter((t for d in ids for t in d), np.int64, int(lengths.sum()))
    row_of = np.repeat(np.arange(n_rows), lengths)
    entry, tf = np.unique(flat * n_rows + row_of, return_counts=True)  # (term, row) keys, ascending
    row, term = entry % n_rows, entry // n_rows
    book = owner[row]
    row, term, tf, book, entry = (a[book >= 0] for a in (row, term, tf, book, entry))
    _, group, df = np.unique(book * (len(indptr) - 1) + term, return_inverse=True, return_counts=True)
    n = size[book]
    pairs, where = np.unique(np.stack([n, df[group]]), axis=1, return_inverse=True)
    idf = np.asarray([math.log(1 + (N - f + 0.5) / (f + 0.5)) for N, f in pairs.T.tolist()],
                     dtype=np.float32)[where.reshape(-1)]
    tf32 = tf.astype(np.float32)
    tfc = tf32 / (K1 * ((1 - B) + B * lengths[row] / mean[book]) + tf32)
    order = np.argsort(keys, kind="stable")
    out[order[np.searchsorted(keys[order], entry)]] = (idf * tfc).astype(np.float32)
    return out


def _best_per_part(scores: np.ndarray, n: int, parts: Sequence[Runs]) -> list[np.ndarray]:
    """Each part's `top_rows(…, n, 0.0)`: its n best rows with a positive score, ties by row."""
    part = np.full(len(scores), -1, dtype=np.int64)
    for i, runs in enumerate(parts):
        for a, b in runs:
            part[a:b] = i
    rows = np.flatnonzero((scores > 0) & (part >= 0))
    rows = rows[np.lexsort((rows, -scores[rows]))]  # best first, ties by row
    rows = rows[np.argsort(part[rows], kind="stable")]  # grouped by part, each best first
    bounds = np.searchsorted(part[rows], np.arange(len(parts) + 1))
    return [rows[lo:min(hi, lo + max(n, 0))] for lo, hi in zip(bounds[:-1], bounds[1:])]


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
