"""What Apache Kafka (KRaft) would refuse or get wrong in a compose file, found without running it.

`kraft_problems(compose)` returns one line per problem (an empty list: none found). It reads the
`KAFKA_*` variables the apache/kafka image turns into server properties, and the roadstream
services' `ROADSTREAM_*` client settings.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

LISTENER = re.compile(r"^(?P<name>[A-Z_][A-Z0-9_]*)://(?P<host>[^:/]*):(?P<port>\d+)$")
VOTER = re.compile(r"^(?P<id>\d+)@(?P<host>[^:]+):(?P<port>\d+)$")


def cluster_id_problem(value: object) -> str | None:
    """Why `value` is not a KRaft cluster id, or None.

    A cluster id is a UUID in URL-safe base64 without padding: 22 characters that decode to 16
    bytes (what `kafka-storage.sh random-uuid` prints). Kafka also refuses the all-zero id, and
    its own generator never starts one with '-', which a command line would take for an option.
    """
    if not isinstance(value, str) or len(value) != 22:
        return f"CLUSTER_ID {value!r} is not 22 characters of URL-safe base64"
    if not re.fullmatch(r"[A-Za-z0-9_-]{22}", value):
        return f"CLUSTER_ID {value!r} has characters outside URL-safe base64"
    try:
        raw = base64.urlsafe_b64decode(value + "==")
    except binascii.Error as exc:
        return f"CLUSTER_ID {value!r} does not decode: {exc}"
    if len(raw) != 16 or base64.urlsafe_b64encode(raw).decode().rstrip("=") != value:
        return f"CLUSTER_ID {value!r} is not the canonical encoding of 16 bytes"
    if raw == bytes(16) or value.startswith("-"):
        return f"CLUSTER_ID {value!r} is reserved or starts with '-'"
    return None


def listeners(text: str) -> dict[str, tuple[str, int]]:
    """`NAME://host:port,...` → {name: (host, port)}; ValueError on a malformed entry."""
    found: dict[str, tuple[str, int]] = {}
    for item in str(text).split(","):
        match = LISTENER.match(item.strip())
        if match is None:
            raise ValueError(f"listener {item!r} is not NAME://host:port")
        if match["name"] in found:
            raise ValueError(f"listener name {match['name']} appears twice")
        found[match["name"]] = (match["host"], int(match["port"]))
    return found


def kafka_nodes(compose: dict[str, Any]) -> dict[str, dict[str, str]]:
    """Services that run a Kafka node (they set KAFKA_PROCESS_ROLES) → their environment."""
    return {name: {k: str(v) for k, v in svc["environment"].items()}
            for name, svc in compose["services"].items()
            if "KAFKA_PROCESS_ROLES" in (svc.get("environment") or {})}


def roadstream_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Services that run a roadstream command."""
    return {name: svc for name, svc in compose["services"].items()
            if svc.get("command") and svc["command"][0] == "roadstream"}


def _published(svc: dict[str, Any]) -> set[tuple[int, int]]:
    pairs = set()
    for port in svc.get("ports", []):
        host, _, container = str(port).rpartition(":")
        pairs.add((int(host or container), int(container)))
    return pairs


