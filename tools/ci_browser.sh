#!/usr/bin/env bash
# Headless Chromium and its WebDriver from Debian's packages, for the browser tests of the
# HTML pages and the app (tests/test_report.py, tests/test_webapp.py). Installs them with
# apt-get where they are missing and this is a root shell on a system with apt-get;
# otherwise it only says what to install
# (the browser tests then skip, except under CI=true, where they fail).
set -euo pipefail
if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then
    exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing chromium and chromium-driver (Debian packages) for the browser tests"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null
    exit 0
fi
echo "note: the browser tests need chromium and chromedriver on PATH" \
     "(Debian/Ubuntu: sudo apt-get install chromium chromium-driver); they will be skipped"
