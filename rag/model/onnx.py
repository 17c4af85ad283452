"""The default model through ONNX Runtime: exported once at provisioning time, then encoded without torch.

Why: measured on this 2-core machine (bench/RESULTS.md, Performance), ONNX Runtime spends a third of torch's
CPU time on one query and gives the same vectors (cosine ≥ 0.9999999), and a process that never imports torch,
transformers or sentence-transformers starts in a fraction of the time and memory. The export needs torch and
transformers (present for the `torch` backend anyway) and runs in `python -m rag model`, so serving never
does.

Layout, next to the converted model: `embeddings/models/<model>-onnx/`
    model.onnx       BertModel → last hidden states, float32 (torch.onnx.export, opset 17, BERT ops fused)
    model-int8.onnx  the same with dynamic int8 weights (onnxruntime.quantization, 7-bit per channel): the
                     default. Activations are quantised per run, so the encoder runs one text at a time and
                     a sentence's vector never depends on what it was encoded with
    provenance.json  the source model's fingerprint, tool versions, and size/mtime/sha256 of every file
Pooling (mean over the attention mask, prompt included) and L2 normalisation happen here in numpy, exactly as
the model's sentence-transformers modules (1_Pooling, 2_Normalize) do them.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import re
import threading
import warnings
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from rag.errors import ModelError
from rag.files import file_record, locked, unchanged, version, write_atomic
from rag.model.runtime import quiet_libraries

EXPORT_VERSION = 4  # bump whenever the exported files (or the receipt's format) would change
FILES = {"onnx": "model.onnx", "onnx-int8": "model-int8.onnx"}
TOOLS = ("torch", "transformers", "onnx", "onnxruntime")
OPSET = 17


def onnx_dir(model_dir: Path) -> Path:
    return model_dir.with_name(model_dir.name + "-onnx")


def read_receipt(folder: Path) -> dict:
    try:
        return json.loads((folder / "provenance.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


# ---------------------------------------------------------------- provisioning


def provision_onnx(model_dir: Path, source_fingerprint: str, backend: str = "onnx", *,
                   force: bool = False) -> tuple[Path, str, bool]:
    """The ONNX file for `backend` (exported/quantised now if missing or made from other weights), its
    sha256, and whether this call had to make it. A file lock makes concurrent processes wait for one
    export."""
    folder = onnx_dir(model_dir)
    with locked(folder / ".lock"):
        receipt = read_receipt(folder)
        mine = {"source_fingerprint": source_fingerprint, "export_version": EXPORT_VERSION}
        if any(receipt.get(k) != v for k, v in mine.items()):
            receipt = {**mine, "files": {}}
        files = receipt.setdefault("files", {})
        made = False
        for name in needed_files(backend):
            path = folder / FILES[name]
            if force or name not in files or not unchanged(path, files[name]):
                (_export if name == "onnx" else _quantize)(model_dir, folder)
                files[name] = file_record(path, mtime=True)
                made = True
        if made:
            receipt["tools"] = {t: version(t) for t in TOOLS}
            write_atomic(folder / "provenance.json", json.dumps(receipt, indent=2, sort_keys=True) + "\n")
        return folder / FILES[backend], files[backend]["sha256"], made


def needed_files(backend: str) -> list[str]:
    if backend not in FILES:
        raise ModelError(f"未知的推理后端 {backend!r}：可选 torch、onnx、onnx-int8（RAG_BACKEND）。")
    return ["onnx"] if backend == "onnx" else ["onnx", backend]


def _export(model_dir: Path, folder: Path) -> None:
    """BertModel → ONNX with dynamic batch and sequence axes (the TorchScript exporter: one graph, no
    onnxscript needed); written to a temporary name and renamed, so readers never see half a file."""
    try:
        import torch
        from transformers import BertModel
    except ImportError as exc:
        raise ModelError(f"导出 ONNX 模型需要 torch 和 transformers（{exc}）。请执行 `make setup`，"
                         "或设置 RAG_BACKEND=torch。") from exc

    class Encoder(torch.nn.Module):
        def __init__(self, bert) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, input_ids, attention_mask):
            return self.bert(input_ids=input_ids, attention_mask=attention_mask,
                             token_type_ids=torch.zeros_like(input_ids)).last_hidden_state

    # Eager attention exports as plain MatMul/Softmax, the pattern ONNX Runtime's BERT optimiser fuses into
    # Attention, EmbedLayerNormalization, SkipLayerNormalization and BiasGelu (measured: −6 % CPU per query,
    # +19 % passages/s against the unfused graph, same vectors).
    quiet_libraries()  # no weight-loading progress bar; torch threads as the embedder sets them
    bert = BertModel.from_pretrained(str(model_dir), local_files_only=True, attn_implementation="eager").eval()
    ids = torch.tensor([[0, 6, 7, 8, 2], [0, 6, 7, 2, 1]])
    axes = {"batch": 0, "tokens": 1}
    raw, tmp = folder / f".raw.{os.getpid()}.onnx", folder / f".model.{os.getpid()}.onnx"
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(Encoder(bert), (ids, (ids != 1).long()), str(raw), dynamo=False,
                              opset_version=OPSET,
                              input_names=["input_ids", "attention_mask"], output_names=["last_hidden_state"],
                              dynamic_axes={n: {v: k for k, v in axes.items()} for n in
                                            ("input_ids", "attention_mask", "last_hidden_state")})
        _fuse(raw, tmp, int(bert.config.num_attention_heads), int(bert.config.hidden_size))
        os.replace(tmp, folder / FILES["onnx"])
    finally:
        raw.unlink(missing_ok=True)
        tmp.unlink(missing_ok=True)


def _fuse(source: Path, target: Path, heads: int, hidden: int) -> None:
    from onnxruntime.transformers.optimizer import optimize_model

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        optimize_model(str(source), model_type="bert", num_heads=heads, hidden_size=hidden,
                       opt_level=0).save_model_to_file(str(target))


def _quantize(model_dir: Path, folder: Path) -> None:
    """Dynamic int8: weights of MatMul and the embedding Gather quantised per output channel (smaller error
    than per tensor on this model), activations quantised on the fly. Weights use 7 bits (reduce_range): the
    AVX2 u8×s8 kernels add pairs of products in 16 bits, which full-range weights can saturate; measured on
    the question set, the worst query cosine against float32 rises from 0.987 to 0.994 at the same speed."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    tmp = folder / f".model-int8.{os.getpid()}.onnx"
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # the quantiser's advice to pre-process goes to the root logger
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            quantize_dynamic(folder / FILES["onnx"], tmp, weight_type=QuantType.QInt8, per_channel=True,
                             reduce_range=True,
                             op_types_to_quantize=["MatMul", "Gather", "Attention",
                                                   "EmbedLayerNormalization"],
                             extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    finally:
        root.setLevel(level)
    os.replace(tmp, folder / FILES["onnx-int8"])


# ---------------------------------------------------------------- encoding


class OnnxEncoder:
    """Tokenise with the model's own tokenizer.json, run the graph, mean-pool, normalise; thread-safe."""

    def __init__(self, model_dir: Path, onnx_file: Path, threads: int | None = None, *,
                 one_per_run: bool = False) -> None:
        import onnxruntime as ort

        config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
        st_config = _json(model_dir / "sentence_bert_config.json")
        self.dim = int(config["hidden_size"])
        self.max_seq_length = min(int(st_config.get("max_seq_length") or 512),
                                  int(config.get("max_position_embeddings", 512)))
        self.prompts = dict(_json(model_dir / "config_sentence_transformers.json").get("prompts", {}))
        self.pad_id = int(config.get("pad_token_id") or 0)
        # A dynamically quantised graph scales its activations per run (over the whole batch tensor): one text
        # per run makes every vector a function of its text alone, whatever it was encoded with.
        self.one_per_run = one_per_run
        self.tokenizer = CoreTokenizer(model_dir / "tokenizer.json", onnx_dir(model_dir))
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or max(1, len(os.sched_getaffinity(0)))
        options.inter_op_num_threads = 1
        # Spinning worker threads starve each other on a shared 2-core machine (as with OpenMP in torch).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(onnx_file), options, providers=["CPUExecutionProvider"])
        # A fresh session's first run allocates and plans (≈ 0.5 s here): done now, in the background, while
        # the caller goes on loading the index, instead of inside the first question.
        self._warm = threading.Thread(target=self._forward, args=([[0, 2]],), daemon=True)
        self._warm.start()
        # A process that ends while that run is still going (a CLI refusing a missing index right after the
        # model loaded) would abort in ONNX Runtime's threads: wait for it at exit.
        atexit.register(self._warm.join)

    def token_ids(self, text: str) -> list[int]:
        return self.tokenizer.encode_batch([text])[0]

    def encode(self, texts: Sequence[str], batch_size: int = 32,
               progress: Callable[[int], None] | None = None) -> np.ndarray:
        """Rows in input order; batches of similar length (longest first), so little padding is computed."""
        self._warm.join()
        if self.one_per_run:
            batch_size = 1
        ids = [self._truncate(x) for x in self.tokenizer.encode_batch(list(texts))]
        order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))
        out = np.zeros((len(ids), self.dim), dtype=np.float32)
        for lo in range(0, len(order), batch_size):
            rows = order[lo:lo + batch_size]
            out[rows] = self._forward([ids[i] for i in rows])
            if progress is not None:
                progress(len(rows))
        return out

    def _truncate(self, ids: list[int]) -> list[int]:
        """As the Hugging Face tokenizer does for one sequence: cut the text, keep the closing </s>."""
        return ids if len(ids) <= self.max_seq_length else ids[:self.max_seq_length - 1] + ids[-1:]

    def _forward(self, batch: list[list[int]]) -> np.ndarray:
        width = max(len(x) for x in batch)
        ids = np.full((len(batch), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(batch), width), dtype=np.int64)
        for row, x in enumerate(batch):
            ids[row, :len(x)] = x
            mask[row, :len(x)] = 1
        hidden = self.session.run(None, {"input_ids": ids, "attention_mask": mask})[0]
        weights = mask[..., None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
        return pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)


