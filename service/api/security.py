"""Who may do what: every /v1 and /v2 request is checked here, once, before its view runs.

Each view declares the role it needs with `@requires(...)` (or `@public`); a view that declares
nothing needs `read` for GET/HEAD and `write` for anything else, so a new endpoint is never open
by accident. Without a token a request is `anonymous`: allowed to read and predict unless
`CONVSERVE_READS_NEED_TOKEN` is set, and to write only while no token exists at all and every
socket the server bound is loopback (`service.listeners.tokenless_writes`, which fails closed).
With `Authorization: Bearer <token>`, the token's name becomes the request's actor (in the
history and the access log) and its role decides: 401 for a missing or unknown token, 403 for a
role below the one needed.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any, TypeVar

from flask import Flask, current_app, g, request

from service import listeners
from service.errors import Forbidden, Unauthorized
from service.listeners import tokenless_writes
from service.registry.history import ANONYMOUS
from service.tokens import Identity

F = TypeVar("F", bound=Callable[..., Any])

ROLE_ATTR = "convserve_role"
#: The OpenAPI security scheme's name (see init_app).
BEARER = "bearer"
PUBLIC = "public"
#: The WSGI environ key the access log reads the actor from (service.logs).
ACTOR_ENVIRON = "convserve.actor"
PROTECTED = ("/v1/", "/v2/")
#: What each role allows, as the subject of a sentence ("changing the registry needs ...").
WHAT = {
    "read": "reading the registry",
    "predict": "running a model",
    "write": "changing the registry",
    "admin": "deleting a model or version, or loading or unloading a model,",
}


def requires(role: str) -> Callable[[F], F]:
    """Declare the role a view needs (`read`, `predict`, `write` or `admin`)."""

    def mark(view: F) -> F:
        setattr(view, ROLE_ATTR, role)
        # In /openapi.json: the bearer scheme (optional for reads and predictions, which need a
        # token only with CONVSERVE_READS_NEED_TOKEN) and the role, as flask-smorest's doc()
        # would add them.
        apidoc = copy.deepcopy(getattr(view, "_apidoc", {}))
        manual = apidoc.setdefault("manual_doc", {})
        optional = role in ("read", "predict")
        manual["security"] = [{}, {BEARER: []}] if optional else [{BEARER: []}]
        manual["x-convserve-role"] = role
        view._apidoc = apidoc  # type: ignore[attr-defined]
        return view

    return mark


def public(view: F) -> F:
    """Declare a view open to everyone, always (health checks)."""
    setattr(view, ROLE_ATTR, PUBLIC)
    return view


def actor() -> str:
    """The name of whoever makes the current request (`anonymous` without a token)."""
    return g.get("actor") or ANONYMOUS


def needed_role() -> str | None:
    """The role the current request needs, or None when it is not checked."""
    view = current_app.view_functions.get(request.endpoint) if request.endpoint else None
    if view is None or not request.path.startswith(PROTECTED):
        return None
    role = getattr(view, ROLE_ATTR, None)
    if role == PUBLIC:
        return None
    if role is None:
        role = "read" if request.method in ("GET", "HEAD", "OPTIONS") else "write"
    return role


def _bearer() -> str | None:
    header = request.headers.get("Authorization")
    if header is None:
        return None
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        raise Unauthorized("send the token as 'Authorization: Bearer <token>'")
    return given.strip()


def authorize() -> None:
    """The before-request check (see the module's docstring)."""
    role = needed_role()
    if role is None:
        return
    services = current_app.extensions["convserve"]
    settings, tokens = services.settings, services.tokens
    given = _bearer() if tokens.configured else None
    if given is None:
        if role in ("read", "predict") and not settings.reads_need_token:
            return
        if not tokens.configured:
            allowed, why = tokenless_writes(listeners.bound())
            if allowed:
                return
            raise Forbidden(
                f"{WHAT[role]} needs a token here: {why}, and neither CONVSERVE_ADMIN_TOKEN nor "
                f"CONVSERVE_TOKEN_FILE is set"
            )
        raise Unauthorized(
            f"{WHAT[role]} needs a token with role {role} or above: 'Authorization: Bearer <token>'"
        )
    ident = tokens.identify(given)
    if ident is None:
        raise Unauthorized("the bearer token is not one this server knows")
    _remember(ident)
    if not ident.may(role):
        raise Forbidden(
            f"token {ident.name!r} has role {ident.role}; {WHAT[role]} needs role {role} or above"
        )


def _remember(ident: Identity) -> None:
    g.actor = ident.name
    request.environ[ACTOR_ENVIRON] = ident.name


def init_app(app: Flask) -> None:
    app.before_request(authorize)
