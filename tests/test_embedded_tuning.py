"""The embedded server is sized to the machine on its first start, and only then."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from sqlalchemy import create_engine

from opdesk.db import EmbeddedServer, embedded_settings

GB = 1024**3


@pytest.mark.parametrize(
    ("memory", "shared", "cache"),
    [
        (1 * GB, "128MB", "512MB"),  # a small machine keeps PostgreSQL's floor
        (8 * GB, "1024MB", "4096MB"),  # a clinic PC: an eighth, and half for the OS cache
        (64 * GB, "2048MB", "32768MB"),  # a large server: buffers capped at 2 GB
    ],
)
def test_settings_follow_the_machines_memory(memory: int, shared: str, cache: str) -> None:
    settings = embedded_settings(memory)
    assert settings["shared_buffers"] == shared
    assert settings["effective_cache_size"] == cache
    assert settings["jit"] == "off"


@pytest.mark.xdist_group("embedded-start")
def test_tuning_applies_once_and_survives_a_restart() -> None:
    # Not pytest's tmp_path: the server runs as its own system user, which must reach it.
    with tempfile.TemporaryDirectory(prefix="opdesk-tuning-") as tmp:
        _tune_and_restart(Path(tmp))


def _tune_and_restart(tmp_path: Path) -> None:
    settings = {"shared_buffers": "160MB", "effective_cache_size": "1GB", "jit": "off"}
    server = EmbeddedServer(tmp_path / "pg", cleanup_mode=None)
    try:
        assert server.tune(settings) == list(settings)
        assert _shown(server) == {
            "shared_buffers": "160MB",
            "effective_cache_size": "1GB",
            "jit": "off",
        }
        assert server.tune(settings) == []  # already in force: nothing written, no restart
    finally:
        server.stop()
    again = EmbeddedServer(tmp_path / "pg", cleanup_mode="delete")
    try:
        assert _shown(again)["shared_buffers"] == "160MB"
        assert again.tune(settings) == []
        assert again.tune({**settings, "jit": "on"}) == ["jit"]  # reloaded, not restarted
        assert _shown(again)["jit"] == "on"
    finally:
        again.stop()


def _shown(server: EmbeddedServer) -> dict[str, str]:
    engine = create_engine(server.superuser_url)
    try:
        with engine.connect() as conn:
            return {
                name: str(conn.exec_driver_sql(f"show {name}").scalar())
                for name in ("shared_buffers", "effective_cache_size", "jit")
            }
    finally:
        engine.dispose()
