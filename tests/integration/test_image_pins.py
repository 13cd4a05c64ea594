"""`make pin-images` against a real OCI registry (go-containerregistry's, on loopback): every third-party image
reference in deploy/ becomes ``name:tag@sha256:<the digest the registry serves>``."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "deploy" / "local"))
from image_refs import refs  # noqa: E402


@pytest.fixture(scope="module")
def crane() -> str:
    return subprocess.run(["bash", str(ROOT / "deploy/local/crane.sh")], capture_output=True, text=True,
                          check=True, timeout=600).stdout.strip()


@pytest.fixture
def registry(crane: str) -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen([crane, "registry", "serve", "--address", f"127.0.0.1:{port}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            probe = subprocess.run([crane, "catalog", "--insecure", f"127.0.0.1:{port}"], capture_output=True)
            if probe.returncode == 0:
                break
            time.sleep(0.1)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


def _push(crane: str, registry: str, ref: str, tmp: Path, build: int = 1) -> str:
    """A one-layer image under ``ref`` in the registry (``build`` changes its content); its digest."""
    layer = tmp / f"{ref.replace('/', '_').replace(':', '_')}-{build}.tar"
    (tmp / "content").write_text(f"{ref} build {build}")
    with tarfile.open(layer, "w") as tar:
        tar.add(tmp / "content", arcname="content")
    subprocess.run([crane, "append", "--insecure", "-f", str(layer), "-t", f"{registry}/{ref}"], check=True,
                   capture_output=True, timeout=60)
    return subprocess.run([crane, "digest", "--insecure", f"{registry}/{ref}"], check=True, capture_output=True,
                          text=True, timeout=60).stdout.strip()


def _pin(registry: str, *files: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(ROOT / "deploy/local/pin-images.sh"), *map(str, files)], capture_output=True,
                          text=True, timeout=300, env={"PATH": "/usr/bin:/bin", "HOME": str(Path.home()),
                                                       "PIN_REGISTRY": registry, "PIN_INSECURE": "1"})


def test_every_third_party_image_of_deploy_is_pinned_to_the_served_digest(
    crane: str, registry: str, tmp_path: Path
) -> None:
    originals = [ROOT / "deploy/compose.yaml", *sorted((ROOT / "deploy/k8s").glob("*.yaml")),
                 ROOT / "deploy/Dockerfile"]
    copies = []
    for f in originals:
        copies.append(tmp_path / f.name)
        shutil.copy(f, copies[-1])
    wanted = sorted({r.split("@")[0] for f in originals for r in refs(f.read_text()) if not r.startswith("twinmon:")})
    assert {"python:3.11-slim", "redis:7.4"} <= set(wanted)
    digests = {ref: _push(crane, registry, ref, tmp_path) for ref in wanted}

    out = _pin(registry, *copies)
    assert out.returncode == 0, out.stderr
    pinned = {r for f in copies for r in refs(f.read_text())}
    assert pinned == {f"{ref}@{d}" for ref, d in digests.items()} | {r for r in pinned if r.startswith("twinmon:")}
    assert "FROM python:3.11-slim@" + digests["python:3.11-slim"] in (tmp_path / "Dockerfile").read_text()

    # A tag that moved: running again re-pins to the new digest, never stacking a second @.
    moved = _push(crane, registry, "redis:7.4", tmp_path, build=2)
    assert moved != digests["redis:7.4"]
    assert _pin(registry, *copies).returncode == 0
    again = {r for f in copies for r in refs(f.read_text())}
    assert f"redis:7.4@{moved}" in again and f"redis:7.4@{digests['redis:7.4']}" not in again
    assert all(r.count("@") <= 1 for r in again)


def test_an_image_the_registry_does_not_serve_is_named_and_its_file_left_alone(
    crane: str, registry: str, tmp_path: Path
) -> None:
    manifest = tmp_path / "x.yaml"
    manifest.write_text("spec:\n  containers:\n    - name: a\n      image: nosuch/image:1.0\n")
    before = manifest.read_text()
    out = _pin(registry, manifest)
    assert out.returncode == 1
    assert "cannot resolve" in out.stderr and "nosuch/image:1.0" in out.stderr
    assert manifest.read_text() == before


def test_image_refs_finds_every_form() -> None:
    text = ("FROM --platform=linux/amd64 python:3.11-slim AS base\nservices:\n  a:\n    image: redis:7.4\n"
            "  b:\n    image: \"prom/prometheus:v2.53.0\"  # comment\nc:\n  - image: x/y@sha256:ab\n")
    assert refs(text) == ["python:3.11-slim", "redis:7.4", "prom/prometheus:v2.53.0", "x/y@sha256:ab"]
