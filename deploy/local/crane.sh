#!/usr/bin/env bash
# go-containerregistry's crane (a registry client, and `crane registry serve`, a real OCI registry), built from
# the Go module proxy once into ~/.cache/twinmon. Prints crane's path on stdout.
#
# Usage: crane.sh
set -euo pipefail

SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$SCRIPT_DIR/common.sh"
LOG_PREFIX=crane.sh
VERSION=v0.22.1
bin=${XDG_CACHE_HOME:-$HOME/.cache}/twinmon/crane-$VERSION/crane

if [[ ! -x $bin ]]; then
    command -v go >/dev/null || die "needs Go (https://go.dev/dl/) to build crane $VERSION"
    log "building crane $VERSION from the Go module proxy (once)"
    GOBIN=$(abs_dir "$(dirname "$bin")") GOFLAGS=-mod=mod \
        go install "github.com/google/go-containerregistry/cmd/crane@$VERSION" >&2 \
        || die "go install crane failed"
fi
echo "$bin"
