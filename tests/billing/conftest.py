"""Billing's fixtures: a local Razorpay test server and an app pointed at it."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from opdesk.app import create_app
from opdesk.config import Settings
from opdesk.db import Database
from opdesk.security.crypto import StaticKeyring
from tests.fakes.razorpay_server import RazorpayServer


@pytest.fixture(scope="module")
def rzp() -> Iterator[RazorpayServer]:
    with RazorpayServer() as server:
        yield server


@pytest.fixture(scope="module")
def gateway_app(
    settings: Settings, db: Database, keyring: StaticKeyring, rzp: RazorpayServer
) -> FastAPI:
    pointed = settings.model_copy(
        update={"razorpay_base_url": rzp.url, "razorpay_timeout_seconds": 3}
    )
    return create_app(pointed, database=db, keyring=keyring)


@pytest.fixture
def gateway_client(gateway_app: FastAPI) -> Iterator[TestClient]:
    address = f"10.{secrets.randbelow(256)}.{secrets.randbelow(256)}.{secrets.randbelow(254) + 1}"
    with TestClient(gateway_app, client=(address, 50000)) as test_client:
        yield test_client
