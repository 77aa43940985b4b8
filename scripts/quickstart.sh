#!/usr/bin/env bash
# Set up, then run every stage on the shipped default (MovieLens-100k + SmolLM2-135M-Instruct).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/earec run "$@"
