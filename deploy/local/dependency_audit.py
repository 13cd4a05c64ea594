"""Offline check of installed packages against a fetched vulnerability database (``make audit``'s second half).

``pip-audit`` is the real audit, but it needs a vulnerability service: PyPI's per-version JSON API or OSV. Where
neither answers (see ``make audit``), this checks ``pip freeze`` output against the ``insecure_full.json`` of the
``safety-db`` package from PyPI: PyUp's free database, whose last release is dated 2021-07-17. So it catches only
advisories published by then; it is a floor, not a replacement, and ``make audit`` says so when it is all there is.

    python deploy/local/dependency_audit.py --db .venv-audit/.../safety_db/insecure_full.json --freeze requirements.txt

``--lock requirements/dev.lock`` checks the lock against PyPI's project pages (``/pypi/<name>/json``, which this
machine reaches where the per-version pages pip-audit needs do not): every locked hash must be a file PyPI
publishes for that version, no pin may be yanked, and a pin that is the latest release is checked against the
advisories PyPI lists for it. PyPI lists advisories only for a project's latest release, so older pins are
reported as not checked by name.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
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


@dataclass(frozen=True, slots=True)
class Pin:
    version: str
    hashes: frozenset[str]


def parse_lock(text: str) -> dict[str, Pin]:
    """A hash-pinned requirements file (``name==version \\ --hash=sha256:...``) as {normalised name: Pin}."""
    pins: dict[str, Pin] = {}
    for entry in re.sub(r"\\\n", " ", text).splitlines():
        entry = entry.split("#", 1)[0].strip()
        head, *options = entry.split(" --hash=")
        if "==" not in head or head.startswith("-"):
            continue
        name, version = head.split("==", 1)
        pins[normalise(name.split("[", 1)[0])] = Pin(
            version.split(";", 1)[0].strip(), frozenset(o.strip().removeprefix("sha256:") for o in options))
    return pins


@dataclass
class LockReport:
    vulnerable: list[str]  # "name==version ID (fixed in ...)"
    yanked: list[str]
    unknown_hashes: list[str]  # pins with a hash PyPI does not publish for that version
    unchecked: list[str]  # pins whose advisories PyPI's project page does not give (not the latest release)
    missing: list[str]  # pins whose version PyPI does not publish
    unreachable: list[str]  # pins whose project page did not arrive (checked by nothing here)

    @property
    def failed(self) -> bool:
        return bool(self.vulnerable or self.yanked or self.unknown_hashes or self.missing)


def check_lock(pins: Mapping[str, Pin], projects: Mapping[str, Mapping[str, Any] | None]) -> LockReport:
    """Judge ``pins`` by PyPI's project JSON of each name (None: PyPI did not answer for it)."""
    report = LockReport([], [], [], [], [], [])
    for name, pin in sorted(pins.items()):
        project = projects.get(name)
        if project is None:
            report.unreachable.append(f"{name}=={pin.version}")
            continue
        files = project.get("releases", {}).get(pin.version)
        if not files:
            report.missing.append(f"{name}=={pin.version}")
            continue
        published = {f["digests"]["sha256"] for f in files}
        if pin.hashes - published or not pin.hashes:
            report.unknown_hashes.append(f"{name}=={pin.version}")
        if all(f.get("yanked") for f in files):
            reason = next((f.get("yanked_reason") for f in files if f.get("yanked_reason")), "") or "no reason given"
            report.yanked.append(f"{name}=={pin.version} ({reason})")
        if project["info"]["version"] != pin.version:
            report.unchecked.append(f"{name}=={pin.version} (latest {project['info']['version']})")
            continue
        for vuln in project.get("vulnerabilities") or []:
            if vuln.get("withdrawn"):
                continue
            fixed = ", ".join(vuln.get("fixed_in") or []) or "no fix listed"
            report.vulnerable.append(f"{name}=={pin.version} {vuln.get('id')} (fixed in {fixed})")
    return report


def fetch_projects(names: Iterable[str], index: str = "https://pypi.org/pypi",
                   timeout_s: float = 20.0) -> dict[str, Mapping[str, Any] | None]:
    import urllib.request
    from concurrent.futures import ThreadPoolExecutor

    def one(name: str) -> Mapping[str, Any] | None:
        for _ in range(3):
            try:
                with urllib.request.urlopen(f"{index}/{name}/json", timeout=timeout_s) as r:  # noqa: S310 (https)
                    data: Mapping[str, Any] = json.load(r)
                    return data
            except (OSError, ValueError):
                continue
        return None

    names = sorted(names)
    with ThreadPoolExecutor(8) as pool:
        return dict(zip(names, pool.map(one, names), strict=True))


def lock_main(lock: Path) -> int:
    pins = parse_lock(lock.read_text())
    report = check_lock(pins, fetch_projects(pins))
    print(f"lock check: {len(pins)} pins of {lock} against PyPI's project pages")
    for title, items in (("VULNERABLE", report.vulnerable), ("YANKED", report.yanked),
                         ("HASH NOT PUBLISHED BY PYPI", report.unknown_hashes),
                         ("VERSION NOT ON PYPI", report.missing)):
        for item in items:
            print(f"{title} {item}")
    answered = len(pins) - len(report.unreachable)
    checked = answered - len(report.unchecked) - len(report.missing)
    print(f"lock check: hashes and yanked status of {answered} pins checked; advisories of {checked} pins (the "
          f"latest releases) checked, of {len(report.unchecked)} not (PyPI lists advisories for a project's latest "
          f"release only); {len(report.unreachable)} project pages did not arrive")
    for item in report.unchecked:
        print(f"  advisories not checked: {item}")
    for item in report.unreachable:
        print(f"  nothing checked (PyPI did not answer): {item}")
    return 1 if report.failed else (3 if report.unchecked or report.unreachable else 0)


def offline_main(db_file: Path, freeze_file: Path) -> int:
    db = json.loads(db_file.read_text())
    installed = parse_freeze(freeze_file.read_text().splitlines())
    meta = db.get("$meta", {})
    result = findings(installed, db)
    print(f"offline check: {len(installed)} packages against safety-db ({len(db) - 1} packages with advisories,"
          f" database timestamp {meta.get('timestamp')})")
    for f in result:
        print(f"VULNERABLE {f.package}=={f.version} ({f.affected}) {f.advisory_id} {f.cve or ''}: {f.advisory}")
    if not result:
        print("offline check: no known vulnerabilities in that database")
    return 1 if result else 0


_FILE = click.Path(exists=True, dir_okay=False, path_type=Path)


@click.command(help=f"{(__doc__ or '').splitlines()[0]}\n\nExit 0: nothing found; 1: a finding; 3 (--lock): "
                    "incomplete.", context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--db", "db_file", type=_FILE, default=None, help="safety-db's insecure_full.json.")
@click.option("--freeze", "freeze_file", type=_FILE, default=None,
              help="pip freeze output of the environment to check.")
@click.option("--lock", type=_FILE, default=None, help="A hash-pinned lock to check against PyPI's project pages.")
def main(db_file: Path | None, freeze_file: Path | None, lock: Path | None) -> None:
    if lock is not None:
        sys.exit(lock_main(lock))
    if db_file is None or freeze_file is None:
        raise click.UsageError("give --lock, or both --db and --freeze")
    sys.exit(offline_main(db_file, freeze_file))


if __name__ == "__main__":
    main()
