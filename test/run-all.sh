#!/usr/bin/env bash
# `npm test`: type check, lint, build, then every tier in one node:test run, so there is one
# summary: unit, integration (local backend, real processes on loopback) and cluster (a real
# control plane on loopback, started here and stopped whatever happens).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

npm run --silent typecheck
npm run --silent lint
npm run --silent build
tsx=node_modules/.bin/tsx
trap '"$tsx" test/cluster/cluster.ts down' EXIT
"$tsx" test/cluster/cluster.ts up
node --import tsx --test --test-concurrency=1 test/unit/*.test.ts test/integration/*.test.ts test/cluster/*.test.ts
