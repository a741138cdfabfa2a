#!/usr/bin/env bash
# `npm test`: the fast tiers first, stopping at their first failure (type check, lint, build,
# unit, integration, the status page in headless Chromium: about 5 minutes), then the cluster tier on a real control plane on loopback,
# started here and stopped whatever happens. Nothing is skipped: without Go or etcd the cluster
# tier fails with what to install (test/cluster/setup.sh says it).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

npm run --silent typecheck
npm run --silent lint
npm run --silent build
node --import tsx --test --test-concurrency=1 test/unit/*.test.ts test/integration/*.test.ts test/browser/*.test.ts
bash test/cluster/run-tests.sh
