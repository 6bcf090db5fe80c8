"""Named API tokens with roles, kept as SHA-256 hashes in a token file that is re-read on change.

The file (`CONVSERVE_TOKEN_FILE`) holds one token a line, `<name> <role> <sha256 hex>`, with `#`
comments and blank lines allowed. A token is never stored: `convserve token add` draws a random
one, prints it once and writes its hash. Tokens are 256-bit random strings, so a plain SHA-256
(no salt, no slow hash) is enough to make a stolen file useless.

Roles are ordered, each granting what the ones before it do:
`read` (GET) < `predict` (inference) < `write` (register, aliases, tags, config) < `admin`
(deletes, load/unload). `CONVSERVE_ADMIN_TOKEN`, when set, is one more token, named `admin`.
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import logging
import os
import re
import secrets
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("convserve.tokens")

ROLES = ("read", "predict", "write", "admin")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
HASH_RE = re.compile(r"^[0-9a-f]{64}$")
#: Names the server gives actors itself: a token file may not use them.
RESERVED = frozenset({"admin", "anonymous", "unknown"})
ADMIN_NAME = "admin"
PREFIX = "cvs_"


class TokenFileError(ValueError):
    """The token file cannot be used; says which line and why."""


@dataclass(frozen=True)
class Identity:
    """Who a request is: the token's name (the actor in history and logs) and its role."""

    name: str
    role: str

    def may(self, role: str) -> bool:
        return ROLES.index(self.role) >= ROLES.index(role)


@dataclass(frozen=True)
class Entry:
    name: str
    role: str
    sha256: str


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    """A fresh token: 256 random bits, with a prefix that secret scanners can recognise."""
    return PREFIX + secrets.token_urlsafe(32)


def parse(text: str, source: str = "the token file") -> list[Entry]:
    """The entries of a token file; TokenFileError naming the first bad line."""
    entries: list[Entry] = []
    seen: set[str] = set()
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        where = f"{source}, line {number}"
        if len(parts) != 3:
            raise TokenFileError(
                f"{where}: expected '<name> <role> <sha256>', got {len(parts)} fields"
            )
        name, role, digest = parts
        if not NAME_RE.match(name):
            raise TokenFileError(
                f"{where}: name {name!r} is not allowed (1-64 letters, digits, '.', '_', '@', '-')"
            )
        if name in RESERVED:
            raise TokenFileError(f"{where}: the name {name!r} is reserved")
        if name in seen:
            raise TokenFileError(f"{where}: a second token named {name!r}")
        if role not in ROLES:
            raise TokenFileError(f"{where}: role {role!r} is not one of {', '.join(ROLES)}")
        if not HASH_RE.match(digest):
            raise TokenFileError(
                f"{where}: the third field must be the token's SHA-256 as 64 lowercase hex "
                f"digits (never the token itself)"
            )
        seen.add(name)
        entries.append(Entry(name, role, digest))
    return entries


def render(entries: list[Entry]) -> str:
    lines = ["# convserve tokens: <name> <role> <sha256 of the token>; see `convserve token`"]
    lines += [f"{e.name} {e.role} {e.sha256}" for e in entries]
    return "\n".join(lines) + "\n"


def write_file(path: Path, entries: list[Entry]) -> None:
    """Replace the file atomically (readers see the old or the new one, never half), mode 0600."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(render(entries))
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextmanager
def editing(path: Path) -> Iterator[list[Entry]]:
    """The file's entries to change in place, written back at the end; one editor at a time
    (an advisory lock on a sidecar file), so two `convserve token add` never lose one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.parent / f".{path.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        entries = read_file(path)
        yield entries
        write_file(path, entries)


def read_file(path: Path) -> list[Entry]:
    return parse(path.read_text(encoding="utf-8"), str(path)) if path.exists() else []


class Tokens:
    """Every token the server accepts: the admin token and the token file's, which is re-read
    whenever it changes (its mtime, size or inode), so tokens are added and revoked without a
    restart. A token file that becomes unreadable or invalid stops its tokens working (fail
    closed) until it is fixed; the admin token goes on working."""

    def __init__(self, admin_token: str | None = None, path: str | Path | None = None):
        self._admin = hash_token(admin_token) if admin_token else None
        self.path = Path(path) if path else None
        self._lock = threading.Lock()
        self._stamp: tuple[int, int, int] | None = None
        self._entries: list[Entry] = []
        if self.path is not None:
            if not self.path.exists():
                raise TokenFileError(f"CONVSERVE_TOKEN_FILE {self.path} does not exist")
            self._entries = read_file(self.path)  # a bad file at start is an error, not a log
            self._stamp = self._stat()

    @property
    def configured(self) -> bool:
        """Whether any token exists (then every write needs one)."""
        return self._admin is not None or self.path is not None

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)  # type: ignore[arg-type]
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def _current(self) -> list[Entry]:
        if self.path is None:
            return []
        stamp = self._stat()
        if stamp != self._stamp:
            with self._lock:
                if stamp != self._stamp:
                    try:
                        entries = read_file(self.path) if stamp is not None else []
                        if stamp is None:
                            log.error("token file %s is gone: its tokens are refused", self.path)
                        else:
                            log.info("token file %s reloaded: %d tokens", self.path, len(entries))
                    except (OSError, UnicodeDecodeError, TokenFileError) as err:
                        log.error("token file %s is refused, so are its tokens: %s", self.path, err)
                        entries = []
                    self._entries, self._stamp = entries, stamp
        return self._entries

    def identify(self, token: str) -> Identity | None:
        """Whose token this is, or None. Compares hashes in constant time, one by one."""
        digest = hash_token(token).encode()
        found = None
        if self._admin is not None and hmac.compare_digest(digest, self._admin.encode()):
            found = Identity(ADMIN_NAME, "admin")
        for e in self._current():
            if hmac.compare_digest(digest, e.sha256.encode()) and found is None:
                found = Identity(e.name, e.role)
        return found
