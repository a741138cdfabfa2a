# Sourced by setup.sh and node/setup.sh (after versions.sh): go_build_k8s OUT PKG... builds
# Kubernetes commands from the wrapper module k8s/ into OUT, stamped with $K8S_VERSION.
# -mod=readonly: the committed go.sum is the whole list of what may be downloaded; a build
# that wants more fails instead of widening it silently. -buildvcs=false: the binaries are
# stamped with the Kubernetes release, not with this repository's commit.
go_build_k8s() {
  local out="$1"; shift
  if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then PATH="/usr/local/go/bin:$PATH"; fi
  local minor="${K8S_VERSION#v1.}"; minor="${minor%%.*}"
  local ldflags="-s -w" pkg
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
  done
  (cd "$(dirname "${BASH_SOURCE[0]}")/k8s" && CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS="-mod=readonly -buildvcs=false" \
    go build -trimpath -ldflags "$ldflags" -o "$out/" "$@")
}
