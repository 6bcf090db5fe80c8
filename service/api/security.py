"""Registry writes: a bearer token when one is configured, else loopback-only."""

from __future__ import annotations

import functools
import hmac
from collections.abc import Callable
from typing import Any

from flask import current_app, request

from service.errors import Forbidden, Unauthorized


def require_write(view: Callable[..., Any]) -> Callable[..., Any]:
    """Guard a registry write (POST/PUT/DELETE under /v1/models)."""

    @functools.wraps(view)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        settings = current_app.extensions["convserve"].settings
        token = settings.admin_token
        if token is None:
            if not settings.writes_open:
                raise Forbidden(
                    f"registry writes are disabled: the server listens on {settings.host}, not "
                    f"loopback, and CONVSERVE_ADMIN_TOKEN is not set"
                )
            return view(*args, **kwargs)
        header = request.headers.get("Authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not given:
            raise Unauthorized("registry writes need the header 'Authorization: Bearer <token>'")
        if not hmac.compare_digest(given.strip().encode(), token.encode()):
            raise Unauthorized("the bearer token is not the admin token")
        return view(*args, **kwargs)

    return guarded
