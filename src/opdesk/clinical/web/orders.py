"""Clinical pages and API: orders (filled in by the clinical issue)."""

from __future__ import annotations

from fastapi import APIRouter

from opdesk.schemas import PROBLEM_RESPONSES
from opdesk.web.templating import NavEntry

router = APIRouter(include_in_schema=False)
api = APIRouter(tags=["orders"], responses=PROBLEM_RESPONSES)
NAV: tuple[NavEntry, ...] = ()
