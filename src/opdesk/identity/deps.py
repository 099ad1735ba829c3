"""What the identity routers share with the rest: the built identity service and the
cookie naming where a patient returns after signing in.
"""

from __future__ import annotations

from fastapi import Request

from opdesk.identity.service import Identity

# Where to go after a patient signs in (set by pages that send them to sign in).
NEXT_COOKIE = "opdesk_next"


def identity_of(request: Request) -> Identity:
    """Passwords, codes and the field cipher as this deployment built them at start-up."""
    identity: Identity = request.app.state.identity
    return identity
