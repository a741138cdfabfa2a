#!/usr/bin/env bash
# npm run test:node: starts the node tier (building what is missing), runs its tests, and
# takes it down whatever happened; `down` fails if the host is not as it was before `up`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../../.."

tsx=node_modules/.bin/tsx
trap '"$tsx" test/cluster/node/node.ts down' EXIT
"$tsx" test/cluster/node/node.ts up
node --import tsx --test --test-concurrency=1 test/cluster/node/*.test.ts
