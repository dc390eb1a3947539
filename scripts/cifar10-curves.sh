#!/usr/bin/env bash
# The first 2,000 steps of each method on CIFAR-10 (CPU preset, batch 64), for the loss curves in
# docs/results/cifar10-first-2000-steps/. Usage: bash scripts/cifar10-curves.sh [steps] [batch]
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS=${1:-2000}; BATCH=${2:-64}
for m in ijepa cjepa vicreg; do
  node dist/src/cli/main.js pretrain --config cifar10-cpu --method "$m" --steps "$STEPS" --batch "$BATCH" \
    --out "runs/curves-$m" --monitor-every 250 --checkpoint-every 500 --log-every 10
done
