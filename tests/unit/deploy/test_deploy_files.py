"""The Compose file cannot run here (no Docker engine); these checks keep it consistent with the code."""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from click.testing import CliRunner

from cli.main import main
from streams.settings import Settings

ROOT = Path(__file__).resolve().parents[3]


def compose() -> dict:  # type: ignore[type-arg]
    return yaml.safe_load((ROOT / "deploy" / "compose.yaml").read_text())


def test_compose_kafka_image_is_the_version_the_local_scripts_pin() -> None:
    pom = (ROOT / "deploy" / "local" / "kafka-pom.xml").read_text()
    pinned = re.search(r"<kafka\.version>([^<]+)</kafka\.version>", pom)
    assert pinned is not None
    assert compose()["services"]["kafka"]["image"] == f"apache/kafka:{pinned.group(1)}"


def test_compose_twinmon_services_use_real_subcommands_and_known_settings() -> None:
    services = compose()["services"]
    known = {f"TWINMON_{name.upper()}" for name in Settings.model_fields}
    for name in ("topics", "worker", "simulator"):
        svc = services[name]
        env = svc["environment"]
        assert set(env) <= known, set(env) - known
        assert env["TWINMON_KAFKA_BOOTSTRAP"] == services["kafka"]["environment"]["KAFKA_ADVERTISED_LISTENERS"].split(
            "//"
        )[1]
        out = CliRunner().invoke(main, [*svc["command"], "--help"])
        assert out.exit_code == 0, out.output
