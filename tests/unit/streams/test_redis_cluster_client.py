"""TWINMON_REDIS_CLUSTER: which Redis client the settings build, with what TLS, CA, user and timeouts; the URLs a
cluster cannot take; the cluster client's errors as outages or as one line naming the setting; no password shown.

The client on a real cluster: tests/integration/test_redis_cluster.py and tests/e2e/test_redis_cluster_worker.py.
"""

from __future__ import annotations

import os

import pytest
from click.testing import CliRunner
from pydantic import ValidationError
from redis.asyncio import Redis, RedisCluster
from redis.asyncio.connection import Connection, SSLConnection
from redis.exceptions import (
    AuthenticationError,
    ClusterCrossSlotError,
    ClusterDownError,
    ClusterError,
    MovedError,
    NoPermissionError,
    RedisClusterException,
    ResponseError,
    SlotNotCoveredError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError

from cli.main import main
from streams.connect_check import explain_redis
from streams.outage import is_outage, redis_cause
from streams.security import redis_client
from streams.settings import Settings

SECRET = "r-secret-1"


def messages(**fields: object) -> str:
    """What the CLI would print for these settings (the messages only, as ``cli.common.load_settings`` does)."""
    with pytest.raises(ValidationError) as refused:
        Settings(**fields)  # type: ignore[arg-type]
    return "; ".join(e["msg"] for e in refused.value.errors())


def cluster_node_kwargs(client: RedisCluster) -> dict[str, object]:
    """The connection arguments every node of the cluster gets (discovered nodes included)."""
    return dict(client.nodes_manager.connection_kwargs)


def test_a_single_redis_by_default_and_a_cluster_when_set(monkeypatch: pytest.MonkeyPatch) -> None:
    assert not Settings().redis_cluster
    assert type(redis_client(Settings())) is Redis
    monkeypatch.setenv("TWINMON_REDIS_CLUSTER", "true")
    monkeypatch.setenv("TWINMON_REDIS_URL", f"redis://twinmon:{SECRET}@redis-0.redis:6379/0")
    settings = Settings()
    assert settings.redis_cluster
    client = redis_client(settings)  # builds, does not connect
    assert isinstance(client, RedisCluster)
    assert [(n.host, n.port) for n in client.nodes_manager.startup_nodes.values()] == [("redis-0.redis", 6379)]
    kwargs = cluster_node_kwargs(client)
    assert kwargs["username"] == "twinmon" and kwargs["password"] == SECRET  # the ACL user, on every node
    assert kwargs["connection_class"] is Connection
    assert kwargs["socket_timeout"] == kwargs["socket_connect_timeout"] == settings.redis_socket_timeout_s


def test_a_cluster_over_tls_verifies_every_node_with_the_ca_file() -> None:
    settings = Settings(redis_url=f"rediss://twinmon:{SECRET}@redis-0.redis:6380", redis_cluster=True,  # type: ignore[arg-type]
                        redis_ssl_cafile="/etc/twinmon/redis/ca.crt", redis_socket_timeout_s=5)
    client = redis_client(settings)
    assert isinstance(client, RedisCluster)
    kwargs = cluster_node_kwargs(client)
    assert kwargs["connection_class"] is SSLConnection and kwargs["ssl_cert_reqs"] == "required"
    assert kwargs["ssl_ca_certs"] == "/etc/twinmon/redis/ca.crt" and kwargs["ssl_check_hostname"] is True
    assert kwargs["socket_timeout"] == 5


def test_require_tls_holds_for_a_cluster() -> None:
    secure = {"kafka_security_protocol": "SSL", "require_tls": True, "redis_cluster": True}
    assert Settings(**secure, redis_url=f"rediss://u:{SECRET}@redis:6380/0").redis_cluster  # type: ignore[arg-type]
    said = messages(**secure, redis_url=f"redis://u:{SECRET}@redis:6379/0")
    assert "TWINMON_REQUIRE_TLS is on but TWINMON_REDIS_URL does not start with rediss://" in said
    said = messages(redis_cluster=True, redis_url=f"redis://u:{SECRET}@redis:6379/0", redis_ssl_cafile="/ca.pem")
    assert "TWINMON_REDIS_SSL_CAFILE is set but TWINMON_REDIS_URL does not start with rediss://" in said
    assert SECRET not in said


@pytest.mark.parametrize(("url", "fragment"), [
    (f"unix://u:{SECRET}@/run/redis.sock", "is a unix:// socket"),
    (f"redis://u:{SECRET}@redis:6379/3", "names a database other than 0"),
    (f"rediss://u:{SECRET}@redis:6380/0?db=2", "names a database other than 0"),
])
def test_what_a_cluster_cannot_take_is_refused(url: str, fragment: str) -> None:
    said = messages(redis_url=url, redis_cluster=True)
    assert said.startswith("Value error, TWINMON_REDIS_CLUSTER is on but TWINMON_REDIS_URL") and fragment in said
    assert SECRET not in said
    assert Settings(redis_url=url.replace("?db=2", ""), redis_cluster=False)  # type: ignore[arg-type]  # fine for one Redis


@pytest.mark.parametrize("url", [f"redis+cluster://u:{SECRET}@redis:6379/0", f"http://u:{SECRET}@redis:6379"])
def test_an_unknown_scheme_is_named_with_the_cluster_setting(url: str) -> None:
    said = messages(redis_url=url)
    assert "TWINMON_REDIS_URL must start with redis://, rediss:// (TLS) or unix://" in said
    assert "TWINMON_REDIS_CLUSTER=true" in said and SECRET not in said


@pytest.mark.parametrize("command", [["worker"], ["serve"], ["twin", "show", "x"]])
def test_every_command_refuses_a_wrong_cluster_url_in_one_line(command: list[str]) -> None:
    env = {**{k: None for k in os.environ if k.startswith("TWINMON_")}, "TWINMON_REDIS_CLUSTER": "true",
           "TWINMON_REDIS_URL": f"redis://u:{SECRET}@redis:6379/2"}
    out = CliRunner(env=env).invoke(main, command)
    assert out.exit_code == 2, out.output
    assert "Error: bad configuration: TWINMON_REDIS_CLUSTER is on but TWINMON_REDIS_URL names a database" in out.output
    assert SECRET not in out.output


def test_an_unreachable_cluster_is_one_clear_line_and_the_password_is_not_shown() -> None:
    env = {**{k: None for k in os.environ if k.startswith("TWINMON_")}, "TWINMON_REDIS_CLUSTER": "true",
           "TWINMON_REDIS_URL": f"redis://:{SECRET}@127.0.0.1:1/0"}
    out = CliRunner(env=env).invoke(main, ["twin", "p-1"])
    assert out.exit_code == 1, out.output
    assert "cannot reach Redis" in out.output and SECRET not in out.output and "Traceback" not in out.output


def test_the_bench_refuses_a_cluster() -> None:
    env = {**{k: None for k in os.environ if k.startswith("TWINMON_")}, "TWINMON_REDIS_CLUSTER": "true"}
    out = CliRunner(env=env).invoke(main, ["bench", "--quick", "--bootstrap", "127.0.0.1:1", "--redis-url",
                                          "redis://127.0.0.1:1/0"])
    assert out.exit_code == 2 and "twinmon bench does not support a Redis Cluster" in out.output, out.output


def cannot_connect(cause: BaseException) -> RedisClusterException:
    """What the cluster client raises when it cannot read the cluster's map from any node (as redis-py does)."""
    try:
        try:
            raise cause
        except Exception as exc:
            raise RedisClusterException(f"Redis Cluster cannot be connected. Please provide at least one reachable "
                                        f"node: {exc}") from exc
    except RedisClusterException as outer:
        return outer


def not_a_cluster(reply: ResponseError) -> RedisClusterException:
    """CLUSTER SLOTS refused by the node: redis-py says "Cluster mode is not enabled", with the reply as context."""
    try:
        raise reply
    except ResponseError:
        try:
            raise RedisClusterException("Cluster mode is not enabled on this node")  # as redis-py does
        except RedisClusterException as inner:
            return cannot_connect(inner)


@pytest.mark.parametrize("exc", [
    cannot_connect(RedisConnectionError("Error 111 connecting to 10.0.0.5:6379. Connection refused.")),
    ClusterDownError("The cluster is down"), TryAgainError("Multiple keys request during rehashing of slot"),
    ClusterError("TTL exhausted."), SlotNotCoveredError("Slot 42 not covered by the cluster."),
    RedisClusterException("All slots are not covered after query all startup_nodes. 16000 of 16384 covered..."),
])
def test_a_cluster_that_is_down_failing_over_or_resharding_is_an_outage(exc: BaseException) -> None:
    assert is_outage(exc)  # the worker waits (twinmon_redis_up 0, /readyz 503) instead of exiting
    assert explain_redis(exc) is None  # and does not refuse to start


@pytest.mark.parametrize("exc", [
    cannot_connect(AuthenticationError("invalid username-password pair or user is disabled.")),
    not_a_cluster(NoPermissionError("this user has no permissions to run the 'cluster|slots' command")),
    not_a_cluster(ResponseError("This instance has cluster support disabled")),
    ClusterCrossSlotError("Keys in request don't hash to the same slot"), MovedError("3999 10.0.0.6:6379"),
])
def test_what_a_retry_cannot_fix_is_not_an_outage_and_is_said(exc: BaseException) -> None:
    assert not is_outage(exc)
    refusal = explain_redis(exc)
    assert refusal is not None and refusal.definitive


def test_the_lines_name_what_to_change() -> None:
    auth = explain_redis(cannot_connect(AuthenticationError("invalid username-password pair")))
    assert auth is not None and auth.message == "Redis refused the user name or password in TWINMON_REDIS_URL"
    acl = explain_redis(not_a_cluster(NoPermissionError("this user has no permissions to run the 'cluster|slots' "
                                                        "command")))
    assert acl is not None and "Redis denied this ACL user" in acl.message and "'cluster|slots'" in acl.message
    off = explain_redis(not_a_cluster(ResponseError("This instance has cluster support disabled")))
    assert off is not None and off.message.startswith("TWINMON_REDIS_CLUSTER is on but the Redis at "
                                                      "TWINMON_REDIS_URL is not a cluster node")
    on = explain_redis(MovedError("3999 10.0.0.6:6379"))
    assert on is not None and on.message.endswith("set TWINMON_REDIS_CLUSTER=true")
    other = explain_redis(RedisClusterException(f"No way to dispatch this command. Command: ('HGET', '{SECRET}')"))
    assert other is not None and not other.definitive and SECRET not in other.message  # arguments never quoted
    assert isinstance(redis_cause(cannot_connect(RedisConnectionError("refused"))), RedisConnectionError)
