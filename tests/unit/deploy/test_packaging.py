"""The project's own packaging installs without a warning: `make venv` prints nothing a newcomer must wonder about."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.support.ops import ROOT

WARNING = re.compile(r"^\S+:\d+: \w+: ")
BUILD = """
import sys
import setuptools.build_meta as backend
hook = getattr(backend, sys.argv[1])
print(hook(sys.argv[2]))
"""


def _build(hook: str, out: Path) -> subprocess.CompletedProcess[str]:
    # -W always: a warning raised once anywhere in setuptools is printed, not swallowed by the default filters.
    return subprocess.run([sys.executable, "-W", "always", "-c", BUILD, hook, str(out)], cwd=ROOT, capture_output=True,
                          text=True, timeout=300, check=False)


def test_the_editable_install_and_the_wheel_build_without_warnings(tmp_path: Path) -> None:
    for hook in ("build_editable", "build_wheel"):
        out = tmp_path / hook
        out.mkdir()
        done = _build(hook, out)
        assert done.returncode == 0, done.stderr[-3000:]
        # A warning prints as "file:line: Category: message"; setuptools' own banners are framed by "!!".
        noisy = [line for line in done.stderr.splitlines()
                 if WARNING.match(line) or line.strip() == "!!" or "deprecat" in line.lower()]
        assert noisy == [], f"{hook}:\n" + "\n".join(noisy)
        assert (out / done.stdout.split()[-1]).is_file()
