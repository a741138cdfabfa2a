# Sourced by setup.sh: one place for the pinned release and the cache path.
# The release must match the replace lines in k8s/go.mod.
K8S_VERSION=v1.33.13
K8S_BINARIES="kube-apiserver kube-controller-manager kube-scheduler kubectl"
K8S_BIN_DIR="${WARMPOOL_K8S_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/warmpool/k8s-$K8S_VERSION}"

# The node tier (test/cluster/node/): the kubelet and kube-proxy of the same release, and
# what its stand-in for the node:24-slim base image is made of (npm registry packages).
K8S_NODE_BINARIES="kubelet kube-proxy"
# kube-router (only its NetworkPolicy controller runs); must match node/netpol/go.mod.
NETPOL_VERSION=v2.1.0
NODE_TIER_CACHE="${WARMPOOL_NODE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/warmpool/node-tier}"
NODE_BASE_NODE_VERSION=24.22.3
NODE_BASE_NPM_VERSION=11.21.2
