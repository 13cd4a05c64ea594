#!/usr/bin/env bash
# `make pin-images`: replace every third-party image reference in deploy/ (compose.yaml, k8s/*.yaml, the
# Dockerfile's FROM) by the same tag pinned to the digest its registry serves now (`name:tag@sha256:...`), so a
# deployment runs exactly the image that was reviewed. Run it again to move the pins to a tag's newest digest.
# Our own image (twinmon:*) is built and pushed by you: name it by digest in deploy/k8s/ after pushing.
#
# Usage: pin-images.sh [FILE...]    (default: the files above)
#   PIN_REGISTRY=host:port   resolve every image from that registry instead (a mirror, or a test registry)
#   PIN_INSECURE=1           that registry speaks plain HTTP
# Exit 0: every reference pinned; 1: some could not be resolved (each is named; its file is left as it was).
set -euo pipefail

SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$SCRIPT_DIR/common.sh"
LOG_PREFIX=pin-images.sh
root=$(cd "$SCRIPT_DIR/../.." && pwd -P)
crane=$(bash "$SCRIPT_DIR/crane.sh")
files=("$@")
[[ ${#files[@]} -gt 0 ]] || files=("$root/deploy/compose.yaml" "$root"/deploy/k8s/*.yaml "$root/deploy/Dockerfile")
flags=()
[[ ${PIN_INSECURE:-0} == 1 ]] && flags=(--insecure)

failed=0
for file in "${files[@]}"; do
    while read -r ref; do
        tagged=${ref%@sha256:*}
        source_ref=$tagged
        if [[ -n ${PIN_REGISTRY:-} ]]; then
            first=${tagged%%/*}
            path=$tagged
            # A leading registry host (it has a dot or a port) is replaced; Docker Hub names keep their path.
            [[ $tagged == */* && ( $first == *.* || $first == *:* ) ]] && path=${tagged#*/}
            source_ref="$PIN_REGISTRY/$path"
        fi
        if digest=$("$crane" digest "${flags[@]}" "$source_ref" 2>/dev/null); then
            python3 - "$file" "$ref" "$tagged@$digest" <<'PY'
import re, sys
path, old, new = sys.argv[1:]
text = open(path).read()
text = re.sub(r"(?m)^(\s*(?:-\s+)?image:\s*|FROM\s+)" + re.escape(old) + r"(?=\s|$)", lambda m: m.group(1) + new, text)
open(path, "w").write(text)
PY
            log "$(basename "$file"): $tagged pinned to $digest"
        else
            log "$(basename "$file"): cannot resolve $source_ref (registry unreachable, or no such tag)"
            failed=1
        fi
    done < <(python3 "$SCRIPT_DIR/image_refs.py" "$file" | grep -v '^twinmon:' || true)
done
exit "$failed"
