"""The audit trail made tamper-evident: every record is signed and chained, per writer (pure; no I/O).

A writer is one feed process, or one CLI command, with a random writer id. Its records carry
``writer``, ``seq`` (1, 2, 3, ... with no gap), ``prev`` (the ``mac`` of its previous record; empty for seq 1,
which opens the chain) and ``mac``: HMAC-SHA256, keyed by ``TWINMON_AUDIT_KEY``, over the record's canonical
JSON (every field but ``mac``, keys sorted). Someone holding only the Kafka credentials can append to the topic,
but without the key cannot make a record whose ``mac`` verifies, so a forged or altered record shows as a bad
MAC, and a record left out of a writer's chain shows as a gap in its sequence.

Why per writer: several feed replicas and CLI commands write the same partitions at once, and Kafka has no
compare-and-set, so one chain per partition would need every writer to agree on its head. A writer's own
records are serialised by the writer (one at a time, each acknowledged before the next is signed), so its chain
has no gaps in normal operation. When a write fails, its outcome is unknown (the broker may have kept it), so
the writer starts a new chain rather than reuse or skip that sequence number: no false gap either way.
"""

from __future__ import annotations

import hashlib
import hmac
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from typing import Any

import orjson

CHAIN_FIELDS = ("writer", "seq", "prev", "mac")


def canonical(doc: Mapping[str, Any]) -> bytes:
    return orjson.dumps({k: v for k, v in doc.items() if k != "mac"}, option=orjson.OPT_SORT_KEYS)


def sign(doc: Mapping[str, Any], key: bytes) -> str:
    return hmac.new(key, canonical(doc), hashlib.sha256).hexdigest()


def mac_ok(doc: Mapping[str, Any], key: bytes) -> bool:
    mac = doc.get("mac")
    return isinstance(mac, str) and hmac.compare_digest(mac, sign(doc, key))


@dataclass(slots=True)
class Chain:
    """One writer's chain head: its id, the last sequence number written and that record's MAC."""

    writer: str
    seq: int = 0
    head: str = ""

    def seal(self, record: Mapping[str, Any], key: bytes) -> dict[str, Any]:
        """``record`` as the next link of this chain, signed (the chain moves on only by ``advance``)."""
        doc = {**record, "writer": self.writer, "seq": self.seq + 1, "prev": self.head}
        doc["mac"] = sign(doc, key)
        return doc

    def advance(self, doc: Mapping[str, Any]) -> None:
        """The broker has ``doc``: it is the head now."""
        self.seq, self.head = int(doc["seq"]), str(doc["mac"])


@dataclass(frozen=True, slots=True)
class Report:
    """Counts only: what a person needs to know whether the trail is intact, and no patient data."""

    records: int = 0
    writers: int = 0
    intact: int = 0
    """Records with a good MAC that follow their writer's previous record."""
    bad_mac: int = 0
    """Forged or altered: no valid MAC under the key."""
    unchained: int = 0
    """Valid JSON without the chain fields (written by a feed that did not sign)."""
    malformed: int = 0
    """Not a JSON object."""
    missing: int = 0
    """Sequence numbers absent from a writer's chain (dropped, or never written)."""
    broken_links: int = 0
    """A record whose ``prev`` is not its predecessor's MAC."""
    duplicates: int = 0
    """The same signed record more than once (a replay)."""
    forks: int = 0
    """Two different signed records with the same writer and sequence number."""
    truncated_partitions: int = 0
    """Partitions whose first record is gone (their log does not start at offset 0)."""

    @property
    def problems(self) -> int:
        return sum(getattr(self, f.name) for f in fields(self)
                   if f.name not in ("records", "writers", "intact"))

    def lines(self) -> list[str]:
        return [f"{f.name.replace('_', ' ')}: {getattr(self, f.name)}" for f in fields(self)]


def verify(values: Iterable[bytes | None], key: bytes, truncated_partitions: int = 0) -> Report:
    """Check every record of the audit topic (in any order) against the key and its writer's chain."""
    counts: dict[str, int] = defaultdict(int)
    chains: dict[str, dict[int, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for raw in values:
        counts["records"] += 1
        try:
            doc = orjson.loads(raw) if raw is not None else None
        except orjson.JSONDecodeError:
            doc = None
        if not isinstance(doc, dict):
            counts["malformed"] += 1
        elif not all(f in doc for f in CHAIN_FIELDS):
            counts["unchained"] += 1
        elif not mac_ok(doc, key) or not isinstance(doc["seq"], int) or not isinstance(doc["writer"], str):
            counts["bad_mac"] += 1
        else:
            chains[doc["writer"]][doc["seq"]].append(doc)
    for links in chains.values():
        expected, prev_mac = 1, ""
        for seq in sorted(links):
            copies = links[seq]
            distinct = {d["mac"]: d for d in copies}
            counts["duplicates"] += len(copies) - len(distinct)
            counts["forks"] += len(distinct) - 1
            doc = next(iter(distinct.values()))
            if seq > expected:
                counts["missing"] += seq - expected  # the link across a gap cannot be checked
            elif seq < 1 or doc["prev"] != prev_mac:
                counts["broken_links"] += 1
            else:
                counts["intact"] += 1
            expected, prev_mac = seq + 1, str(doc["mac"])
    return Report(writers=len(chains), truncated_partitions=truncated_partitions, **counts)
