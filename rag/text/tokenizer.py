"""One jieba tokenizer per index: an owned `jieba.Tokenizer`, jieba's dictionary read once per process."""

from __future__ import annotations

import gc
import importlib.metadata
import logging
import os
import pickle
import tempfile
import threading
from pathlib import Path
from typing import Iterable

import jieba

from rag.config import ROOT
from rag.text.fold import normalize, squeeze

STOP_WORDS = frozenset(
    """的 了 是 在 和 与 及 或 等 也 就 都 而 其 之 为 对 把 被 这 那 这个 那个 这些 那些 一个 有 个 着 又 从
    以 于 并 且 但 则 即 所 将 已 要 会 能 可 让 给 向 由 上 中 下 里 吗 呢 吧 啊 呀 么 什么 哪 哪些 哪个 怎么
    怎样 如何 为什么 多少 几 谁 请 问 请问 一下 我 你 他 她 它 我们 你们 他们 书 书中 本书 教材""".split()
)



def _is_word(tok: str) -> bool:
    return any(ch.isalnum() for ch in tok)


class Tokenizer:
    """One owned `jieba.Tokenizer` (never the global one), its cache kept out of the user's home directory.

    Thread-safe after construction: jieba's cut is read-only once the dictionary is loaded; `add_words` takes
    a lock because it mutates the frequency table.
    """

    def __init__(self, words: Iterable[str] = (), cache_dir: Path | None = None) -> None:
        logging.getLogger("jieba").setLevel(logging.WARNING)
        jieba.setLogLevel(logging.WARNING)
        self._jieba = jieba.Tokenizer()
        self._lock = threading.Lock()
        self._recent: dict[str, list[str]] = {}  # tokens() of the last RECENT texts (see tokens)
        freq, total = base_dictionary(cache_dir)
        with self._lock:
            self._jieba.FREQ, self._jieba.total = dict(freq), total  # own copy: add_words changes it
            self._jieba.initialized = True
        self.add_words(words)

    def add_words(self, words: Iterable[str]) -> None:
        """Teach the tokenizer book terms ("网络群工", "最后一公里") so they stay whole tokens."""
        with self._lock:
            for w in words:
                w = squeeze(w)
                if len(w) >= 2:
                    self._jieba.add_word(w, freq=max(self._jieba.suggest_freq(w, False), 10))
            self._recent.clear()

    def tokenize(self, s: str) -> list[tuple[str, int, int]]:
        """(word, start, end) over the normalised text; offsets are valid in `s` too (for highlighting)."""
        n = normalize(s)
        return [(w, a, b) for w, a, b in self._jieba.tokenize(n, HMM=True) if not w.isspace()]

    def tokens(self, s: str) -> list[str]:
        """Lower-cased words for BM25: no punctuation, no spaces, no stop words.

        One question is tokenized by several stages (lexical search, the answer stage's terms, the refusal
        checks): the last RECENT texts' tokens are kept, so each is cut once per question. So few that a
        question asked again later is cut again (a benchmark's repeated rounds measure the real work)."""
        found = self._recent.get(s)
        if found is None:
            n = normalize(s).lower()
            found = [w for w in self._jieba.lcut(n, HMM=True) if _is_word(w) and w not in STOP_WORDS]
            with self._lock:
                self._recent[s] = found
                while len(self._recent) > RECENT:
                    del self._recent[next(iter(self._recent))]
        return list(found)


RECENT = 8  # texts whose tokens Tokenizer.tokens keeps

_BASE: tuple[dict[str, int], int] | None = None
_BASE_LOCK = threading.Lock()
BASE_FORMAT = 2
BASE_PARTS = 32


def base_dictionary(cache_dir: Path | None = None) -> tuple[dict[str, int], int]:
    """jieba's default prefix dictionary (word → frequency, and the total), read once per process.

    jieba keeps it in a marshal cache that takes 1.1–1.4 s to read here; the same table pickled reads in
    about a third of that with the garbage collector paused (bench/RESULTS.md, Performance: cold start).
    The pickle is made from jieba's own dictionary on first use, remade when jieba or its dictionary change."""
    global _BASE
    with _BASE_LOCK:
        if _BASE is None:
            folder = _cache_dir(cache_dir)
            stamp = _dictionary_stamp()
            _BASE = _read_base(folder / "jieba-base.pickle", stamp)
            if _BASE is None:
                _BASE = _make_base(folder, stamp)
        return _BASE


def _dictionary_stamp() -> dict[str, object]:
    st = (Path(jieba.__file__).parent / jieba.DEFAULT_DICT_NAME).stat()
    return {"format": BASE_FORMAT, "jieba": importlib.metadata.version("jieba"),
            "dict": [st.st_size, st.st_mtime_ns]}


def _read_base(path: Path, stamp: dict[str, object]) -> tuple[dict[str, int], int] | None:
    """The pickled table, if it is ours (owned by this user, not writable by others) and current."""
    try:
        info = path.stat()
        if info.st_uid != os.getuid() or info.st_mode & 0o022:
            return None
        enabled = gc.isenabled()
        gc.disable()  # half a million small objects: collection passes during the load would cost more
        try:
            with path.open("rb") as fh:
                saved, total, parts = pickle.load(fh)
                if saved != stamp or not isinstance(total, int) or not isinstance(parts, int):
                    return None
                freq: dict[str, int] = {}
                for _ in range(parts):  # in parts: other threads (the encoder in a build) get the GIL between
                    part = pickle.load(fh)
                    if not isinstance(part, dict):
                        return None
                    freq.update(part)
        finally:
            if enabled:
                gc.enable()
    except (OSError, pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError):
        return None
    return freq, total


def _make_base(folder: Path, stamp: dict[str, object]) -> tuple[dict[str, int], int]:
    loader = jieba.Tokenizer()
    loader.cache_file = str(folder / "jieba.cache")
    loader.initialize()
    tmp = folder / f".jieba-base.{os.getpid()}.{threading.get_ident()}"
    try:
        words = list(loader.FREQ.items())
        size = -(-len(words) // BASE_PARTS)
        with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as fh:
            pickle.dump((stamp, loader.total, BASE_PARTS), fh, protocol=pickle.HIGHEST_PROTOCOL)
            for i in range(BASE_PARTS):
                pickle.dump(dict(words[i * size:(i + 1) * size]), fh, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, folder / "jieba-base.pickle")
    except OSError:
        tmp.unlink(missing_ok=True)  # a read-only cache folder: next process reads jieba's own cache again
    return loader.FREQ, loader.total


def _cache_dir(preferred: Path | None) -> Path:
    """embeddings/cache/ in the project (git-ignored), else the system temp dir if that is read-only."""
    for d in (preferred, ROOT / "embeddings" / "cache", Path(tempfile.gettempdir())):
        if d is None:
            continue
        try:
            d.mkdir(parents=True, exist_ok=True)
            probe = d / ".write-test"
            probe.write_text("", encoding="utf-8")
            probe.unlink()
            return d
        except OSError:
            continue
    return Path(tempfile.gettempdir())
