#!/usr/bin/env bash
# npm run test:e2e — the installed extension in a real VS Code (code-server) driven by headless chromium.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
bash scripts/e2e/setup.sh
npm run -s package >/dev/null
exec "$ROOT/.e2e/node/bin/node" tests/e2e/extension.e2e.mjs "$@"
