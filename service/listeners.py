"""Where this process accepts connections: the sockets gunicorn actually bound, not a variable.

Whether registry writes may go without a token depends on who can connect, and only the bound
sockets say that: `HOST` is merely the default of gunicorn's `bind`, which `-b`, `GUNICORN_CMD_ARGS`
or a config file replace. deploy/gunicorn.conf.py records the sockets in every worker (and in the
master, for its start-up log line); a process that recorded none (gunicorn run without that config,
another WSGI server) does not know who can connect, and security treats that as "anyone".
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Listener:
    """One listening socket: its address as text, and whether only this machine can reach it."""

    address: str
    local: bool


@dataclass(frozen=True)
class Listeners:
    """Every socket the server listens on."""

    sockets: tuple[Listener, ...]

    @property
    def local_only(self) -> bool:
        """True when every socket is loopback or a Unix socket (and there is at least one)."""
        return bool(self.sockets) and all(s.local for s in self.sockets)

    @property
    def exposed(self) -> list[str]:
        """The addresses that machines other than this one may reach."""
        return [s.address for s in self.sockets if not s.local]

    def __str__(self) -> str:
        return ", ".join(s.address for s in self.sockets) or "no socket"

    @classmethod
    def of_sockets(cls, socks: Iterable[object]) -> Listeners:
        """From sockets, or gunicorn's listener objects (which wrap one in `.sock`)."""
        return cls(tuple(describe(getattr(s, "sock", s)) for s in socks))


def is_loopback_address(host: str) -> bool:
    """An IP literal of the loopback network (127.0.0.0/8, ::1, ::ffff:127.x.x.x)."""
    try:
        ip = ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def describe(sock: socket.socket) -> Listener:
    """A bound socket as a Listener; anything that cannot be told apart is not local."""
    try:
        family, name = sock.family, sock.getsockname()
    except OSError:
        return Listener("an unreadable socket", False)
    if family == getattr(socket, "AF_UNIX", None):
        # Only processes on this machine can open a Unix socket.
        path = name.decode(errors="replace") if isinstance(name, bytes) else name
        return Listener(f"unix:{path or '(unnamed)'}", True)
    if family in (socket.AF_INET, socket.AF_INET6) and isinstance(name, tuple):
        host, port = name[0], name[1]
        text = f"[{host}]:{port}" if family == socket.AF_INET6 else f"{host}:{port}"
        return Listener(text, is_loopback_address(host))
    return Listener(f"a socket of family {family!r} at {name!r}", False)


def tokenless_writes(listeners: Listeners | None) -> tuple[bool, str]:
    """(whether writes may go without any token, why), from where the server listens.

    The one decision about token-less writes (service.api.security asks it on every request, the
    start-up log once). Fails closed: unknown listeners, or any socket another machine can
    reach, mean no.
    """
    if listeners is None:
        return False, (
            "the server cannot tell which addresses it listens on (it was not started with "
            "deploy/gunicorn.conf.py), so it assumes any machine can connect"
        )
    if not listeners.local_only:
        exposed = ", ".join(listeners.exposed) or "no socket"
        return False, f"the server listens on {exposed}, which is not loopback"
    return True, f"the server listens only on loopback ({listeners})"


#: What this process recorded (None: nothing, so nobody knows who can connect).
_bound: Listeners | None = None


def record(listeners: Listeners | None) -> None:
    """Remember where this process listens (called by the server that bound the sockets)."""
    global _bound
    _bound = listeners


def bound() -> Listeners | None:
    """Where this process listens, if the server that runs it said so."""
    return _bound
