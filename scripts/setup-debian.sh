#!/usr/bin/env bash
# System packages cjepa needs on Debian 12.
#   bash scripts/setup-debian.sh          (= --dev) everything: what users need, plus what the tests and
#                                         benchmarks need (CI runs this)
#   bash scripts/setup-debian.sh --user   only what using cjepa needs: libtorch (the engine), OpenBLAS, oneDNN headers,
#                                         build tools for the addon, Fashion-MNIST (the built-in dataset)
# --dev adds PyTorch + torchvision from Python (parity tests, reference benchmarks) and the Gloo headers (c10d:
# data-parallel pretraining, --nproc; without them the addon builds without it and says so when asked).
# --print lists the packages of the chosen mode instead of installing them.
set -euo pipefail
MODE=dev PRINT=0
for a in "$@"; do
  case "$a" in
    --user) MODE=user ;;
    --dev) MODE=dev ;;
    --print) PRINT=1 ;;
    -h|--help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "setup-debian.sh: unknown option '$a' (expected --user, --dev or --print)" >&2; exit 2 ;;
  esac
done
USER_PKGS="build-essential python3 libopenblas0-pthread libtorch-dev libdnnl-dev dataset-fashion-mnist"
DEV_PKGS="python3-torch python3-torchvision libgloo-dev"
PKGS="$USER_PKGS"
if [ "$MODE" = dev ]; then PKGS="$PKGS $DEV_PKGS"; fi
if [ "$PRINT" = 1 ]; then echo "$PKGS"; exit 0; fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq $PKGS >/dev/null
