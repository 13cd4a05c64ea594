"""µs per message of ``streams.schema.decode`` and of ``streams.fastdecode.decode_many`` on the bench's message mix
(``pipeline.readings``/``wire``) with 1 % invalid messages among them, in one process, interleaved runs, in
CPU time (the machine is shared).

    python -m bench.fastdecode [--events 100000] [--patients 10000] [--runs 5] [--batch 2000]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

import orjson

from bench.pipeline import readings, wire
from streams.fastdecode import decode_many
from streams.schema import decode

START_MS = 1_763_942_400_000


def invalid(messages: list[tuple[bytes, bytes]], n: int, seed: int = 3) -> list[tuple[bytes, bytes]]:
    """``n`` rejected messages made from valid ones: a field of each kind of mistake the edge sees."""
    rng = random.Random(seed)
    mistakes = [
        ("unit", "bpm!"), ("metric", "glucose"), ("value", -5), ("value", "72"), ("seq", -1), ("quality", 1.5),
        ("measured_at", START_MS * 1000), ("measured_at", 0), ("patient_id", "p/../x"), ("device_id", ""),
        ("v", 2), ("seq", True),
    ]
    out = []
    for i in range(n):
        key, raw = messages[rng.randrange(len(messages))]
        kind = i % (len(mistakes) + 3)
        if kind < len(mistakes):
            name, bad = mistakes[kind]
            out.append((key, orjson.dumps({**orjson.loads(raw), name: bad})))
        elif kind == len(mistakes):
            out.append((key, raw[: len(raw) // 2]))  # cut: not JSON
        elif kind == len(mistakes) + 1:
            out.append((b"someone-else", raw))  # key mismatch
        else:
            doc = orjson.loads(raw)
            doc.pop("seq")
            out.append((key, orjson.dumps(doc)))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--patients", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--batch", type=int, default=2000, help="messages per batch (the worker's batch_max)")
    args = parser.parse_args()
    valid = wire(readings(args.patients, args.events, START_MS))
    bad = invalid(valid, args.events // 100)
    rng = random.Random(1)
    mixed = list(valid)
    for m in bad:
        mixed.insert(rng.randrange(len(mixed) + 1), m)
    now_ms = START_MS + 10 * 86_400_000
    items = [(v, k, now_ms) for k, v in mixed]
    reference = [decode(v, k, t) for v, k, t in items]
    assert decode_many(items) == reference, "decode_many differs from decode"
    batches = [items[i:i + args.batch] for i in range(0, len(items), args.batch)]
    valid_values = [v for _, v in valid]
    loads = orjson.loads
    ref_us: list[float] = []
    fast_us: list[float] = []
    json_us: list[float] = []
    for _ in range(args.runs):
        # Per batch, as the processor decodes: each batch's results kept until the next batch.
        started = time.process_time()
        for batch in batches:
            kept = [decode(v, k, t) for v, k, t in batch]
        ref_us.append((time.process_time() - started) / len(items) * 1e6)
        del kept
        started = time.process_time()
        for batch in batches:
            kept = decode_many(batch)
        fast_us.append((time.process_time() - started) / len(items) * 1e6)
        del kept
        started = time.process_time()
        for v in valid_values:
            loads(v)
        json_us.append((time.process_time() - started) / len(valid_values) * 1e6)
    rejected = sum(1 for r in reference if not hasattr(r, "patient_id"))
    print(f"{len(items):,} messages ({rejected:,} rejected) in batches of {args.batch}, {args.runs} interleaved "
          "runs; us/message, median (min):")
    for name, xs in (("decode", ref_us), ("decode_many", fast_us), ("orjson.loads*", json_us)):
        print(f"  {name:<13} {statistics.median(xs):6.2f} ({min(xs):.2f})")
    print("  * of the valid messages alone")
    print(f"  speed-up      {statistics.median(ref_us) / statistics.median(fast_us):.1f}x")


if __name__ == "__main__":
    main()