def _node_problems(name: str, svc: dict[str, Any], env: dict[str, str]) -> list[str]:
    problems = []
    roles = set(env["KAFKA_PROCESS_ROLES"].split(","))
    try:
        bound = listeners(env["KAFKA_LISTENERS"])
        advertised = listeners(env.get("KAFKA_ADVERTISED_LISTENERS", ""))
    except (KeyError, ValueError) as exc:
        return [f"{name}: listeners: {exc}"]
    protocols = dict(p.split(":") for p in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    controllers = set(env.get("KAFKA_CONTROLLER_LISTENER_NAMES", "").split(",")) - {""}
    problems += [f"{name}: listener {n} has no security protocol"
                 for n in sorted(set(bound) - set(protocols))]
    if "controller" in roles and not controllers <= set(bound):
        problems.append(f"{name}: controller listener {sorted(controllers)} is not bound")
    for lname, (host, port) in advertised.items():
        if lname not in bound:
            problems.append(f"{name}: advertised listener {lname} is not bound")
        elif lname in controllers:
            problems.append(f"{name}: controller listener {lname} is advertised")
        elif bound[lname][1] != port and (port, bound[lname][1]) not in _published(svc):
            problems.append(f"{name}: {lname} is advertised on port {port}, bound on "
                            f"{bound[lname][1]}, and no port mapping joins them")
        elif host == "localhost" and (port, bound[lname][1]) not in _published(svc):
            problems.append(f"{name}: {lname} advertises localhost:{port}, not published")
    inter = env.get("KAFKA_INTER_BROKER_LISTENER_NAME", "")
    if "broker" in roles:
        if inter not in advertised:
            problems.append(f"{name}: inter-broker listener {inter!r} is not advertised")
        elif advertised[inter][0] not in {svc.get("hostname"), name}:
            problems.append(f"{name}: {inter} advertises host {advertised[inter][0]!r}, which is "
                            f"not this container ({svc.get('hostname') or name})")
    return problems


def _voter_problems(compose: dict[str, Any], nodes: dict[str, dict[str, str]]) -> list[str]:
    problems = []
    by_id: dict[int, str] = {}
    for name, env in nodes.items():
        node_id = int(env["KAFKA_NODE_ID"])
        if node_id in by_id:
            problems.append(f"{name}: KAFKA_NODE_ID {node_id} is also {by_id[node_id]}'s")
        by_id[node_id] = name
    controllers = {int(env["KAFKA_NODE_ID"]) for env in nodes.values()
                   if "controller" in env["KAFKA_PROCESS_ROLES"].split(",")}
    for name, env in nodes.items():
        voters = {}
        for item in env.get("KAFKA_CONTROLLER_QUORUM_VOTERS", "").split(","):
            match = VOTER.match(item.strip())
            if match is None:
                problems.append(f"{name}: quorum voter {item!r} is not id@host:port")
                continue
            voters[int(match["id"])] = (match["host"], int(match["port"]))
        if set(voters) != controllers:
            problems.append(f"{name}: quorum voters {sorted(voters)} are not the controllers "
                            f"{sorted(controllers)}")
        for voter_id, (host, port) in voters.items():
            if voter_id not in by_id:
                continue
            target = by_id[voter_id]
            target_env = nodes[target]
            svc = compose["services"][target]
            names = target_env.get("KAFKA_CONTROLLER_LISTENER_NAMES", "").split(",")
            bound = listeners(target_env["KAFKA_LISTENERS"])
            ports = {bound[n][1] for n in names if n in bound}
            if host not in {svc.get("hostname"), target} or port not in ports:
                problems.append(f"{name}: voter {voter_id}@{host}:{port} is not {target}'s "
                                f"controller listener (port {sorted(ports)})")
    return problems


def _replication_problems(nodes: dict[str, dict[str, str]]) -> list[str]:
    problems = []
    brokers = sum("broker" in env["KAFKA_PROCESS_ROLES"].split(",") for env in nodes.values())
    for name, env in nodes.items():
        for key in ("KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR",
                    "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
                    "KAFKA_DEFAULT_REPLICATION_FACTOR"):
            if int(env.get(key, 1)) > brokers:
                problems.append(f"{name}: {key}={env[key]} exceeds the {brokers} broker(s)")
        pairs = (("KAFKA_TRANSACTION_STATE_LOG_MIN_ISR",
                  "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"),
                 ("KAFKA_MIN_INSYNC_REPLICAS", "KAFKA_DEFAULT_REPLICATION_FACTOR"))
        for isr, factor in pairs:
            if int(env.get(isr, 1)) > int(env.get(factor, 1)):
                problems.append(f"{name}: {isr} exceeds {factor}")
    return problems


def _client_problems(compose: dict[str, Any], nodes: dict[str, dict[str, str]],
                     max_message_bytes: int) -> list[str]:
    problems = []
    internal = set()
    brokers = 0
    for env in nodes.values():
        if "broker" in env["KAFKA_PROCESS_ROLES"].split(","):
            brokers += 1
            host, port = listeners(env["KAFKA_ADVERTISED_LISTENERS"])[
                env["KAFKA_INTER_BROKER_LISTENER_NAME"]]
            internal.add(f"{host}:{port}")
        for key in ("KAFKA_MESSAGE_MAX_BYTES", "KAFKA_REPLICA_FETCH_MAX_BYTES"):
            if int(env.get(key, 0)) < max_message_bytes:
                problems.append(f"{key} is below the {max_message_bytes} bytes roadstream sends")
    for name, svc in roadstream_services(compose).items():
        env = {k: str(v) for k, v in (svc.get("environment") or {}).items()}
        servers = [s for s in env.get("ROADSTREAM_BOOTSTRAP_SERVERS", "").split(",") if s]
        if not servers:
            problems.append(f"{name}: no ROADSTREAM_BOOTSTRAP_SERVERS (it would start its own "
                            "embedded broker)")
        problems += [f"{name}: bootstrap server {s} is no broker's advertised listener"
                     for s in servers if s not in internal]
        replication = int(env.get("ROADSTREAM_TOPIC_REPLICATION", 1))
        if replication > brokers:
            problems.append(f"{name}: ROADSTREAM_TOPIC_REPLICATION={replication} exceeds the "
                            f"{brokers} broker(s)")
    init = compose["services"].get("kafka-init", {}).get("depends_on", {})
    for node in nodes:
        if (init.get(node) or {}).get("condition") != "service_healthy":
            problems.append(f"kafka-init does not wait for {node} to be healthy")
        if not compose["services"][node].get("healthcheck", {}).get("test"):
            problems.append(f"{node} has no healthcheck")
    return problems


def kraft_problems(compose: dict[str, Any], *, max_message_bytes: int) -> list[str]:
    """Every inconsistency found in the Kafka nodes of `compose` and in how roadstream uses them.

    `max_message_bytes`: the largest message roadstream produces (its setting).
    """
    nodes = kafka_nodes(compose)
    if not nodes:
        return ["no Kafka node (no service sets KAFKA_PROCESS_ROLES)"]
    problems = []
    ids = {env.get("CLUSTER_ID") for env in nodes.values()}
    if len(ids) != 1:
        problems.append(f"the nodes have different CLUSTER_IDs: {sorted(map(str, ids))}")
    problems += [p for p in (cluster_id_problem(i) for i in ids) if p]
    for name, env in nodes.items():
        problems += _node_problems(name, compose["services"][name], env)
    if problems:  # the checks below read the listeners parsed above
        return problems
    return (problems + _voter_problems(compose, nodes) + _replication_problems(nodes)
            + _client_problems(compose, nodes, max_message_bytes))
