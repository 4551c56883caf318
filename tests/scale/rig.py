"""A rig of network namespaces: one switch, hosts on an isolated subnet, links that can be cut.

Every host is a network namespace (``ip netns``) with one veth link to a bridge that lives in a
namespace of its own (the switch), so nothing is added to the machine's own namespace: no
interface, no address, no route. The subnet is :data:`SUBNET`; names carry a per-run prefix, so
two rigs never meet. :meth:`Rig.close` deletes every namespace (and with them their links);
the fixture calls it whatever the test did.

A host runs processes with ``ip netns exec`` (the main venv's Python, the worktree on
``PYTHONPATH``). The test process itself can step into a host for a while
(:meth:`Rig.inside`): the calling thread's network namespace is switched with ``setns(2)``, so
the Redis clients it opens meanwhile live on that host.

Cutting a host's link (:meth:`Rig.cut`) sets the switch's end of its veth down: the host's
packets vanish, silently, as on a pulled cable; its connections stay open and its processes see
nothing but silence. :meth:`Rig.restore` sets it up again.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
#: The rig's subnet; the switch has no address on it, hosts get .1, .2, ...
SUBNET = "10.231.0"
CLONE_NEWNET = 0x40000000
#: libfaketime, for a host whose wall clock is skewed (Debian's ``faketime`` package).
FAKETIME_LIBRARY = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1"

_libc = ctypes.CDLL(None, use_errno=True)


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run ``ip ARGS``; raise with its message when it fails and ``check``."""
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")
    return done


def namespaces_unavailable() -> str | None:
    """Why this machine cannot run the rig (``None``: it can): a probe namespace is made and deleted."""
    if shutil.which("ip") is None:
        return "iproute2's ip is not installed (apt-get install iproute2)"
    probe = f"auprobe{uuid.uuid4().hex[:6]}"
    made = ip("netns", "add", probe, check=False)
    if made.returncode != 0:
        return f"cannot create a network namespace: {made.stderr.strip() or 'ip netns add failed'}"
    try:
        veth = ip("-n", probe, "link", "add", "a0", "type", "veth", "peer", "name", "b0", check=False)
        if veth.returncode != 0:
            return f"cannot create a veth pair: {veth.stderr.strip()}"
    finally:
        ip("netns", "delete", probe, check=False)
    return None


#: Put first on a skewed host's ``PYTHONPATH``: its ``sitecustomize`` makes ``time.sleep`` work
#: under libfaketime (see ``skewed_site/sitecustomize.py``).
SKEWED_SITE = Path(__file__).resolve().parent / "skewed_site"
#: What the faketime probe runs: a sleep, a timed lock wait, and the skewed wall clock (printed).
_PROBE = (
    "import threading, time; m = time.monotonic(); time.sleep(0.01); threading.Event().wait(0.05); "
    "print(time.time(), time.monotonic() - m)"
)


def skew_environment(skew: float) -> dict[str, str]:
    """The variables that put a process's wall clock ``skew`` seconds ahead (libfaketime), its
    monotonic clock left alone, ``time.sleep`` made to work (:data:`SKEWED_SITE`)."""
    return {"LD_PRELOAD": FAKETIME_LIBRARY, "FAKETIME": f"{skew:+g}s", "FAKETIME_DONT_FAKE_MONOTONIC": "1",
            "PYTHONPATH": os.pathsep.join([str(SKEWED_SITE), str(ROOT)])}  # fmt: skip


def faketime_unavailable(skew: float = 30.0) -> str | None:
    """Why a host cannot have a wall clock ``skew`` s ahead here (``None``: it can): a probe process
    under :func:`skew_environment` must sleep, wait on a lock in time and see the skewed clock."""
    if not os.path.exists(FAKETIME_LIBRARY):
        return f"libfaketime is not installed ({FAKETIME_LIBRARY}; apt-get install faketime)"
    env = {**os.environ, **skew_environment(skew)}
    try:
        before = time.time()
        probe = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True,
                               timeout=20)  # fmt: skip
    except subprocess.TimeoutExpired:
        return "libfaketime hangs Python's time.sleep or its lock waits here"
    if probe.returncode != 0:
        return f"libfaketime breaks Python here: {probe.stderr.strip().splitlines()[-1:]}"
    seen, waited = (float(value) for value in probe.stdout.split())
    if waited > 5:
        return f"a lock wait of 0.05 s took {waited:.1f} s under libfaketime"
    if not before + skew - 5 < seen < time.time() + skew + 5:
        return f"libfaketime did not put the clock {skew:g} s ahead (it read {seen - before:+.1f} s)"
    return None


