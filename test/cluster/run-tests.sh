#!/usr/bin/env bash
# npm run test:cluster: starts the loopback cluster (building the binaries on first use),
# runs the cluster tests (or the test files given as arguments), and stops the cluster whatever
# happened.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

tsx=node_modules/.bin/tsx
trap '"$tsx" test/cluster/cluster.ts down' EXIT
# The node agent runs the built entry points (images.json), so they must be current.
node_modules/.bin/tsc -p worker-image
"$tsx" test/cluster/cluster.ts up
rm -rf .artifacts/cluster-logs
[ "$#" -gt 0 ] || set -- test/cluster/*.test.ts
node --import tsx --test --test-concurrency=1 "$@" || {
  status=$?
  # The replicas' warnings and errors, per test namespace: what a failure needs first.
  for log in .artifacts/cluster-logs/*/*.log; do
    [ -e "$log" ] || continue
    lines=$(grep -E '"level":"(warn|error|fatal)"' "$log" | tail -n 40 || true)
    [ -n "$lines" ] && printf '== %s\n%s\n' "$log" "$lines"
  done
  exit "$status"
}
