#!/usr/bin/env bash
# Run every EARec-vs-peer comparison of bench/ and write bench/RESULTS.md (bench/README.md: what each does).
#   bash bench/run_all.sh            # full run (~50-60 min on 2 cores: RecBole training, full vs sampled
#                                    #   softmax on ml-100k ~15 min, the 1M x 1M scale run ~15 min)
#   bash bench/run_all.sh --smoke    # tiny dry run of every script (~8 min), writes bench/out/*-smoke.json
# Env: PY (our interpreter, default: the project's .venv, else /work/venv, else python3),
#      PEER_VENV (RecBole venv, default bench/.peer-venv; created by bench/peer_env.sh if missing),
#      PEER_SCRIPT (default ../shared/peers/recbole_sasrec_peer.py), SKIP_ALIGN=1 to skip align_overhead,
#      SKIP_SCALE=1 to skip scale.py and embed_scale.py (EMBED_SCALE_ARGS: e.g. --sizes 10000 100000),
#      SASREC_ARGS / EMBED_ARGS / ALIGN_ARGS / SAMPLED_ARGS / SCALE_ARGS: extra arguments for each script
#      (e.g. EMBED_ARGS=--no-full-loop, SCALE_ARGS='--steps 100 --eval-users 1000').
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

echo "args: SASREC_ARGS='${SASREC_ARGS:-}' EMBED_ARGS='${EMBED_ARGS:-}' ALIGN_ARGS='${ALIGN_ARGS:-}'" \
     "SAMPLED_ARGS='${SAMPLED_ARGS:-}' SCALE_ARGS='${SCALE_ARGS:-}'" >> "$here/out/run_all${suffix}.txt"
# shellcheck disable=SC2086  # the *_ARGS are word lists on purpose
"$PY" bench/sasrec_vs_recbole.py "${smoke[@]}" ${SASREC_ARGS:-}
"$PY" bench/eval_speed.py "${smoke[@]}"
"$PY" bench/eval_speed.py --omp-passive "${smoke[@]}"
"$PY" bench/eval_speed.py --threads 1 "${smoke[@]}"
# shellcheck disable=SC2086
"$PY" bench/embed_vs_loop.py "${smoke[@]}" ${EMBED_ARGS:-}
if [ "${SKIP_ALIGN:-0}" != "1" ]; then
  # shellcheck disable=SC2086
  "$PY" bench/align_overhead.py "${smoke[@]}" ${ALIGN_ARGS:-}
fi
# shellcheck disable=SC2086
"$PY" bench/sampled_vs_full.py "${smoke[@]}" ${SAMPLED_ARGS:-}
"$PY" bench/profile_sasrec.py "${smoke[@]}"
if [ "${SKIP_SCALE:-0}" != "1" ]; then
  # shellcheck disable=SC2086
  "$PY" bench/scale.py "${smoke[@]}" ${SCALE_ARGS:-}
  # shellcheck disable=SC2086
  "$PY" bench/embed_scale.py "${smoke[@]}" ${EMBED_SCALE_ARGS:-}
fi
echo "end: $(date -u '+%Y-%m-%d %H:%M:%S UTC'), uptime: $(uptime)" >> "$here/out/run_all${suffix}.txt"
"$PY" bench/report.py "${smoke[@]}"