@dataclass
class Host:
    """One host: its namespace, address, directory and clock skew (seconds, via libfaketime)."""

    name: str
    namespace: str
    address: str
    directory: Path
    veth: str
    skew: float = 0.0


@dataclass
class Rig:
    """The namespaces of one test (see the module's text)."""

    directory: Path
    prefix: str = field(default_factory=lambda: f"au{uuid.uuid4().hex[:5]}")
    hosts: dict[str, Host] = field(default_factory=dict)
    _switch_made: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def switch(self) -> str:
        return f"{self.prefix}-sw"

    def _make_switch(self) -> None:
        ip("netns", "add", self.switch)
        self._switch_made = True
        ip("-n", self.switch, "link", "add", "br0", "type", "bridge")
        ip("-n", self.switch, "link", "set", "br0", "up")

    def add_host(self, name: str, *, skew: float = 0.0) -> Host:
        """A new host on the switch, with the next address of the subnet."""
        with self._lock:
            if not self._switch_made:
                self._make_switch()
            number = len(self.hosts) + 1
            host = Host(name=name, namespace=f"{self.prefix}-{name}", address=f"{SUBNET}.{number}",
                        directory=self.directory / name, veth=f"v{number}", skew=skew)  # fmt: skip
            host.directory.mkdir(parents=True, exist_ok=True)
            ip("netns", "add", host.namespace)
            self.hosts[name] = host
        ip("-n", self.switch, "link", "add", host.veth, "type", "veth", "peer", "name", "eth0",
           "netns", host.namespace)  # fmt: skip
        ip("-n", self.switch, "link", "set", host.veth, "master", "br0")
        ip("-n", self.switch, "link", "set", host.veth, "up")
        ip("-n", host.namespace, "addr", "add", f"{host.address}/24", "dev", "eth0")
        ip("-n", host.namespace, "link", "set", "eth0", "up")
        ip("-n", host.namespace, "link", "set", "lo", "up")
        return host

    def cut(self, host: Host) -> None:
        """Pull ``host``'s cable: its packets are dropped, silently, until :meth:`restore`."""
        ip("-n", self.switch, "link", "set", host.veth, "down")

    def restore(self, host: Host) -> None:
        """Plug ``host``'s cable back."""
        ip("-n", self.switch, "link", "set", host.veth, "up")

    def command(self, host: Host, *args: str) -> list[str]:
        """``args`` as run on ``host`` (``ip netns exec``)."""
        return ["ip", "netns", "exec", host.namespace, *args]

    def environment(self, host: Host, extra: dict[str, str]) -> dict[str, str]:
        """The environment of a process on ``host``: ours without TASK_*, the worktree importable,
        the host named, and libfaketime preloaded when the host's clock is skewed."""
        env = {key: value for key, value in os.environ.items() if not key.startswith("TASK_")}
        env.update(PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1", SCALE_HOST=host.name,
                   SCALE_SKEW=str(host.skew), TASK_DATA_DIR=str(host.directory / ".aum"))  # fmt: skip
        if host.skew:
            env.update(skew_environment(host.skew))
        env.update(extra)
        return env

    def python(self, host: Host, *args: str) -> list[str]:
        """``python ARGS`` on ``host``, with the interpreter running the tests."""
        return self.command(host, sys.executable, *args)

    @contextlib.contextmanager
    def inside(self, host: Host) -> Iterator[None]:
        """Run the calling thread in ``host``'s network namespace until the block ends."""
        own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        target = os.open(f"/run/netns/{host.namespace}", os.O_RDONLY)
        try:
            _setns(target)
            try:
                yield
            finally:
                _setns(own)
        finally:
            os.close(target)
            os.close(own)

    def close(self) -> None:
        """Delete every namespace of the rig (their links go with them); never raises."""
        for host in list(self.hosts.values()):
            ip("netns", "delete", host.namespace, check=False)
        if self._switch_made:
            ip("netns", "delete", self.switch, check=False)
        self.hosts.clear()
        self._switch_made = False


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"setns: {os.strerror(error)}")
