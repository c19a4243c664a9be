#!/usr/bin/env bash
# Make Debian's Chromium available for the browser test (Playwright drives /usr/bin/chromium; it never
# downloads a browser here). Installs it only when missing and running as root; otherwise says why not.
set -euo pipefail
chromium_bin=/usr/bin/chromium
if [ -x "$chromium_bin" ]; then
    echo "ensure_chromium: $chromium_bin present ($("$chromium_bin" --version 2>/dev/null || echo 'version unknown'))"
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "ensure_chromium: $chromium_bin missing and not root; run: sudo apt-get install -y chromium" >&2
    exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "ensure_chromium: $chromium_bin missing and apt-get not found; install Chromium by hand" >&2
    exit 1
fi
echo "ensure_chromium: installing Debian's chromium (apt-get)"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends chromium >/dev/null
echo "ensure_chromium: installed $("$chromium_bin" --version)"