# Characters of Chinese text (ideographs, kana, CJK punctuation and symbols, width forms), ASCII and Latin-1,
# and the symbol blocks books use (arrows, maths, ①, ◇ ▲, ★ — and ▁, the word mark).
_CORE = ("\u0020-\u007e\u00a0-\u00ff\u2000-\u206f\u2100-\u21ff\u2200-\u22ff\u2460-\u24ff"
         "\u2500-\u25ff\u2600-\u26ff\u3000-\u303f\u3040-\u30ff\u3100-\u312f\u3200-\u33ff"
         "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff00-\uffef\U00020000-\U0002ffff")
_OUTSIDE_CORE = re.compile(f"[^{_CORE}]")
CORE_FORMAT = 2


class CoreTokenizer:
    """The model's tokenizer.json, loaded in a third of the time, with the same token ids for every text.

    Building the unigram model of all 250,002 pieces takes 1.1–1.4 s here, most of a cold start. A unigram
    tokenizer can only use pieces that occur in the (normalised) text, so for a text made of core characters
    (Chinese, ASCII, Latin-1, common symbols) a vocabulary of just the core pieces — 120k — gives the
    same pieces; its ids are mapped back to the model's. The piece with the lowest score is kept too: it sets
    the penalty of unknown characters. Any other text (Cyrillic, Arabic, emoji…) goes to the full tokenizer,
    loaded on first need. The core vocabulary is derived once and cached next to the ONNX files, keyed by
    tokenizer.json's size and mtime."""

    def __init__(self, path: Path, cache_dir: Path) -> None:
        self.path = path
        self._full = None
        self._lock = threading.Lock()
        self.core, self.ids = _core_vocabulary(path, cache_dir)

    def full(self):
        with self._lock:
            if self._full is None:
                from tokenizers import Tokenizer

                self._full = Tokenizer.from_file(str(self.path))
            return self._full

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        """Token ids (with <s> … </s>) of each text, exactly as tokenizer.json gives them."""
        normalize = self.core.normalizer.normalize_str
        core = [i for i, t in enumerate(texts) if not _OUTSIDE_CORE.search(normalize(t))]
        out: list[list[int]] = [[] for _ in texts]
        for i, e in zip(core, self.core.encode_batch([texts[i] for i in core]) if core else []):
            out[i] = self.ids[e.ids].tolist()
        rest = [i for i in range(len(texts)) if not out[i]]
        for i, e in zip(rest, self.full().encode_batch([texts[i] for i in rest]) if rest else []):
            out[i] = e.ids
        return out


