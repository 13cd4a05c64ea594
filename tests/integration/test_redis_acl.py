"""The Redis ACL users of ``redis.sh start-secure`` against the real server: every write command Redis has, on
every key family twinmon uses, as the feed's user and as the workers' user.

The command list comes from Redis itself (``COMMAND LIST FILTERBY ACLCAT write``) and each invocation is built
from ``COMMAND DOCS`` (the shortest valid form, with the key family's key in every key position, checked by
``COMMAND GETKEYS``), so a command added to Redis is tried too. Each is sent directly and, where scripts may run
it, from a Lua script with the key passed as an argument (a script's commands are checked against the ACL).
The key families are taken from the stores' own key functions, so a new key family is tried as well.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.exceptions import NoPermissionError, ResponseError

from feed.index import FeedIndex
from streams.security import redis_client
from streams.settings import Settings
from tests.support.helpers import local_script
from twin_state.profile import Profile, Status
from twin_state.redis_store import RedisProfileStore, RedisTwinStore
from twin_state.twin import Twin

pytestmark = pytest.mark.integration

TAG = "acl" + secrets.token_hex(3)
FEED_USER, WORKER_USER = "twinmon-feed", "twinmon"


@dataclass(frozen=True)
class AclRedis:
    port: int
    ca: Path
    passwords: dict[str, str]

    def client(self, user: str) -> redis.Redis:
        c = redis.Redis(host="127.0.0.1", port=self.port, ssl=True, ssl_ca_certs=str(self.ca), username=user,
                        password=self.passwords[user], socket_timeout=10)
        c.set_response_callback("COMMAND", lambda response, **_: response)
        return c

    def settings(self, user: str) -> Settings:
        url = f"rediss://{user}:{self.passwords[user]}@127.0.0.1:{self.port}/0"
        return Settings(redis_url=url, redis_ssl_cafile=str(self.ca), redis_prefix=TAG,  # type: ignore[arg-type]
                        require_tls=True, kafka_security_protocol="SSL")


@pytest.fixture(scope="module")
def acl_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AclRedis]:
    root = tmp_path_factory.mktemp("redis-acl")
    passwords = {"admin": secrets.token_urlsafe(18), WORKER_USER: secrets.token_urlsafe(18),
                 FEED_USER: secrets.token_urlsafe(18)}
    env = {**os.environ, "REDIS_ADMIN_PASSWORD": passwords["admin"], "REDIS_CLIENT_PASSWORD": passwords[WORKER_USER],
           "REDIS_FEED_PASSWORD": passwords[FEED_USER], "REDIS_KEY_PREFIX": TAG}


    local_script(env, "certs.sh", str(root / "certs"))
    try:
        url = local_script(env, "redis.sh", "start-secure", str(root / "redis"), str(root / "certs"))
        yield AclRedis(int(url.rsplit(":", 1)[1].split("/")[0]), root / "certs" / "ca.pem", passwords)
    finally:
        local_script(env, "redis.sh", "stop", str(root / "redis"))


def key_families() -> dict[str, str]:
    """One key of each family, from the code that names them."""
    unused = redis.asyncio.Redis()  # never connected: the stores only need it to register their scripts
    twins, profiles, index = RedisTwinStore(unused, TAG), RedisProfileStore(unused, TAG), FeedIndex(unused, TAG)
    audit, audit_records = index._audit_keys("ward-1")
    alert_history, alert_events = index._history_keys("p-1")
    return {"twin": twins.key("p-1"), "history": twins.history_key("p-1"), "profile": profiles.key("p-1"),
            "team set": profiles.team_key("ward-1"), "partition set": twins.partition_key(3),
            "feed audit index": audit, "feed audit records": audit_records,
            "feed alert history": alert_history, "feed alert events": alert_events}


WORKER_FAMILIES = {"twin", "history", "profile", "team set", "partition set"}
FEED_FAMILIES = {f for f in key_families() if f.startswith("feed ")}


# --- invocations built from COMMAND DOCS -------------------------------------------------------------------------

def _text(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def _args(spec: list[dict[bytes, Any]], key: str) -> list[str]:
    """The shortest valid argument list: optional arguments left out, one of each repeated one, the first choice."""
    out: list[str] = []
    for arg in spec:
        flags = {_text(f) for f in arg.get(b"flags", [])}
        if "optional" in flags:
            continue
        kind, token = _text(arg[b"type"]), arg.get(b"token")
        if token is not None:
            out.append(_text(token))
        if kind == "pure-token":
            continue
        if kind == "oneof":
            out += _args(arg[b"arguments"][:1], key)
        elif kind == "block":
            out += _args(arg[b"arguments"], key)
        elif kind == "key":
            out.append(key)
        elif kind in ("integer", "unix-time"):
            out.append("1")
        elif kind == "double":
            out.append("1.5")
        elif kind == "pattern":
            out.append("*")
        else:
            out.append("x")
    return out


@dataclass(frozen=True)
class WriteCommand:
    name: str  # as in ACL rules: "hset", "xgroup|create"
    words: tuple[str, ...]  # the command (and subcommand) as sent
    spec: tuple[dict[bytes, Any], ...]
    has_keys: bool
    in_scripts: bool

    def invocation(self, key: str) -> list[str]:
        return [*self.words, *_args(list(self.spec), key)]


def write_commands(admin: redis.Redis) -> list[WriteCommand]:
    names = sorted(_text(n) for n in admin.execute_command("COMMAND", "LIST", "FILTERBY", "ACLCAT", "write"))
    found = []
    for name in names:
        top = name.split("|")[0]
        docs = admin.execute_command("COMMAND", "DOCS", top)[top.encode()]
        if "|" in name:
            docs = docs[b"subcommands"][name.encode()]
        (info,) = admin.execute_command("COMMAND", "INFO", name)
        flags = {_text(f) for f in info[2]}
        has_keys = bool(info[8]) if len(info) > 8 else info[3] != 0
        found.append(WriteCommand(name, tuple(w.upper() for w in name.split("|")), tuple(docs.get(b"arguments", [])),
                                  has_keys, "noscript" not in flags))
    return found


def refused(call: Any) -> str | None:
    """The refusal message if the ACL refused the call, else None (it ran, or failed for another reason)."""
    try:
        call()
    except NoPermissionError as exc:
        return str(exc)
    except ResponseError as exc:
        text = str(exc)
        if "NOPERM" in text or "user executing the script can't" in text:
            return text
        assert "wrong number of arguments" not in text, text  # a bad invocation would prove nothing
    return None


# Every write command but these is refused to the feed on every key; these only on its own keys.
FEED_WRITES = {"hsetnx", "hdel", "zadd", "zremrangebyrank"}
WORKER_WRITES = {"hset", "rpush", "ltrim", "sadd", "srem"}


@pytest.mark.parametrize(("user", "own_families", "own_writes"), [
    (FEED_USER, FEED_FAMILIES, FEED_WRITES),
    (WORKER_USER, WORKER_FAMILIES, WORKER_WRITES),
])
def test_every_write_command_on_every_key_family_is_refused_outside_the_users_own(
    acl_redis: AclRedis, user: str, own_families: set[str], own_writes: set[str]
) -> None:
    admin, client = acl_redis.client("admin"), acl_redis.client(user)
    commands = write_commands(admin)
    assert len(commands) > 90 and {"hsetnx", "hdel", "hset", "del", "unlink", "rename", "restore"} <= {
        c.name for c in commands}
    families = key_families()
    assert set(families) == WORKER_FAMILIES | FEED_FAMILIES
    allowed, denied, script_denied = [], [], []
    for command in commands:
        if not command.has_keys:  # FLUSHALL, SWAPDB, FUNCTION LOAD...: no user of twinmon may run them
            message = refused(lambda c=command: client.execute_command(*c.invocation("")))
            assert message is not None, f"{user} may run {command.name}"
            denied.append(command.name)
            continue
        for family, key in families.items():
            words = command.invocation(key)
            assert key.encode() in admin.execute_command("COMMAND", "GETKEYS", *words), words
            expect_allowed = family in own_families and command.name in own_writes
            message = refused(lambda w=words: client.execute_command(*w))
            if expect_allowed:
                assert message is None, f"{user} cannot {command.name} its own {family}: {message}"
                allowed.append((command.name, family))
            else:
                assert message is not None, f"{user} may {' '.join(words)} (a {family} key)"
                denied.append(command.name)
            if command.in_scripts and not expect_allowed:
                # The key as an argument, not in KEYS: only the check on the script's own call stands in the way.
                lua = f"return redis.call({', '.join(f'ARGV[{i + 1}]' for i in range(len(words)))})"
                message = refused(lambda w=words, s=lua: client.execute_command(
                    "EVAL", s, 0, *w))
                assert message is not None, f"{user} may {' '.join(words)} from a script (a {family} key)"
                script_denied.append(command.name)
    assert {name for name, _ in allowed} == own_writes
    assert {family for _, family in allowed} == own_families
    assert len(script_denied) > 500 and len(denied) > 600  # about 100 commands x 8 families


def test_the_feed_reads_the_workers_keys_and_runs_its_indexes_as_its_own_user(acl_redis: AclRedis) -> None:
    async def go() -> None:
        worker, feed = redis_client(acl_redis.settings(WORKER_USER)), redis_client(acl_redis.settings(FEED_USER))
        try:
            # The worker writes twins and profiles (and so the team sets); the feed reads them back.
            profile = Profile("p-7", "ward-3", 1_700_000_000_000, Status.ENROLLED)
            assert await RedisProfileStore(worker, TAG).save(profile)
            assert await RedisTwinStore(worker, TAG).save_many([Twin("p-7", partition=0, offset=5)]) == 1
            assert await RedisProfileStore(feed, TAG).get("p-7") == profile
            assert await RedisProfileStore(feed, TAG).team("ward-3") == ["p-7"]
            assert [t.offset for t in (await RedisTwinStore(feed, TAG).load_many(["p-7"])).values()] == [5]
            # The feed's indexes, through its Lua script, as the feed.
            index = FeedIndex(feed, TAG)
            record = {"id": "r-1", "team": "ward-3", "at": 1_700_000_000_001, "action": "enrol"}
            assert await index.add_audit(record) and not await index.add_audit(record)
            assert (await index.audit("ward-3", None, None, 0, 10))[0] == [record]
            event = {"event_id": "e-1", "patient_id": "p-7", "at": 1_700_000_000_002}
            assert await index.add_alert_event(event)
            assert (await index.alert_history("p-7", None, None, 0, 10))[0] == [event]
            # ... which the worker's user can neither write nor read.
            with pytest.raises(NoPermissionError):
                await FeedIndex(worker, TAG).add_audit({**record, "id": "r-2"})
            with pytest.raises(NoPermissionError):
                await FeedIndex(worker, TAG).audit("ward-3", None, None, 0, 10)
        finally:
            await worker.aclose()
            await feed.aclose()

    asyncio.run(go())


def test_the_kubernetes_redis_config_and_acl_file_run_on_a_real_redis(acl_redis: AclRedis, tmp_path: Path) -> None:
    """deploy/k8s/redis.yaml's redis.conf and probes, with ``redis.sh acl-file``'s users, on this machine's Redis:
    TLS only, the default user off, the health user PINGs and nothing else, the feed's user as restricted."""
    from tests.unit.deploy.test_k8s_security import find

    docs = find()
    conf = docs[("ConfigMap", "twinmon-redis")]["data"]["redis.conf"]
    (container,) = docs[("StatefulSet", "twinmon-redis")]["spec"]["template"]["spec"]["containers"]
    certs = acl_redis.ca.parent
    env = {**os.environ, "REDIS_ADMIN_PASSWORD": acl_redis.passwords["admin"],
           "REDIS_CLIENT_PASSWORD": acl_redis.passwords[WORKER_USER],
           "REDIS_FEED_PASSWORD": acl_redis.passwords[FEED_USER], "REDIS_KEY_PREFIX": TAG}
    (tmp_path / "users.acl").write_text(local_script(env, "redis.sh", "acl-file") + "\n")
    assert all(p not in (tmp_path / "users.acl").read_text() for p in acl_redis.passwords.values())
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    paths = {"/etc/redis/tls/tls.crt": str(certs / "server.pem"), "/etc/redis/tls/tls.key": str(certs / "server.key"),
             "/etc/redis/tls/ca.crt": str(certs / "ca.pem"), "/etc/redis/acl/users.acl": str(tmp_path / "users.acl"),
             "dir /data": f"dir {tmp_path}", "tls-port 6379": f"tls-port {port}"}
    for old, new in paths.items():
        assert old in conf
        conf = conf.replace(old, new)
    (tmp_path / "redis.conf").write_text(conf)
    assert container["args"][0] == "redis-server"
    log = (tmp_path / "redis.log").open("wb")
    server = subprocess.Popen([shutil.which("redis-server") or "redis-server", str(tmp_path / "redis.conf"),
                               "--bind", "127.0.0.1"], stdout=log, stderr=subprocess.STDOUT)
    try:
        probe = container["readinessProbe"]["exec"]["command"]
        for old, new in paths.items():
            probe = [w.replace(old, new) for w in probe]
        probe = [w.replace("redis-cli ", f"redis-cli -h 127.0.0.1 -p {port} ") for w in probe]
        deadline = time.monotonic() + 30
        while subprocess.run(probe, capture_output=True, check=False).returncode != 0:
            assert server.poll() is None and time.monotonic() < deadline, (tmp_path / "redis.log").read_text()
            time.sleep(0.2)
        k8s = AclRedis(port, acl_redis.ca, acl_redis.passwords)
        health = redis.Redis(host="127.0.0.1", port=port, ssl=True, ssl_ca_certs=str(acl_redis.ca),
                             username="health", password="anything")  # the user has no password
        assert health.ping()
        with pytest.raises(NoPermissionError):
            health.hget(f"{TAG}:twin:{{p-1}}", "s")
        feed = k8s.client(FEED_USER)
        assert feed.hget(f"{TAG}:twin:{{p-1}}", "s") is None
        with pytest.raises(NoPermissionError):
            feed.hsetnx(f"{TAG}:twin:{{p-1}}", "s", "x")
        assert k8s.client(WORKER_USER).hset(f"{TAG}:twin:{{p-1}}", "s", "x") == 1
        with pytest.raises(redis.ConnectionError):  # no plaintext port
            redis.Redis(host="127.0.0.1", port=port, socket_timeout=3).ping()
    finally:
        server.terminate()
        server.wait(30)
