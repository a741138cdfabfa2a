#!/usr/bin/env bash
# Makes this machine able to run the node tier: what the loopback cluster needs (../setup.sh),
# Debian's builder, runtime, CNI plugins and packet filter tools, and kubelet, kube-proxy and
# the NetworkPolicy controller built from Go modules into a cache outside the repo.
# Idempotent: a second run only checks. With --print-bin-dir, prints the directory of the
# node tier's binaries on stdout (node.ts uses it).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=../versions.sh
source "$here/../versions.sh"
# shellcheck source=../gobuild.sh
source "$here/../gobuild.sh"

bash "$here/../setup.sh" >&2

packages="buildah containerd runc containernetworking-plugins debootstrap iptables ipset iproute2 kmod"
missing_pkgs=""
for p in $packages; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing_pkgs+=" $p"; done
if [ -n "$missing_pkgs" ]; then
  echo "setup: installing$missing_pkgs (Debian)" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing_pkgs >/dev/null
fi

bin="$NODE_TIER_CACHE/bin-$K8S_VERSION-$NETPOL_VERSION"
need=0
for b in $K8S_NODE_BINARIES kube-router; do [ -x "$bin/$b" ] || need=1; done
if [ "$need" = 1 ]; then
  echo "setup: building $K8S_NODE_BINARIES ($K8S_VERSION) and kube-router ($NETPOL_VERSION) into $bin" >&2
  start=$(date +%s)
  tmp="$bin.tmp.$$"
  rm -rf "$tmp" && mkdir -p "$tmp"
  trap 'rm -rf "$tmp"' EXIT
  pkgs=()
  for b in $K8S_NODE_BINARIES; do pkgs+=("k8s.io/kubernetes/cmd/$b"); done
  go_build_k8s "$tmp" "${pkgs[@]}"
  (cd "$here/netpol" && CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS="-mod=readonly -buildvcs=false" \
    go build -trimpath -ldflags "-s -w" -o "$tmp/kube-router" github.com/cloudnativelabs/kube-router/v2/cmd/kube-router)
  rm -rf "$bin"
  mv "$tmp" "$bin"
  trap - EXIT
  echo "setup: built in $(( $(date +%s) - start ))s" >&2
fi
if [ "${1:-}" = --print-bin-dir ]; then echo "$bin"; fi
