"""The composition root: everything OPDesk builds once from its settings and keys.

``create_app`` calls :func:`bootstrap` and keeps the result on ``app.state.services``;
routes never read ``app.state`` themselves but ask for the part they need as a typed
dependency (``Cipher``, ``AppSettings`` in ``web/deps.py``; ``Ident``, ``Offers``,
``Store`` in their domain's ``deps.py``). Tests and commands build their own with the
same function, so nothing is assembled twice in two ways.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from opdesk.config import Settings
from opdesk.context import Clock, utc_now
from opdesk.documents.storage import LocalStorage, Storage
from opdesk.identity.service import Identity
from opdesk.scheduling.waitlist import Offers
from opdesk.security.crypto import FieldCipher, KeyringSource
from opdesk.web.templating import NavEntry, Pages


@dataclass(frozen=True, slots=True)
class Services:
    settings: Settings
    cipher: FieldCipher
    clock: Clock
    identity: Identity
    storage: Storage
    pages: Pages
    csrf_key: bytes
    offers: Offers
    demo_slug: str

    @property
    def hold_for(self) -> timedelta:
        return self.settings.hold_for


def bootstrap(
    settings: Settings,
    keyring: KeyringSource,
    *,
    navigation: tuple[NavEntry, ...] = (),
    filters: Mapping[str, Callable[..., Any]] | None = None,
    clock: Clock = utc_now,
    demo_slug: str = "",
) -> Services:
    cipher = FieldCipher(keyring)
    return Services(
        settings=settings,
        cipher=cipher,
        clock=clock,
        identity=Identity.create(settings, cipher),
        storage=LocalStorage(settings.data_dir / "files"),
        pages=Pages(
            cipher.keyring.derived_key("opdesk flash cookie v1"),
            navigation=navigation,
            filters=filters,
            dev=settings.dev_inbox_on,
        ),
        csrf_key=cipher.keyring.derived_key("opdesk csrf v1"),
        offers=Offers(cipher, settings.offer_for),
        demo_slug=demo_slug,
    )