def _core_vocabulary(path: Path, cache_dir: Path):
    """(the core tokenizer, the model id of each core piece), from the cache or derived now. Cache files:
    tokenizer-core.json (a tokenizer.json), tokenizer-core.ids.npy, and tokenizer-core.key.json, written
    last, naming the tokenizer.json they were derived from."""
    from tokenizers import Tokenizer

    st = path.stat()
    key = {"format": CORE_FORMAT, "source": str(path.resolve()), "size": st.st_size,
           "mtime_ns": st.st_mtime_ns}
    files = {name: cache_dir / f"tokenizer-core.{name}" for name in ("json", "ids.npy", "key.json")}
    try:
        if json.loads(files["key.json"].read_text(encoding="utf-8")) == key:
            return Tokenizer.from_file(str(files["json"])), np.load(files["ids.npy"], allow_pickle=False)
    except Exception:  # noqa: BLE001 — unreadable or bad files (tokenizers raises plain Exception)
        pass
    full = json.loads(path.read_text(encoding="utf-8"))
    vocab = full["model"]["vocab"]
    specials = {t["id"] for t in full.get("added_tokens", [])}
    lowest = min(range(len(vocab)), key=lambda i: vocab[i][1])
    ids = [i for i, (piece, _) in enumerate(vocab)
           if i in specials or i == lowest or not _OUTSIDE_CORE.search(piece)]
    if ids[:4] != [0, 1, 2, 3]:
        raise ModelError(f"{path} 的特殊词元不在预期位置（<s> <pad> </s> <unk>），无法使用。")
    new_id = {old: new for new, old in enumerate(ids)}
    full["model"]["vocab"] = [vocab[i] for i in ids]
    for token in full.get("added_tokens", []):
        token["id"] = new_id[token["id"]]
    core = json.dumps(full, ensure_ascii=False)
    table = np.asarray(ids, dtype=np.int64)
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        write_atomic(files["json"], core)
        tmp = cache_dir / f".tokenizer-core.{os.getpid()}.npy"
        np.save(tmp, table, allow_pickle=False)
        os.replace(tmp, files["ids.npy"])
        write_atomic(files["key.json"], json.dumps(key))
    except OSError:
        pass  # a read-only folder: derived again next time
    return Tokenizer.from_str(core), table


def _json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}

