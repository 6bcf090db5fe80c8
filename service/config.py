"""Configuration from the environment (12-factor), with safe defaults."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from typing import Any

from .architecture import Limits
from .imaging import DEFAULT_MAX_PIXELS, DEFAULT_MAX_REQUEST_PIXELS
from .serving.batching import ModelConfig
from .serving.defaults import BATCH_BYTES, CACHE_BYTES, MAX_BATCH, MiB


def _int(env: dict[str, str], key: str, default: int) -> int:
    value = env.get(key)
    if value in (None, ""):
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{key} must be an integer, got {value!r}") from None


def _bool(env: dict[str, str], key: str) -> bool:
    value = (env.get(key) or "").strip().lower()
    if value in ("", "0", "false", "no", "off"):
        return False
    if value in ("1", "true", "yes", "on"):
        return True
    raise ValueError(f"{key} must be true or false, got {value!r}")


@dataclass
class Settings:
    database_url: str = "sqlite:///var/registry.db"
    admin_token: str | None = None
    #: Named tokens with roles, as hashes (see service.tokens); re-read when it changes.
    token_file: str | None = None
    #: Reads and predictions need a token too (role read / predict or above).
    reads_need_token: bool = False
    #: gunicorn's default bind address only: whether writes need a token is decided from the
    #: sockets actually bound (service.listeners), which `-b` or GUNICORN_CMD_ARGS may change.
    host: str = "127.0.0.1"
    port: int = 8000
    #: Largest request body accepted (weights of VGG-16 are 528 MiB as float32 .npz).
    max_upload_bytes: int = 600 * MiB
    #: Compiled models each worker keeps in memory (LRU beyond it).
    model_cache_bytes: int = CACHE_BYTES
    #: Activations one chunk of a batch may take; bigger batches run in chunks.
    batch_bytes: int = BATCH_BYTES
    #: Images or instances in one request.
    max_batch: int = MAX_BATCH
    max_image_pixels: int = DEFAULT_MAX_PIXELS
    #: Pixels of all the images of one request together (decode time and memory per request).
    max_request_pixels: int = DEFAULT_MAX_REQUEST_PIXELS
    #: Models each worker loads at start: "name" (its default version) or "name:ref".
    warmup: tuple[str, ...] = ()
    #: Batching defaults for models without a stored config (CONVSERVE_MAX_BATCH_SIZE, …).
    batching: ModelConfig = field(default_factory=ModelConfig)
    limits: Limits = field(
        default_factory=lambda: Limits(
            max_layers=2_000, max_tensor_elements=64 * 1024 * 1024, max_macs=200_000_000_000
        )
    )

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides: Any) -> Settings:
        env = dict(os.environ if environ is None else environ)
        d = cls()
        limits = Limits(
            max_layers=_int(env, "CONVSERVE_MAX_LAYERS", d.limits.max_layers),
            max_tensor_elements=_int(
                env, "CONVSERVE_MAX_TENSOR_ELEMENTS", d.limits.max_tensor_elements
            ),
            max_macs=_int(env, "CONVSERVE_MAX_MACS", d.limits.max_macs),
        )
        settings = cls(
            database_url=env.get("DATABASE_URL") or d.database_url,
            admin_token=env.get("CONVSERVE_ADMIN_TOKEN") or None,
            token_file=env.get("CONVSERVE_TOKEN_FILE") or None,
            reads_need_token=_bool(env, "CONVSERVE_READS_NEED_TOKEN"),
            host=env.get("HOST") or d.host,
            port=_int(env, "PORT", d.port),
            max_upload_bytes=_int(env, "CONVSERVE_MAX_UPLOAD_BYTES", d.max_upload_bytes),
            model_cache_bytes=_int(env, "CONVSERVE_MODEL_CACHE_BYTES", d.model_cache_bytes),
            batch_bytes=_int(env, "CONVSERVE_BATCH_BYTES", d.batch_bytes),
            max_batch=_int(env, "CONVSERVE_MAX_BATCH", d.max_batch),
            max_image_pixels=_int(env, "CONVSERVE_MAX_IMAGE_PIXELS", d.max_image_pixels),
            max_request_pixels=_int(env, "CONVSERVE_MAX_REQUEST_PIXELS", d.max_request_pixels),
            warmup=tuple(
                filter(None, (m.strip() for m in env.get("CONVSERVE_WARMUP", "").split(",")))
            ),
            batching=ModelConfig.from_env(env),
            limits=limits,
        )
        names = {f.name for f in fields(cls)}
        for key, value in overrides.items():
            if key not in names:
                raise TypeError(f"unknown setting {key!r}")
            setattr(settings, key, value)
        return settings
