#!/usr/bin/env bash
# Create the separate venv for the RecBole 1.2.1 SASRec peer, exactly as
# shared/peers/recbole-sasrec.md describes (offline apart from PyPI):
#   torch==2.13.0 (the local CPU wheel; plain `torch` would pull a CUDA build),
#   then "numpy<2" recbole==1.2.1.
# It is kept apart from the project's venv because recbole pins an old stack
# (ray 2.6.3 etc.).  Usage:  bash bench/peer_env.sh [VENV_DIR]
# Default VENV_DIR: bench/.peer-venv (git-ignored); PEER_VENV overrides too.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="${1:-${PEER_VENV:-$here/.peer-venv}}"
python="${PYTHON:-python3}"

if [ -x "$venv/bin/python" ] && "$venv/bin/python" - <<'PY' 2>/dev/null
import importlib.metadata as md, sys
ok = md.version("recbole") == "1.2.1" and md.version("torch").startswith("2.13.0") \
     and int(md.version("numpy").split(".")[0]) < 2
sys.exit(0 if ok else 1)
PY
then
  echo "peer venv ready: $venv"
  exit 0
fi

"$python" -m venv "$venv"
"$venv/bin/pip" install --quiet torch==2.13.0
"$venv/bin/pip" install --quiet "numpy<2" recbole==1.2.1
"$venv/bin/python" - <<'PY'
import importlib.metadata as md
for p in ("torch", "numpy", "pandas", "scipy", "recbole", "ray", "setuptools"):
    try:
        print(f"{p}=={md.version(p)}")
    except md.PackageNotFoundError:
        print(f"{p}: not installed")
PY
echo "peer venv ready: $venv"
