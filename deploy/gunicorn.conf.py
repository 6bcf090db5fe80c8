"""gunicorn settings, from the environment as API.md's table says."""

import logging
import os

from service.config import Settings

_settings = Settings.from_env()

bind = f"{_settings.host}:{_settings.port}"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
worker_class = "gthread"
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "120"))
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT", "30"))
keepalive = 5
accesslog = "-"
errorlog = "-"
wsgi_app = "service.wsgi:app"


def on_starting(server):  # noqa: ANN001, ANN201 - gunicorn's hook signature
    log = logging.getLogger("gunicorn.error")
    if _settings.admin_token:
        log.info("convserve: registry writes need 'Authorization: Bearer $CONVSERVE_ADMIN_TOKEN'")
    elif _settings.writes_open:
        log.warning(
            "convserve: CONVSERVE_ADMIN_TOKEN is not set; registry writes are accepted without a "
            "token because the server listens only on loopback (%s)",
            _settings.host,
        )
    else:
        log.warning(
            "convserve: CONVSERVE_ADMIN_TOKEN is not set and %s is not loopback: registry writes "
            "are refused (403) until a token is set",
            _settings.host,
        )
