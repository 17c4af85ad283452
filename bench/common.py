"""Shared by the performance benchmarks: the machine, percentiles, fresh child processes, RESULTS.md sections.

The machine is shared (other test runs, other engineers): every figure is printed next to the load average,
and the targets are judged on ratios measured in the same process (pipeline / model forward pass)."""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import json
import os
import platform
import re
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Sequence

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "RESULTS.md"
QUESTIONS = ROOT / "tests" / "data" / "questions.jsonl"
LIBS = ("onnxruntime", "torch", "sentence-transformers", "transformers", "faiss-cpu", "bm25s", "jieba",
        "numpy",
        "streamlit")


def questions() -> list[tuple[str, list[str]]]:
    """(question, history) of the project's question set, in file order."""
    rows = [json.loads(line) for line in QUESTIONS.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [(r["question"], list(r.get("history") or [])) for r in rows]


def pct(values: Sequence[float]) -> tuple[float, float]:
    """p50 and p95 (nearest rank) of the values."""
    xs = sorted(values)
    return statistics.median(xs), xs[min(len(xs) - 1, int(round(0.95 * len(xs))) - 1)]


def load() -> str:
    return ", ".join(f"{x:.1f}" for x in os.getloadavg())


def machine() -> str:
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor() or "unknown CPU")
    versions = []
    for name in LIBS:
        try:
            versions.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            pass
    gib = round(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2**30)
    return (f"{len(os.sched_getaffinity(0))} CPUs ({cpu}), {gib} GiB, Python {platform.python_version()}, "
            f"{platform.system()} {platform.release()}; {', '.join(versions)}")


def rss_mb(pid: int | None = None) -> float:
    """Resident memory now (not the peak), from /proc."""
    status = Path(f"/proc/{pid or 'self'}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+)", status).group(1)) / 1024


def child(module: str, *args: str, timeout: float = 900, env: dict | None = None) -> dict:
    """`python -m module args…` in a fresh process (own imports, own memory); its last stdout line is JSON."""
    done = subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env=os.environ | {"HF_HUB_OFFLINE": "1"} | (env or {}))
    if done.returncode != 0:
        raise RuntimeError(f"{module} {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def write_section(title: str, body: str) -> None:
    """Replace the section `## {title}` of RESULTS.md (up to the next `## `), or append it."""
    text = RESULTS.read_text(encoding="utf-8") if RESULTS.exists() else "# Benchmark results\n"
    section = f"## {title}\n\n{body.strip()}\n"
    pattern = re.compile(rf"^## {re.escape(title)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(lambda _: section + "\n", text, count=1).rstrip() + "\n"
    else:
        text = text.rstrip() + "\n\n" + section
    RESULTS.write_text(text, encoding="utf-8")


def stamp() -> str:
    return dt.datetime.now().strftime("%Y-%m-%d %H:%M")
