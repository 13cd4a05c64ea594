"""The Kafka ACLs of twinmon's principals, read from one file (deploy/kafka-acls.toml).

Standard library only: ``deploy/local/kafka.sh`` runs this file with the system's ``python3`` to turn the ACLs into
``kafka-acls`` arguments (``python3 streams/kafka_acls.py FILE [TOPIC_PREFIX] [APP_ID]``, one binding per line),
and ``twinmon topics acls`` sends the same bindings to the brokers (streams/kafka_io.py).
"""

from __future__ import annotations

import sys
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

TOPIC_OPERATIONS = {"read": "Read", "write": "Write", "create": "Create", "describe": "Describe"}
CLUSTER_OPERATIONS = frozenset({"Alter", "Describe", "AlterConfigs", "DescribeConfigs", "Create", "IdempotentWrite"})
"""Operations a principal may be given on the cluster resource."""


class AclFileError(ValueError):
    """The ACL file names an unknown topic role, principal field or operation."""


@dataclass(frozen=True, slots=True)
class Binding:
    principal: str  # "User:twinmon-worker"
    resource: str  # "topic" | "group" | "cluster"
    name: str  # "kafka-cluster" for the cluster
    pattern: str  # "literal" | "prefixed"
    operation: str  # Kafka's name: "Read", "Write", ...


@dataclass(frozen=True, slots=True)
class AclFile:
    topics: Mapping[str, str]  # role -> default name
    principals: Mapping[str, Mapping[str, object]]

    def users(self) -> dict[str, str]:
        """Principal role -> SASL user name."""
        return {role: str(p["user"]) for role, p in self.principals.items()}

    def bindings(self, topic_names: Mapping[str, str], app_id: str) -> list[Binding]:
        """Every allow binding, with the installation's topic names (by role) and consumer group id."""
        if unknown := set(self.topics) ^ set(topic_names):
            raise AclFileError(f"topic roles differ from the file's [topics]: {sorted(unknown)}")
        out: list[Binding] = []
        for role, spec in self.principals.items():
            principal = f"User:{spec['user']}"
            for field, value in spec.items():
                if field == "user":
                    continue
                names = _strings(value, f"principals.{role}.{field}")
                if field in TOPIC_OPERATIONS:
                    for topic in names:
                        if topic not in topic_names:
                            raise AclFileError(f"principals.{role}.{field}: unknown topic role {topic!r}")
                        out.append(Binding(principal, "topic", topic_names[topic], "literal", TOPIC_OPERATIONS[field]))
                elif field in ("groups", "group_prefixes"):
                    pattern = "literal" if field == "groups" else "prefixed"
                    for group in names:
                        # Read on a group is what joining and committing need; Describe lets tools show its lag.
                        out += [Binding(principal, "group", group.format(app_id=app_id), pattern, op)
                                for op in ("Read", "Describe")]
                elif field == "cluster":
                    for op in names:
                        if op not in CLUSTER_OPERATIONS:
                            raise AclFileError(f"principals.{role}.cluster: unknown operation {op!r}")
                        out.append(Binding(principal, "cluster", "kafka-cluster", "literal", op))
                else:
                    raise AclFileError(f"principals.{role}: unknown field {field!r}")
        return out


def _strings(value: object, where: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise AclFileError(f"{where} must be a list of strings")
    return list(value)


def load(path: str | Path) -> AclFile:
    with open(path, "rb") as f:
        data = tomllib.load(f)
    topics, principals = data.get("topics"), data.get("principals")
    if not isinstance(topics, dict) or not isinstance(principals, dict) or not principals:
        raise AclFileError(f"{path}: needs a [topics] table and at least one [principals.NAME]")
    for role, spec in principals.items():
        if not isinstance(spec, dict) or not isinstance(spec.get("user"), str):
            raise AclFileError(f"{path}: principals.{role} needs a user")
    return AclFile({k: str(v) for k, v in topics.items()}, principals)


def acl_command_lines(acls: AclFile, topic_prefix: str, app_id: str) -> list[str]:
    """``kafka-acls --add`` arguments (topic names: the file's defaults behind a prefix), one call per principal,
    resource type, pattern and set of operations: each call starts a JVM, and one call adds the cross product."""
    names = {role: topic_prefix + name for role, name in acls.topics.items()}
    ops: dict[tuple[str, str, str, str], list[str]] = {}
    for b in acls.bindings(names, app_id):
        ops.setdefault((b.principal, b.resource, b.pattern, b.name), []).append(b.operation)
    calls: dict[tuple[str, str, str, tuple[str, ...]], list[str]] = {}
    for (principal, resource, pattern, name), operations in ops.items():
        calls.setdefault((principal, resource, pattern, tuple(operations)), []).append(name)
    lines = []
    for (principal, resource, pattern, same_operations), resource_names in calls.items():
        targets = ["--cluster"] if resource == "cluster" else [f"--{resource} {n}" for n in resource_names]
        lines.append(" ".join([f"--allow-principal {principal}", *targets, f"--resource-pattern-type {pattern}",
                               *(f"--operation {op}" for op in same_operations)]))
    return lines


if __name__ == "__main__":
    if len(sys.argv) < 2 or len(sys.argv) > 4:
        sys.exit("usage: kafka_acls.py FILE [TOPIC_PREFIX [APP_ID]] | kafka_acls.py FILE --users")
    acl_file, args = load(sys.argv[1]), sys.argv[2:]
    if args == ["--users"]:
        print("\n".join(f"{role} {user}" for role, user in acl_file.users().items()))
    else:
        print("\n".join(acl_command_lines(acl_file, args[0] if args else "", args[1] if len(args) > 1 else "twinmon")))
