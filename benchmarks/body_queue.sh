#!/bin/sh
# The body-student runs in order, one at a time (each resumable): wait for the mpnet labels, then A (20k cuts), B,
# then the table. Each run's training budget is what is left before DEADLINE (UTC) less room for what follows.
# Usage: nohup nice -n 10 sh benchmarks/body_queue.sh > benchmarks/cache/body-queue.log 2>&1 &
echo $$ > /tmp/body_queue.pid  # the shell itself (a nohup/nice wrapper pid is not it)
cd "$(dirname "$0")" || exit 1
export PYTHONPATH="$(cd .. && pwd)" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
PY=${PY:-/work/main/.venv/bin/python}
DEADLINE=$(date -u -d "${DEADLINE:-04:18}" +%s)
left() { echo $((DEADLINE - $(date +%s))); }
for pidfile in /tmp/labels.pid /tmp/body_baselines.pid; do
    if [ -f $pidfile ]; then while kill -0 "$(cat $pidfile)" 2>/dev/null; do sleep 30; done; fi
done
date; uptime
# A gets 45% of what is left after ~15 min of fixed costs (starts, evaluations, B's final measure)
A_BUDGET=$(( ($(left) - 900) * 45 / 100 )); [ "$A_BUDGET" -gt 1800 ] && A_BUDGET=1800
echo "A budget $A_BUDGET s"
$PY body_students.py run --setting A --name A-cuts20k --cuts 20000 --epochs 3 --eval-every-s 300 --budget-s "$A_BUDGET" \
    --lr 1e-4 --head-lr 1e-3 --batch 32 --doc-len 64 --cut-len 64 --save-to cache/students/A || exit 1
date; uptime
# B: what is left less ~12 min (its ridge start and holdout, the final document encoding, the table)
B_BUDGET=$(( $(left) - 720 )); [ "$B_BUDGET" -gt 2400 ] && B_BUDGET=2400
echo "B budget $B_BUDGET s"
$PY body_students.py run --setting B --name B-cuts20k --cuts 20000 --epochs 3 --budget-s "$B_BUDGET" --measure-from 99 \
    --lr 1e-4 --head-lr 1e-3 --batch 32 --doc-len 128 --doc-eval-len 256 --cut-len 64 --save-to cache/students/B || exit 1
date; uptime
$PY body_students.py table
date; uptime
