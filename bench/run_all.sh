#!/usr/bin/env bash
# Run every EARec-vs-peer comparison of bench/ and write bench/RESULTS.md.
#   bash bench/run_all.sh            # full run (~25-30 min on 2 cores, mostly RecBole training)
#   bash bench/run_all.sh --smoke    # tiny dry run of every script (~5 min), writes bench/out/*-smoke.json
# Env: PY (our interpreter, default: the project's .venv, else /work/venv, else python3),
#      PEER_VENV (RecBole venv, default bench/.peer-venv; created by bench/peer_env.sh if missing),
#      PEER_SCRIPT (default ../shared/peers/recbole_sasrec_peer.py), SKIP_ALIGN=1 to skip align_overhead.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
cd "$root"
if [ -z "${PY:-}" ]; then
  for c in "$root/.venv/bin/python" /work/venv/bin/python; do
    if [ -x "$c" ]; then PY="$c"; break; fi
  done
  PY="${PY:-python3}"
fi
smoke=()
suffix=""
if [ "${1:-}" = "--smoke" ]; then smoke=(--smoke); suffix="-smoke"; fi

export PEER_VENV="${PEER_VENV:-$here/.peer-venv}"
bash "$here/peer_env.sh" "$PEER_VENV"
mkdir -p "$here/out"
{
  echo "date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
  echo "uptime: $(uptime)"
  echo "python: $PY"
} > "$here/out/run_all${suffix}.txt"

"$PY" bench/sasrec_vs_recbole.py "${smoke[@]}"
"$PY" bench/embed_vs_loop.py "${smoke[@]}"
if [ "${SKIP_ALIGN:-0}" != "1" ]; then
  "$PY" bench/align_overhead.py "${smoke[@]}"
fi
echo "end: $(date -u '+%Y-%m-%d %H:%M:%S UTC'), uptime: $(uptime)" >> "$here/out/run_all${suffix}.txt"
"$PY" bench/report.py "${smoke[@]}"
