"""Gaps that mutation testing (``make mutate``, entry ``security``) found in the key tests:
each test kills mutants that survived them. Mutant ids are mutmut's.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
import stat
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from opdesk.config import Settings
from opdesk.context import system_context
from opdesk.db import Database
from opdesk.security import passwords, permissions, throttle, tokens
from opdesk.security.crypto import DecryptionError, FieldCipher, Keyring, StaticKeyring
from opdesk.security.keys import FileKeyring, KeyConfigError, keyring_env, load_keyring, new_keyring
from opdesk.uow import transaction
from tests.factories.crypto import Where


def _settings(tmp_path: Path, **values: Any) -> Settings:
    return Settings(data_dir=tmp_path, _env_file=None, **values)


def test_each_purpose_derives_its_own_32_byte_key() -> None:
    # crypto.xǁKeyringǁderived_key__mutmut_4, _8 (no `info`: every purpose got one key),
    # _9 (33 bytes). (_7 drops `salt=None`, HKDF's default: equivalent.)
    ring = new_keyring()
    cookies, csrf = ring.derived_key("opdesk flash cookie v1"), ring.derived_key("opdesk csrf v1")
    assert len(cookies) == len(csrf) == 32
    assert cookies != csrf
    assert ring.derived_key("opdesk csrf v1") == csrf


@pytest.mark.parametrize(
    ("variable", "field"),
    [("OPDESK_BLIND_INDEX_KEY", "blind_index_key"), ("OPDESK_SIGNING_KEY", "signing_key")],
)
def test_a_key_that_is_not_base64_is_named_by_its_variable(
    tmp_path: Path, variable: str, field: str
) -> None:
    # keys.x_load_keyring__mutmut_14, _18, _19, _21, _25, _26: the message's name was unread.
    env = keyring_env(new_keyring())
    values = {
        "master_keys": env["OPDESK_MASTER_KEYS"],
        "blind_index_key": env["OPDESK_BLIND_INDEX_KEY"],
        "signing_key": env["OPDESK_SIGNING_KEY"],
        field: "***",
    }
    with pytest.raises(KeyConfigError) as refused:
        load_keyring(_settings(tmp_path, env="prod", **values))
    assert str(refused.value) == f"{variable} is not valid base64"


def test_a_data_key_that_is_not_base64_is_named_by_its_number(tmp_path: Path) -> None:
    # keys.x_keyring_from_json__mutmut_3; and x_load_keyring__mutmut_10 (the JSON message)
    env = keyring_env(new_keyring())
    for master, message in (
        ('{"active": 1, "keys": {"7": "***"}}', "data key 7 is not valid base64"),
        ("not json", "OPDESK_MASTER_KEYS is not valid JSON"),
    ):
        with pytest.raises(KeyConfigError) as refused:
            load_keyring(
                _settings(
                    tmp_path,
                    env="prod",
                    master_keys=master,
                    blind_index_key=env["OPDESK_BLIND_INDEX_KEY"],
                    signing_key=env["OPDESK_SIGNING_KEY"],
                )
            )
        assert str(refused.value) == message


@pytest.mark.parametrize("given", ["signing_key", "blind_index_key", "master_keys"])
def test_a_developer_with_one_key_set_still_gets_the_dev_key_file(
    tmp_path: Path, given: str
) -> None:
    # keys.x_load_keyring__mutmut_2, _3: one variable set counted as all three.
    env = keyring_env(new_keyring())
    names = {
        "master_keys": "OPDESK_MASTER_KEYS",
        "blind_index_key": "OPDESK_BLIND_INDEX_KEY",
        "signing_key": "OPDESK_SIGNING_KEY",
    }
    source = load_keyring(_settings(tmp_path, env="dev", **{given: env[names[given]]}))
    assert isinstance(source, FileKeyring)


def test_the_dev_key_warning_says_where_the_keys_are(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # keys.x_dev_keyring__mutmut_6, _8, _9: the warning's path and words were unread.
    with caplog.at_level(logging.WARNING):
        load_keyring(_settings(tmp_path, env="dev"))
    path = tmp_path / "keys" / "keyring.json"
    assert (
        f"generated DEVELOPMENT keys in {path}; never use them for real patient data"
        in caplog.messages
    )


def test_production_names_every_missing_key_and_what_to_run(tmp_path: Path) -> None:
    # keys.x_load_keyring__mutmut_35, _37 to _39, _46, _49, _50: only "not set" was matched.
    with pytest.raises(KeyConfigError) as refused:
        load_keyring(_settings(tmp_path, env="prod"))
    assert str(refused.value) == (
        "production start refused: OPDESK_MASTER_KEYS, OPDESK_BLIND_INDEX_KEY, "
        "OPDESK_SIGNING_KEY not set. Generate keys with `opdesk keys generate` and "
        "provide them through the environment."
    )


@pytest.mark.parametrize("entry", ["blind_index_key", "signing_key"])
def test_a_key_file_with_a_damaged_key_names_the_entry(tmp_path: Path, entry: str) -> None:
    # keys.xǁFileKeyringǁreload__mutmut_4, _8, _9, _13, _17, _18
    path = tmp_path / "keys" / "keyring.json"
    FileKeyring(path).save(new_keyring())
    doc = json.loads(path.read_text())
    doc[entry] = "***"
    path.write_text(json.dumps(doc))
    with pytest.raises(KeyConfigError) as refused:
        FileKeyring(path).reload()
    assert str(refused.value) == f"{entry} is not valid base64"


def test_the_key_file_is_made_with_its_folders_closed_to_others(tmp_path: Path) -> None:
    # keys.xǁFileKeyringǁsave__mutmut_1, _4, _7 (no parents), _6, _9 (the folder's mode).
    # (_13, the temporary file's suffix, and _32/_35/_37, the JSON indent, change nothing
    # a reader sees: equivalent.)
    path = tmp_path / "deep" / "keys" / "keyring.json"
    FileKeyring(path).save(new_keyring())
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert FileKeyring(path).reload() == FileKeyring(path).current()


@pytest.mark.parametrize(
    ("role", "category", "may"),
    [
        ("pharmacy", "prescription", True),
        ("pharmacy", "lab-report", False),
        ("pharmacy", "invoice", False),
        ("accounts", "invoice", True),
        ("accounts", "prescription", False),
        ("accounts", "referral", False),
        ("doctor", "lab-report", True),
        ("doctor", "invoice", False),
        ("frontdesk", "invoice", True),
        (None, "prescription", False),
    ],
)
def test_who_reads_a_document_depends_on_its_category(
    role: str | None, category: str, may: bool
) -> None:
    # permissions.x_document_action__mutmut_1 to _4 (every category read as clinical),
    # x_may_read_document__mutmut_1, _2, _5: pharmacy's and accounts' documents untested.
    assert permissions.may_read_document(role, category) is may
    expected = {
        "prescription": "documents:read-prescriptions",
        "invoice": "documents:read-invoices",
    }.get(category, "documents:read-clinical")
    assert permissions.document_action(category) == expected


def test_the_sweeper_forgets_counted_events_older_than_it_keeps(db: Database) -> None:
    # throttle.x_sweep__mutmut_1 to _8: reached by no test of the security entry.
    # (throttle.total, the other unreached function, was used by nothing: removed.)
    limit = throttle.Limit("test-sweep", 3, timedelta(minutes=10))
    key = secrets.token_bytes(16)
    # Long ago, so the sweep touches no other test's rows in this database.
    now = datetime(2001, 1, 1, 12, tzinfo=UTC)
    with transaction(db, system_context(None)) as session:
        for minutes in (90, 61, 60, 0):
            throttle.count(session, limit, key, now - timedelta(minutes=minutes))
    with transaction(db, system_context(None)) as session:
        # strictly older: the one counted exactly an hour ago stays
        assert throttle.sweep(session, now - timedelta(hours=1)) == 2
        assert throttle.sweep(session, now - timedelta(hours=1)) == 0
        a_day = throttle.Limit("test-sweep", 3, timedelta(days=1))
        kept = throttle.recent(session, a_day, key, now)
    assert sorted(kept) == [now - timedelta(minutes=60), now]


def test_an_account_with_no_password_never_signs_in() -> None:
    # passwords.x_verify_password__mutmut_9: an account with no password (a patient, a
    # new user before their link) answered True for any password. The others are
    # equivalent: verifying reads the stored hash's own parameters whatever hasher reads
    # it (_1, _7, _14), and _8 changes only how long the dummy check takes.
    from opdesk.security.passwords import hash_password, verify_password

    assert verify_password("anything at all", None, fast=True) is False
    assert verify_password("anything at all", None) is False
    stored = hash_password("correct horse battery", fast=True)
    assert verify_password("correct horse battery", stored, fast=True) is True
    assert verify_password("wrong horse battery", stored, fast=True) is False


@pytest.mark.parametrize("action", sorted(permissions.PSEUDO_ACTIONS))
def test_a_route_that_needs_no_permission_is_open_to_anyone(action: str) -> None:
    # permissions.x_allowed__mutmut_2: the pseudo-actions were refused to everyone.
    for role in (None, *permissions.ROLES):
        assert permissions.allowed(role, action) is True
    assert permissions.allowed(None, "patients:read") is False
    assert permissions.allowed("admin", "no-such:action") is False


def test_forgetting_a_key_clears_only_that_key_of_that_kind(db: Database) -> None:
    # throttle.x_forget__mutmut_2 to _8: no test said what a successful sign-in's forget
    # leaves alone (another address's failures, another kind of count for the same key).
    codes = throttle.Limit("test-forget-codes", 3, timedelta(minutes=10))
    sends = throttle.Limit("test-forget-sends", 3, timedelta(minutes=10))
    mine, theirs = secrets.token_bytes(16), secrets.token_bytes(16)
    now = datetime.now(UTC)
    with transaction(db, system_context(None)) as session:
        for limit, key in ((codes, mine), (codes, theirs), (sends, mine)):
            throttle.count(session, limit, key, now)
    with transaction(db, system_context(None)) as session:
        throttle.forget(session, codes, mine)
    with transaction(db, system_context(None)) as session:
        assert throttle.recent(session, codes, mine, now) == []
        assert throttle.recent(session, codes, theirs, now) == [now]
        assert throttle.recent(session, sends, mine, now) == [now]


CLINIC = uuid.UUID("0199a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b")


@pytest.mark.parametrize(
    ("token", "named"),
    [
        (f"{CLINIC}.{'s' * 40}", True),  # the shortest secret taken
        (f"{CLINIC}.{'s' * 39}", False),  # one short
        (f"{CLINIC}.{'s' * (200 - 37)}", True),  # 200 characters in all: the longest taken
        (f"{CLINIC}.{'s' * (201 - 37)}", False),  # one too many
        (f"{CLINIC}{'s' * 41}", False),  # no dot at all
        (f"{CLINIC}.{'s' * 20}.{'s' * 20}", True),  # the clinic is what comes before the first dot
        (f"not-a-clinic.{'s' * 40}", False),
    ],
)
def test_a_session_token_names_its_clinic_only_in_its_exact_shape(token: str, named: bool) -> None:
    # tokens.x_tenant_of__mutmut_3, 5, 6, 8 to 11: the bounds of the shape were untested.
    assert tokens.tenant_of(token) == (CLINIC if named else None)


@pytest.mark.parametrize(
    ("password", "problem"),
    [
        ("p" * (passwords.MIN_LENGTH - 1), f"must be at least {passwords.MIN_LENGTH} characters"),
        ("p" * passwords.MIN_LENGTH, None),
        ("p" * 256, None),
        ("p" * 257, "must be at most 256 characters"),
        (" " + "p" * 20, "must not start or end with spaces"),
    ],
)
def test_a_new_password_is_refused_just_outside_its_bounds(password: str, problem: str) -> None:
    # passwords.x_password_problem__mutmut_1 to _4: the bounds and the long message.
    assert passwords.password_problem(password) == problem


def test_a_stored_password_uses_the_full_strength_parameters_unless_told_otherwise() -> None:
    # passwords.x_hash_password__mutmut_1: the default was never checked, so a default
    # of fast=True (1 MiB, one pass: test-only parameters) would have stored weak hashes.
    stored = passwords.hash_password("a long enough password")
    assert stored.startswith("$argon2id$")
    assert "m=1024,t=1,p=1" not in stored
    quick = passwords.hash_password("a long enough password", fast=True)
    assert "m=1024,t=1,p=1" in quick


def test_an_unknown_action_is_refused_for_every_role() -> None:
    # permissions.x_allowed__mutmut_7 and _9: without the empty default an unknown action
    # raised instead of answering no.
    for role in (*permissions.ROLES, None):
        assert permissions.allowed(role, "no-such:action") is False


class _CountingSource(StaticKeyring):
    """A key source that counts how often it is asked to read its keys again."""

    reloads = 0

    def reload(self) -> Keyring:
        self.reloads += 1
        return self.keyring


def test_a_known_key_decrypts_without_reading_the_keys_again() -> None:
    # crypto._key__mutmut_1 and _2: looking the key up wrongly still worked, through a
    # reload of the key file on every decryption (a disk read per field read).
    source = _CountingSource(new_keyring())
    cipher = FieldCipher(source)
    where = Where(tenant_id=CLINIC, table="t", column="c", row_id=CLINIC)
    sealed = cipher.encrypt("मधुमेह", **where)
    assert cipher.decrypt_str(sealed, **where) == "मधुमेह"
    assert source.reloads == 0
    with pytest.raises(DecryptionError, match=r"^ciphertext is too short$"):
        cipher.decrypt(sealed[:10], **where)  # crypto.key_id_of__mutmut_6: the message


def test_counted_events_are_per_kind_and_leave_the_window_strictly_after_it(
    db: Database,
) -> None:
    # throttle.recent__mutmut_3, _7 and _13: the order, the kind and the window's edge.
    codes = throttle.Limit("test-recent-codes", 2, timedelta(minutes=10))
    sends = throttle.Limit("test-recent-sends", 2, timedelta(minutes=10))
    key = secrets.token_bytes(16)
    now = datetime.now(UTC)
    with transaction(db, system_context(None)) as session:
        # Counted out of order: the newer first.
        for at in (now - timedelta(minutes=1), now - timedelta(minutes=9)):
            throttle.count(session, codes, key, at)
        throttle.count(session, codes, key, now - timedelta(minutes=10))  # on the edge: out
        throttle.count(session, sends, key, now)
    with transaction(db, system_context(None)) as session:
        assert throttle.recent(session, codes, key, now) == [
            now - timedelta(minutes=9),
            now - timedelta(minutes=1),
        ]
        # Free again when the older of the two leaves the window: in one minute.
        assert throttle.retry_after(session, codes, key, now) == timedelta(minutes=1)
        assert throttle.recent(session, sends, key, now) == [now]


def test_the_keyed_hash_is_hmac_sha256_over_length_prefixed_parts() -> None:
    # tokens.keyed_hash__mutmut_15: every stored phone and email index is this hash; a
    # change to its framing would orphan them all, so its bytes are pinned here.
    key = bytes(range(32))
    framed = b"\x00\x00\x00\x02ab" + b"\x00\x00\x00\x01c"
    assert tokens.keyed_hash(key, "ab", b"c") == hmac.new(key, framed, hashlib.sha256).digest()
    assert tokens.keyed_hash(key, "ab", "c") != tokens.keyed_hash(key, "a", "bc")
