#!/usr/bin/env bash
# `make audit` (and CI): the supply chain of the packages installed in .venv (runtime and dev).
#
# First the lock (requirements/dev.lock, what `make venv` installs) against PyPI's project pages: every hash
# published by PyPI for that version, nothing yanked, and PyPI's advisories for the pins that are the latest
# release (deploy/local/dependency_audit.py --lock). Then pip-audit, for advisories of every version.
# pip-audit runs from its own tool environment (.venv-audit) so that its dependencies are not audited as ours,
# over `pip freeze` of .venv (exact pins, so --no-deps --disable-pip), with --strict: a package it could not
# look up fails the audit rather than passing silently. It needs a vulnerability service: PyPI's per-version
# JSON API (default) or OSV (api.osv.dev). Where neither answers, it says so, and the offline check against
# safety-db (a database fetched from PyPI, last released 2021-07-17) runs as a floor. Exit codes:
#   0  pip-audit audited every package and found nothing; the lock check passed
#   1  a known vulnerability (any check), a yanked pin, or a locked hash PyPI does not publish
#   3  incomplete: pip-audit could not audit (no vulnerability service reachable) and the other checks found
#      nothing; the packages whose advisories nobody checked are listed by name
set -uo pipefail
here="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$here"
VENV=${VENV:-.venv}
AUDIT_VENV=${AUDIT_VENV:-.venv-audit}
out=.twinmon/audit
mkdir -p "$out"

if [[ ! -x "$AUDIT_VENV/bin/pip-audit" ]]; then
  python3 -m venv "$AUDIT_VENV"
  "$AUDIT_VENV/bin/pip" install --quiet pip-audit==2.10.1 safety-db==2021.7.17 || exit 2
fi
echo "--- requirements/dev.lock against PyPI's project pages"
"$VENV/bin/python" deploy/local/dependency_audit.py --lock requirements/dev.lock
lock_rc=$?
[[ $lock_rc -eq 1 ]] && { echo "audit: FAILED - see the lines above"; exit 1; }
echo "--- container images in deploy/ pinned by digest"
unpinned=$(python3 deploy/local/image_refs.py deploy/compose.yaml deploy/k8s/*.yaml deploy/Dockerfile \
           | grep -v -e '@sha256:' -e '^twinmon:' | sort -u || true)
if [[ -n $unpinned ]]; then
  echo "images NOT pinned by digest (make pin-images needs their registries): $(echo "$unpinned" | tr '\n' ' ')"
else
  echo "every third-party image is pinned by digest"
fi
"$VENV/bin/pip" freeze --exclude-editable > "$out/requirements.txt"
echo "auditing $(wc -l < "$out/requirements.txt") packages installed in $VENV ($out/requirements.txt)"

audited=0
for service in pypi osv; do
  echo "--- pip-audit --vulnerability-service $service"
  "$AUDIT_VENV/bin/pip-audit" -r "$out/requirements.txt" --no-deps --disable-pip --strict \
      --progress-spinner off --vulnerability-service "$service" > "$out/pip-audit-$service.txt" 2>&1
  rc=$?
  grep -v -e "encouraged to fully hash" -e "pip-compile" "$out/pip-audit-$service.txt" | tail -n 1
  if [[ $rc -eq 0 ]]; then audited=1; break; fi
  if grep -q -e "^Name .*Version .*ID" -e "Found [0-9]* known vulnerabilit" "$out/pip-audit-$service.txt"; then
    echo "pip-audit found known vulnerabilities (full report: $out/pip-audit-$service.txt)"; exit 1
  fi
  echo "pip-audit could not audit with $service (exit $rc; full output: $out/pip-audit-$service.txt)"
done

echo "--- offline check against safety-db"
# (safety_db's own __init__ opens a relative path, so the file is located without importing it)
db="$("$AUDIT_VENV/bin/python" -c 'import importlib.util as u; print(u.find_spec("safety_db").submodule_search_locations[0])')/insecure_full.json"
"$VENV/bin/python" deploy/local/dependency_audit.py --db "$db" --freeze "$out/requirements.txt" || exit 1

if [[ $audited -eq 1 && -z $unpinned ]]; then echo "audit: pip-audit found no known vulnerabilities"; exit 0; fi
if [[ $audited -eq 1 ]]; then echo "audit: INCOMPLETE - no known vulnerabilities; some images are not pinned"; exit 3; fi
if [[ $lock_rc -eq 0 && -z $unpinned ]]; then
  echo "audit: no vulnerability service answered pip-audit, but every pin is a latest release and PyPI lists no"
  echo "advisory for any of them; older advisories checked against the 2021 offline database only"
  exit 0
fi
echo "audit: INCOMPLETE - no vulnerability service answered pip-audit; the pins listed as 'not checked' above"
echo "were checked only against the 2021 offline database"
exit 3
