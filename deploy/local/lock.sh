#!/usr/bin/env bash
# `make lock`: resolve pyproject.toml's dependencies into requirements/runtime.lock (the image) and
# requirements/dev.lock (`make venv`), every file pinned with its sha256 hashes, for CPython 3.11 on x86_64 Linux.
# Versions already in a lock are kept unless pyproject.toml no longer allows them (uv prefers the existing pins);
# UPGRADE=1 moves everything to the newest allowed. uv runs from its own tool environment (.venv-lock).
set -euo pipefail
cd "$(dirname "$0")/../.."
LOCK_VENV=${LOCK_VENV:-.venv-lock}
if [[ ! -x $LOCK_VENV/bin/uv ]]; then
  python3 -m venv "$LOCK_VENV"
  "$LOCK_VENV/bin/pip" install --quiet uv==0.13.9
fi
upgrade=()
[[ ${UPGRADE:-0} == 1 ]] && upgrade=(--upgrade)
for lock in runtime dev; do
  extra=()
  [[ $lock == dev ]] && extra=(--extra dev)
  "$LOCK_VENV/bin/uv" pip compile --quiet pyproject.toml requirements/build.in "${extra[@]}" "${upgrade[@]}" \
      --generate-hashes --python-version 3.11 --python-platform x86_64-manylinux_2_28 \
      -o "requirements/$lock.lock"
  echo "requirements/$lock.lock: $(grep -c '==' "requirements/$lock.lock") packages"
done
