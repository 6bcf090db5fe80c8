"""What deploy/gunicorn.conf.py does to gunicorn for convserve's security and error contract.

Kept apart from the config file, which is about workers and threads: each function here is called
from one gunicorn hook there, and works whatever the worker class.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from service import listeners
from service.config import Settings


def record_listeners(sockets: Any) -> listeners.Listeners:
    """Remember in this process the sockets gunicorn bound (`server.LISTENERS` or a worker's)."""
    found = listeners.Listeners.of_sockets(sockets)
    listeners.record(found)
    return found


def announce_write_policy(server: Any, settings: Settings) -> None:
    """Log, once the sockets are bound, whether registry writes need the token, and why."""
    found = record_listeners(server.LISTENERS)
    log = logging.getLogger("gunicorn.error")
    if settings.admin_token or settings.token_file:
        log.info(
            "convserve: registry writes need 'Authorization: Bearer <token>' (%s%s); reads %s",
            "CONVSERVE_ADMIN_TOKEN" if settings.admin_token else "",
            f" tokens of {settings.token_file}" if settings.token_file else "",
            "too" if settings.reads_need_token else "do not",
        )
        return
    allowed, why = listeners.tokenless_writes(found)
    if allowed:
        log.warning(
            "convserve: CONVSERVE_ADMIN_TOKEN is not set; registry writes are accepted without a "
            "token because %s",
            why,
        )
    else:
        log.warning(
            "convserve: CONVSERVE_ADMIN_TOKEN is not set and %s: registry writes are refused "
            "(403) until a token is set",
            why,
        )


def answer_errors_as_problems() -> None:
    """Make gunicorn's own error answers (a request line or headers it cannot parse, over its
    limits) application/problem+json like every other error, instead of an HTML page.

    gunicorn writes those from `gunicorn.util.write_error`, which every worker class calls through
    the module; there is no hook for the body, so the function is replaced (in the master, before
    workers fork). Its signature has been the same since gunicorn 19.
    """
    from gunicorn import util

    if getattr(util.write_error, "convserve", False):
        return

    def write_problem(sock: Any, status_int: int, reason: str, mesg: str) -> None:
        detail = mesg or ("the server failed; the error is logged" if status_int >= 500 else reason)
        body = json.dumps(
            {"type": "about:blank", "title": reason, "status": status_int, "detail": detail}
        ).encode()
        head = (
            f"HTTP/1.1 {status_int} {reason}\r\n"
            "Connection: close\r\n"
            "Content-Type: application/problem+json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        util.write_nonblock(sock, head.encode("latin-1") + body)

    write_problem.convserve = True  # type: ignore[attr-defined]
    util.write_error = write_problem
