"""What the identity routers share with the rest: the built identity service and the
cookie naming where a patient returns after signing in.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from opdesk.identity.service import Identity
from opdesk.web.deps import services

# Where to go after a patient signs in (set by pages that send them to sign in).
NEXT_COOKIE = "opdesk_next"


async def _identity(request: Request) -> Identity:
    return services(request).identity


# Passwords, codes and the field cipher as this deployment built them at start-up.
Ident = Annotated[Identity, Depends(_identity)]
