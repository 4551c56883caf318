"""A Redis Sentinel deployment for tests: a master, one replica and three sentinels on private ports.

Every process is the server binary the toolkit ships (:func:`find_server_binary`): the replica
runs with ``--replicaof``, each sentinel with ``--sentinel`` and a ``sentinel.conf`` of its own
in the test's directory that monitors the master under :data:`MASTER_NAME` with a quorum of 2.
"""

from __future__ import annotations

import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis

from aury_tasks.broker.embedded import find_server_binary

#: The name the sentinels monitor the master under.
MASTER_NAME = "aurymaster"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class SentinelDeployment:
    """The processes of a sentinel deployment, and the URL that reaches its master."""

    master_port: int
    replica_port: int
    sentinel_ports: list[int]
    #: The master's, the replica's, then the sentinels' processes.
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    binary: str = ""
    directory: Path = Path()

    @property
    def url(self) -> str:
        """``redis+sentinel://`` naming the three sentinels, database 0."""
        hosts = ",".join(f"127.0.0.1:{port}" for port in self.sentinel_ports)
        return f"redis+sentinel://{hosts}/{MASTER_NAME}/0"

    def sentinel(self, number: int = 0) -> redis.Redis:
        """A client of one sentinel."""
        return redis.Redis(port=self.sentinel_ports[number], decode_responses=True, socket_timeout=2)

    def master_port_named_by(self, number: int) -> int | None:
        """The master's port as one sentinel names it (``None``: it does not answer)."""
        try:
            address = self.sentinel(number).sentinel_get_master_addr_by_name(MASTER_NAME)
        except redis.RedisError:
            return None
        return int(address[1]) if address else None

    def kill_master(self) -> None:
        """SIGKILL the first master: no chance to send its replica what it has not sent yet."""
        master = self.processes[0]
        master.kill()
        master.wait(10)

    def wait_for_failover(self, timeout: float = 30.0) -> float:
        """Until every sentinel names the replica as the master; return when that was seen (monotonic)."""
        deadline = time.monotonic() + timeout
        while {self.master_port_named_by(number) for number in range(3)} != {self.replica_port}:
            if time.monotonic() > deadline:
                raise AssertionError("the sentinels did not promote the replica")
            time.sleep(0.05)
        return time.monotonic()

    def restart_old_master_as_replica(self) -> None:
        """Start the killed master again as a replica of the promoted one (never as a master:
        no split brain), as a supervisor restarting it would once the sentinels reconfigured it."""
        home = self.directory / "master"
        command = [self.binary, "--port", str(self.master_port), "--dir", str(home), *_COMMON,
                   "--replicaof", "127.0.0.1", str(self.replica_port)]  # fmt: skip
        self.processes[0] = _spawn(command, home)

    def stop(self) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def start_sentinel_deployment(directory: Path) -> SentinelDeployment:
    """Start the master, its replica and three sentinels; return once all agree on them."""
    binary = find_server_binary()
    ports = _free_port(), _free_port(), [_free_port() for _ in range(3)]
    deployment = SentinelDeployment(*ports, [], binary, directory)
    try:
        _start(deployment, binary, directory)
        _wait_until_settled(deployment)
    except BaseException:
        deployment.stop()
        raise
    return deployment


#: The options of the master and the replica: loopback, no persistence, a full sync at once.
_COMMON = ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--repl-diskless-sync-delay", "0"]


def _start(deployment: SentinelDeployment, binary: str, directory: Path) -> None:
    common = _COMMON
    for name, port, extra in (
        ("master", deployment.master_port, []),
        ("replica", deployment.replica_port, ["--replicaof", "127.0.0.1", str(deployment.master_port)]),
    ):
        home = directory / name
        home.mkdir(parents=True)
        command = [binary, "--port", str(port), "--dir", str(home), *common, *extra]
        deployment.processes.append(_spawn(command, home))
    for number, port in enumerate(deployment.sentinel_ports):
        home = directory / f"sentinel-{number}"
        home.mkdir(parents=True)
        conf = home / "sentinel.conf"
        conf.write_text(
            f"port {port}\nbind 127.0.0.1\ndir {home}\n"
            f"sentinel monitor {MASTER_NAME} 127.0.0.1 {deployment.master_port} 2\n"
            f"sentinel down-after-milliseconds {MASTER_NAME} 1000\n"
            f"sentinel failover-timeout {MASTER_NAME} 5000\n"
        )
        deployment.processes.append(_spawn([binary, str(conf), "--sentinel"], home))


def _spawn(command: list[str], home: Path) -> subprocess.Popen[bytes]:
    log = (home / "server.log").open("ab")
    return subprocess.Popen(command, cwd=home, stdout=log, stderr=subprocess.STDOUT)


def _wait_until_settled(deployment: SentinelDeployment, timeout: float = 20.0) -> None:
    """Until the replica is in sync and every sentinel knows it and the two other sentinels."""
    deadline = time.monotonic() + timeout
    replica = redis.Redis(port=deployment.replica_port, decode_responses=True, socket_timeout=2)
    while True:
        try:
            in_sync = replica.info("replication").get("master_link_status") == "up"
            if in_sync and all(_settled(deployment.sentinel(number)) for number in range(3)):
                return
        except redis.RedisError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError("the sentinel deployment did not settle")
        time.sleep(0.1)


def _settled(sentinel: redis.Redis) -> bool:
    replicas = sentinel.execute_command("SENTINEL", "REPLICAS", MASTER_NAME)
    others = sentinel.execute_command("SENTINEL", "SENTINELS", MASTER_NAME)
    return len(replicas) == 1 and len(others) == 2
