#!/usr/bin/env bash
# System packages cjepa needs on Debian 12: libtorch (the engine), PyTorch + torchvision (parity
# tests and the reference benchmarks), Gloo headers (c10d), Fashion-MNIST (built-in dataset).
set -euo pipefail
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq \
  build-essential python3 libopenblas0-pthread libtorch-dev libgloo-dev python3-torch python3-torchvision dataset-fashion-mnist >/dev/null
