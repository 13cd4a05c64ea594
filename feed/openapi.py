"""``python -m feed.openapi``: print the feed's OpenAPI document (committed as docs/openapi.json)."""

from __future__ import annotations

from typing import Any

import orjson

from feed.api import create_api
from streams.settings import Settings


def document() -> dict[str, Any]:
    spec: dict[str, Any] = create_api(Settings()).openapi()
    return spec


def render() -> bytes:
    return orjson.dumps(document(), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"


if __name__ == "__main__":  # pragma: no cover
    import sys

    sys.stdout.buffer.write(render())
