"""What production refuses to start with (``OPDESK_ENV=prod``).

Each refusal is a sentence an operator can act on; ``opdesk serve`` and ``opdesk worker``
print them all and exit, so one start shows every fault instead of one per attempt.
"""

from __future__ import annotations

from opdesk.config import Settings
from opdesk.security.crypto import Keyring
from opdesk.security.keys import KEYRING_FILE, FileKeyring, KeyConfigError


def production_refusals(settings: Settings, ring: Keyring) -> list[str]:
    """Why this production start must not go on; empty in dev or when all is well."""
    if settings.env != "prod":
        return []
    refusals = []
    if not settings.is_https:
        refusals.append(
            f"OPDESK_BASE_URL must be an https:// address in production (it is "
            f"{settings.base_url!r}): sign-in cookies are sent over HTTPS only, and links in "
            "messages and on receipts point there."
        )
    if settings.dev_inbox_on:
        refusals.append(
            "OPDESK_DEV_INBOX is on: it shows every patient's messages and sign-in codes "
            "to anyone. Unset it."
        )
    if _uses_dev_keys(settings, ring):
        refusals.append(
            f"The keys in the environment are the development keys of "
            f"{settings.keys_dir / KEYRING_FILE}, which sit unencrypted beside the data. "
            "Generate production keys with `opdesk keys generate`."
        )
    return refusals


def _uses_dev_keys(settings: Settings, ring: Keyring) -> bool:
    path = settings.keys_dir / KEYRING_FILE
    if not path.exists():
        return False
    try:
        dev = FileKeyring(path).reload()
    except (KeyConfigError, ValueError, KeyError, OSError):
        return False  # not a keyring we wrote; nothing to compare
    shared_data_key = set(dev.data_keys.values()) & set(ring.data_keys.values())
    return bool(shared_data_key) or dev.signing_seed == ring.signing_seed
