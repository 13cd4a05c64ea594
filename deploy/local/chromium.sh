#!/usr/bin/env bash
# Debian's chromium for the feed's browser test (Playwright drives it by executable_path; Playwright's own
# browser download is not used). Installs the package when missing; prints the browser's path on stdout.
#
# Usage: chromium.sh
set -euo pipefail

SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$SCRIPT_DIR/common.sh"
LOG_PREFIX=chromium.sh

if ! command -v chromium >/dev/null; then
    runner=()
    if [[ $EUID -ne 0 ]]; then
        command -v sudo >/dev/null || die "need root or sudo to apt-get install chromium"
        runner=(sudo)
    fi
    log "installing Debian's chromium with apt-get (once)"
    "${runner[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium >&2 \
        || { "${runner[@]}" apt-get update -q >&2 \
             && "${runner[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >&2; } \
        || die "apt-get install chromium failed"
fi
command -v chromium
