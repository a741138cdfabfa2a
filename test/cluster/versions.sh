# Sourced by setup.sh: one place for the pinned release and the cache path.
# The release must match the replace lines in k8s/go.mod.
K8S_VERSION=v1.33.13
K8S_BINARIES="kube-apiserver kube-controller-manager kube-scheduler kubectl"
K8S_BIN_DIR="${WARMPOOL_K8S_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/warmpool/k8s-$K8S_VERSION}"
