"""The ABDM bridge under test: the fake gateway on a real socket, an app pointed at it
with a clock the test moves, and the clinic connected to it.

Modules that test a part alone (the gateway client, the ABHA client) define their own
``gateway`` and ``clock``; those take precedence over these.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from opdesk.abdm.settings import Abdm
from opdesk.app import create_app
from opdesk.config import Settings
from opdesk.db import Database
from opdesk.security.crypto import StaticKeyring
from opdesk.tenancy.models import Tenant
from tests.factories.abdm import Shifted, with_abdm
from tests.fakes.abdm_gateway import FakeAbdmGateway


@pytest.fixture
def gateway() -> Iterator[FakeAbdmGateway]:
    with FakeAbdmGateway() as fake:
        yield fake


@pytest.fixture
def clock() -> Shifted:
    return Shifted()


@pytest.fixture
def pointed(settings: Settings, gateway: FakeAbdmGateway) -> Settings:
    """The app's settings with ABDM's sandbox at the fake gateway."""
    return settings.model_copy(
        update={
            "abdm_sandbox_gateway_url": gateway.url,
            "abdm_sandbox_abha_url": gateway.url + "/abha/api",
            "abdm_timeout_seconds": 3,
        }
    )


@pytest.fixture
def bridge_app(pointed: Settings, db: Database, keyring: StaticKeyring, clock: Shifted) -> FastAPI:
    return create_app(pointed, database=db, keyring=keyring, clock=clock)


@pytest.fixture
def gateway_side(bridge_app: FastAPI) -> Iterator[TestClient]:
    """How the gateway reaches OPDesk: a client of the app."""
    with TestClient(bridge_app) as made:
        yield made


@pytest.fixture
def clinic(db: Database, cipher: Any, tenant: Tenant, gateway: FakeAbdmGateway) -> Abdm:
    """The test's clinic on ABDM, with the fake gateway's client credentials."""
    return with_abdm(
        db, cipher, tenant, client_id=gateway.client_id, client_secret=gateway.client_secret
    )
