"""Where an encrypted value lives: the coordinates a field cipher binds it to."""

from __future__ import annotations

import uuid
from typing import TypedDict


class Where(TypedDict):
    tenant_id: uuid.UUID
    table: str
    column: str
    row_id: uuid.UUID
