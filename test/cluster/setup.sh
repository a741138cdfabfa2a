#!/usr/bin/env bash
# Makes this machine able to run the cluster tests: etcd from Debian, and the
# Kubernetes control plane plus kubectl built from the Go module proxy into a
# cache outside the repo. Idempotent: a second run does nothing but check.
# With --print-bin-dir, prints the directory of the binaries on stdout (cluster.ts uses it).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=versions.sh
source "$here/versions.sh"
# shellcheck source=gobuild.sh
source "$here/gobuild.sh"

if ! command -v etcd >/dev/null 2>&1; then
  echo "setup: installing etcd-server (Debian)" >&2
  if [ "$(id -u)" = 0 ]; then sudo=""; else sudo="sudo"; fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends etcd-server >/dev/null || {
    echo "setup: the cluster tier needs etcd: apt-get install etcd-server (Debian/Ubuntu), or run the fast tiers alone: npm run test:unit && npm run test:integration" >&2
    exit 1
  }
fi

print_bin_dir() { if [ "${1:-}" = --print-bin-dir ]; then echo "$K8S_BIN_DIR"; fi; }

missing=0
for b in $K8S_BINARIES; do [ -x "$K8S_BIN_DIR/$b" ] || missing=1; done
if [ "$missing" = 0 ]; then
  print_bin_dir "$@"
  exit 0
fi

if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then PATH="/usr/local/go/bin:$PATH"; fi
if ! command -v go >/dev/null 2>&1; then
  echo "setup: the cluster tier builds Kubernetes from source and needs Go >= 1.24 (not found on PATH or in /usr/local/go/bin)." >&2
  echo "setup: install Go (https://go.dev/dl), or run the fast tiers alone: npm run test:unit && npm run test:integration" >&2
  exit 1
fi
echo "setup: building Kubernetes $K8S_VERSION binaries into $K8S_BIN_DIR (cold: tens of minutes)" >&2
start=$(date +%s)
tmp="$K8S_BIN_DIR.tmp.$$"
rm -rf "$tmp" && mkdir -p "$tmp"
trap 'rm -rf "$tmp"' EXIT
pkgs=()
for b in $K8S_BINARIES; do pkgs+=("k8s.io/kubernetes/cmd/$b"); done
go_build_k8s "$tmp" "${pkgs[@]}"
mkdir -p "$(dirname "$K8S_BIN_DIR")"
rm -rf "$K8S_BIN_DIR"
mv "$tmp" "$K8S_BIN_DIR"
trap - EXIT
echo "setup: built in $(( $(date +%s) - start ))s" >&2
print_bin_dir "$@"
