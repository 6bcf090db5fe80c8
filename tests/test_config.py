"""Settings from the environment: every variable the README's configuration table lists."""

from __future__ import annotations

import pytest

from service.config import Settings


def test_defaults():
    s = Settings.from_env({})
    assert s.database_url == "sqlite:///var/registry.db" and s.port == 8000
    assert s.model_cache_bytes == 1 << 30 and s.batch_bytes == 256 << 20
    assert s.max_batch == 256 and s.max_image_pixels == 89_478_485 and s.warmup == ()
    assert s.max_request_pixels == 200_000_000
    assert s.host == "127.0.0.1" and s.admin_token is None


def test_every_variable_is_read():
    s = Settings.from_env(
        {
            "DATABASE_URL": "postgresql+psycopg://db/x",
            "PORT": "9000",
            "HOST": "0.0.0.0",
            "CONVSERVE_ADMIN_TOKEN": "t",
            "CONVSERVE_MAX_UPLOAD_BYTES": "10",
            "CONVSERVE_MODEL_CACHE_BYTES": "11",
            "CONVSERVE_BATCH_BYTES": "12",
            "CONVSERVE_MAX_BATCH": "13",
            "CONVSERVE_MAX_IMAGE_PIXELS": "14",
            "CONVSERVE_MAX_REQUEST_PIXELS": "16",
            "CONVSERVE_WARMUP": " digits:production, lenet ,,",
            "CONVSERVE_MAX_LAYERS": "15",
            "CONVSERVE_TOKEN_FILE": "/etc/convserve/tokens",
            "CONVSERVE_READS_NEED_TOKEN": "true",
        }
    )
    assert (s.database_url, s.port) == ("postgresql+psycopg://db/x", 9000)
    assert (s.host, s.admin_token) == ("0.0.0.0", "t")
    assert (s.max_upload_bytes, s.model_cache_bytes, s.batch_bytes) == (10, 11, 12)
    assert (s.max_batch, s.max_image_pixels, s.limits.max_layers) == (13, 14, 15)
    assert s.max_request_pixels == 16
    assert s.warmup == ("digits:production", "lenet")
    assert (s.token_file, s.reads_need_token) == ("/etc/convserve/tokens", True)


def test_a_bad_switch_names_the_variable():
    assert not Settings.from_env({"CONVSERVE_READS_NEED_TOKEN": "0"}).reads_need_token
    with pytest.raises(ValueError, match="CONVSERVE_READS_NEED_TOKEN must be true or false"):
        Settings.from_env({"CONVSERVE_READS_NEED_TOKEN": "maybe"})


def test_a_bad_number_names_the_variable():
    with pytest.raises(ValueError, match="CONVSERVE_MAX_BATCH must be an integer, got 'lots'"):
        Settings.from_env({"CONVSERVE_MAX_BATCH": "lots"})
