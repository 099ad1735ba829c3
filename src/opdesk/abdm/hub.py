"""The gateway as a clinic reaches it: one client (and so one session token) per clinic's
credentials, and the gateway's signing keys, kept for the life of the process.

A session token lasts minutes and a key set hours; making them again for every call or
callback would cost the gateway a sessions call each time (and ABDM rate-limits them). So
the clients live in a small process-wide cache keyed by everything that makes them: the
host, the client id and a digest of the secret. A clinic that changes its settings gets a
new client on its next call; the old one is closed when it falls out of the cache.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass

from opdesk.abdm.abha import AbhaClient
from opdesk.abdm.callbacks import V3_CERTS_PATH, GatewayKeys
from opdesk.abdm.gateway import SANDBOX_CM_ID, GatewayClient
from opdesk.abdm.settings import Abdm
from opdesk.config import Settings

# The consent manager's id in each environment (``X-CM-ID``).
CM_IDS = {"sandbox": SANDBOX_CM_ID, "production": "abdm"}
_KEEP = 64  # clinics whose clients stay open


@dataclass(frozen=True)
class Link:
    """What a clinic needs to call the gateway and to check the gateway's calls."""

    gateway: GatewayClient
    keys: GatewayKeys
    # The ABHA service, on its own host with the same session (its public key kept).
    abha: AbhaClient


_links: OrderedDict[tuple[str, ...], Link] = OrderedDict()
_lock = threading.Lock()


def gateway_url(settings: Settings, environment: str) -> str:
    if environment == "production":
        return settings.abdm_production_gateway_url
    return settings.abdm_sandbox_gateway_url


def abha_url(settings: Settings, environment: str) -> str:
    if environment == "production":
        return settings.abdm_production_abha_url
    return settings.abdm_sandbox_abha_url


def link_for(settings: Settings, clinic: Abdm) -> Link:
    """The clinic's gateway client and the gateway's keys, made once per credentials."""
    base = gateway_url(settings, clinic.environment)
    secret = hashlib.sha256(clinic.client_secret.encode()).hexdigest()
    key = (base, clinic.environment, clinic.client_id, secret)
    with _lock:
        found = _links.get(key)
        if found is not None:
            _links.move_to_end(key)
            return found
        client = GatewayClient(
            base,
            clinic.client_id,
            clinic.client_secret,
            cm_id=CM_IDS.get(clinic.environment, SANDBOX_CM_ID),
            timeout=settings.abdm_timeout_seconds,
        )
        made = Link(
            client,
            GatewayKeys.from_gateway(client, path=V3_CERTS_PATH),
            AbhaClient(client, abha_url=abha_url(settings, clinic.environment)),
        )
        _links[key] = made
        while len(_links) > _KEEP:
            _old_key, old = _links.popitem(last=False)
            old.gateway.close()
        return made
