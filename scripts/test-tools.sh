#!/usr/bin/env bash
# What the test suite needs beyond .venv: qemu-user, to run the int8 checks under an emulated CPU without VNNI
# (tests/test_int8_portability.py; they skip without it), and chromium, to render a run's report in the report test.
# Best effort: Debian's packages, as root; never fatal.
set -uo pipefail
if ! command -v qemu-x86_64 >/dev/null 2>&1 && [ "$(uname -m)" = "x86_64" ]; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "[setup] installing qemu-user (the emulated-CPU int8 tests)"
    (apt-get install -y -q qemu-user >/dev/null 2>&1 || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q qemu-user >/dev/null 2>&1; }) \
      || echo "[setup] qemu-user not installed: the emulated-CPU int8 tests will skip"
  else
    echo "[setup] qemu-user missing (apt-get install qemu-user): the emulated-CPU int8 tests will skip"
  fi
fi
# chromium, to render a run's report.html as a user sees it (tests/test_report.py; that test skips without it)
if ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "[setup] installing chromium (the headless report test)"
    (apt-get install -y -q chromium >/dev/null 2>&1 || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium >/dev/null 2>&1; }) \
      || echo "[setup] chromium not installed: the headless report test will skip"
  else
    echo "[setup] chromium missing (apt-get install chromium): the headless report test will skip"
  fi
fi
# which int8 kernels run here (onnxruntime picks them by these CPUID features)
.venv/bin/python -c "from qdrant_distill.inference.cpu import cpu_features; print('[setup] CPU:', cpu_features().describe())"
