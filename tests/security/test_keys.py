"""Where keys come from: generated in dev, required in prod."""

from __future__ import annotations

import json
import logging
import stat
import uuid
from pathlib import Path
from typing import Any

import pytest

from opdesk.config import Settings
from opdesk.security.crypto import FieldCipher, StaticKeyring
from opdesk.security.keys import (
    FileKeyring,
    KeyConfigError,
    keyring_env,
    load_keyring,
    new_keyring,
)
from tests.factories import Where

ROW = Where(tenant_id=uuid.uuid4(), table="t", column="c", row_id=uuid.uuid4())


def settings(tmp_path: Path, **values: Any) -> Settings:
    return Settings(data_dir=tmp_path, _env_file=None, **values)


def test_dev_generates_keys_once_and_warns(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        first = load_keyring(settings(tmp_path, env="dev"))
    assert "DEVELOPMENT keys" in caplog.text
    path = tmp_path / "keys" / "keyring.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    caplog.clear()
    second = load_keyring(settings(tmp_path, env="dev"))
    assert caplog.text == ""
    assert first.current() == second.current()


def test_prod_without_keys_refuses_to_start_and_names_them(tmp_path: Path) -> None:
    with pytest.raises(KeyConfigError) as info:
        load_keyring(settings(tmp_path, env="prod", blind_index_key="x"))
    message = str(info.value)
    assert "OPDESK_MASTER_KEYS" in message
    assert "OPDESK_SIGNING_KEY" in message
    assert "OPDESK_BLIND_INDEX_KEY" not in message
    assert not (tmp_path / "keys").exists()


def test_prod_uses_keys_from_the_environment(tmp_path: Path) -> None:
    ring = new_keyring()
    env = keyring_env(ring)
    source = load_keyring(
        settings(
            tmp_path,
            env="prod",
            master_keys=env["OPDESK_MASTER_KEYS"],
            blind_index_key=env["OPDESK_BLIND_INDEX_KEY"],
            signing_key=env["OPDESK_SIGNING_KEY"],
        )
    )
    assert isinstance(source, StaticKeyring)
    assert source.current() == ring


@pytest.mark.parametrize(
    ("master", "message"),
    [
        ("not json", "not valid JSON"),
        ('{"active": 1}', "malformed"),
        ('{"active": 1, "keys": {"1": "***"}}', "not valid base64"),
    ],
)
def test_malformed_environment_keys_get_a_clear_error(
    tmp_path: Path, master: str, message: str
) -> None:
    env = keyring_env(new_keyring())
    with pytest.raises(KeyConfigError, match=message):
        load_keyring(
            settings(
                tmp_path,
                env="prod",
                master_keys=master,
                blind_index_key=env["OPDESK_BLIND_INDEX_KEY"],
                signing_key=env["OPDESK_SIGNING_KEY"],
            )
        )


def test_file_keyring_rotation_keeps_old_keys_and_other_processes_catch_up(
    tmp_path: Path,
) -> None:
    path = tmp_path / "keyring.json"
    writer = FileKeyring(path)
    writer.save(new_keyring())
    reader = FileKeyring(path)
    old = FieldCipher(reader).encrypt("before", **ROW)

    new_kid = writer.add_active_key()
    assert new_kid == 2
    doc = json.loads(path.read_text())
    assert doc["active"] == 2
    assert set(doc["keys"]) == {"1", "2"}

    # The writer's new ciphertext names key 2, which the reader has not loaded yet:
    # it reloads the file instead of failing.
    fresh = FieldCipher(writer).encrypt("after", **ROW)
    assert FieldCipher(reader).decrypt_str(fresh, **ROW) == "after"
    assert FieldCipher(writer).decrypt_str(old, **ROW) == "before"
