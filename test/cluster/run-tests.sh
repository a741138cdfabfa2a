#!/usr/bin/env bash
# npm run test:cluster: starts the loopback cluster (building the binaries on first use),
# runs the cluster tests, and stops the cluster whatever happened.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

tsx=node_modules/.bin/tsx
trap '"$tsx" test/cluster/cluster.ts down' EXIT
# The node agent runs the built entry points (images.json), so they must be current.
node_modules/.bin/tsc -p worker-image
"$tsx" test/cluster/cluster.ts up
node --import tsx --test --test-concurrency=1 test/cluster/*.test.ts
