"""Offline check of installed packages against a fetched vulnerability database (``make audit``'s second half).

``pip-audit`` is the real audit, but it needs a vulnerability service: PyPI's per-version JSON API or OSV. Where
neither answers (see ``make audit``), this checks ``pip freeze`` output against the ``insecure_full.json`` of the
``safety-db`` package from PyPI: PyUp's free database, whose last release is dated 2021-07-17. So it catches only
advisories published by then; it is a floor, not a replacement, and ``make audit`` says so when it is all there is.

    python -m streams.audit --db .venv-audit/.../safety_db/insecure_full.json --freeze requirements.txt
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version


@dataclass(frozen=True, slots=True)
class Finding:
    package: str
    version: str
    advisory_id: str
    cve: str | None
    affected: str
    advisory: str


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def parse_freeze(lines: Iterable[str]) -> dict[str, str]:
    """``name==version`` lines (pip freeze) as {normalised name: version}; editable and URL lines are skipped."""
    out: dict[str, str] = {}
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if "==" not in line or line.startswith("-"):
            continue
        name, version = line.split("==", 1)
        out[normalise(name.split("[", 1)[0])] = version.split(";", 1)[0].strip()
    return out


def findings(installed: Mapping[str, str], db: Mapping[str, Any]) -> list[Finding]:
    by_name = {normalise(k): v for k, v in db.items() if not k.startswith("$")}
    found: list[Finding] = []
    for name, version in sorted(installed.items()):
        try:
            v = Version(version)
        except InvalidVersion:
            continue
        for adv in by_name.get(name, []):
            for spec in adv.get("specs", []):
                try:
                    affected = SpecifierSet(spec)
                except InvalidSpecifier:
                    continue
                if affected.contains(v, prereleases=True):
                    found.append(Finding(name, version, str(adv.get("id")), adv.get("cve"), spec,
                                         str(adv.get("advisory", ""))[:300]))
                    break
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path, required=True, help="safety-db's insecure_full.json")
    parser.add_argument("--freeze", type=Path, required=True, help="pip freeze output of the environment to check")
    args = parser.parse_args(argv)
    db = json.loads(args.db.read_text())
    installed = parse_freeze(args.freeze.read_text().splitlines())
    meta = db.get("$meta", {})
    result = findings(installed, db)
    print(f"offline check: {len(installed)} packages against safety-db ({len(db) - 1} packages with advisories,"
          f" database timestamp {meta.get('timestamp')})")
    for f in result:
        print(f"VULNERABLE {f.package}=={f.version} ({f.affected}) {f.advisory_id} {f.cve or ''}: {f.advisory}")
    if not result:
        print("offline check: no known vulnerabilities in that database")
    return 1 if result else 0


if __name__ == "__main__":
    sys.exit(main())
