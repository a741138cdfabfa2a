#!/usr/bin/env bash
# The browser tier's one system package: Debian's Chromium, driven by playwright-core (an npm
# dev dependency; no browser download). Quick when it is already there.
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then
  echo "chromium: $(chromium --version 2>/dev/null || echo present)"
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends chromium >/dev/null
echo "chromium: $(chromium --version 2>/dev/null)"
