"""A real Redis Cluster on one machine: one node holding all 16384 slots, which enforces the same rules as a big
cluster (one script call or multi-key command per slot, MOVED for a plain client). The session's ``cluster_url``
fixture (tests/conftest.py) starts it once for the integration and the end-to-end tests."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from redis import Redis as SyncRedis
from redis.exceptions import RedisError


@contextmanager
def one_node_cluster(state: Path, free_port: Callable[[], int]) -> Iterator[str]:
    """Start ``redis-server --cluster-enabled yes`` in ``state``, give it every slot, wait for
    ``cluster_state:ok``; yield its URL (``redis://127.0.0.1:PORT/0``); stop it on the way out."""
    assert shutil.which("redis-server"), "the services fixture installs redis-server"
    # A cluster node also listens on port + 10000 (the cluster bus), so its port must be 55535 or less.
    port = next(p for p in iter(free_port, None) if p <= 55535)
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--cluster-enabled", "yes",
         "--cluster-config-file", str(state / "nodes.conf"), "--dir", str(state), "--save", "",
         "--appendonly", "no", "--daemonize", "no"],
        stdout=(state / "redis.log").open("wb"), stderr=subprocess.STDOUT,
    )
    try:
        client = SyncRedis(port=port)
        deadline = time.monotonic() + 30
        while True:
            try:
                client.ping()
                break
            except RedisError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    log = (state / "redis.log").read_text()
                    raise RuntimeError(f"redis-server (cluster) did not start: {log}") from None
                time.sleep(0.1)
        client.execute_command("CLUSTER", "ADDSLOTSRANGE", 0, 16383)
        while b"cluster_state:ok" not in client.execute_command("CLUSTER", "INFO"):
            if time.monotonic() > deadline:
                raise RuntimeError("the one-node cluster never reached cluster_state:ok")
            time.sleep(0.1)
        client.close()
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(30)
