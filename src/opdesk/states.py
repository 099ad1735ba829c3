"""State machines as data (DESIGN rule 9): every status is a ``StrEnum``, every entity
with a status has one :class:`Machine` (its table of allowed moves), and one
:func:`transition` moves any row along its machine.

A new machine is a few lines next to its model::

    class InvoiceStatus(StrEnum):
        DRAFT = "draft"
        ISSUED = "issued"
        PAID = "paid"
        VOID = "void"

    class Invoice(TenantScoped, Base):
        status: Mapped[InvoiceStatus] = mapped_column(EnumText(InvoiceStatus))
        issued_at: Mapped[datetime | None]
        paid_at: Mapped[datetime | None]
        __table_args__ = (CheckConstraint(one_of("status", InvoiceStatus), name="status_known"),)

    INVOICE = Machine(
        Invoice,
        InvoiceStatus,
        {
            InvoiceStatus.DRAFT: {InvoiceStatus.ISSUED, InvoiceStatus.VOID},
            InvoiceStatus.ISSUED: {InvoiceStatus.PAID, InvoiceStatus.VOID},
            InvoiceStatus.PAID: set(),
            InvoiceStatus.VOID: set(),
        },
        noun="an invoice",
        timeline={InvoiceStatus.ISSUED: "issued_at", InvoiceStatus.PAID: "paid_at"},
    )

and a service moves a row with ``states.transition(session, ctx, invoice,
InvoiceStatus.PAID, INVOICE)``. The tests in ``tests/statemachine`` are generated from
every machine: a new one needs only a row maker there.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Generic, TypeVar

from sqlalchemy.orm import Session

from opdesk import audit, records
from opdesk.context import RequestContext
from opdesk.errors import Conflict

S = TypeVar("S", bound=StrEnum)

DEFAULT_REFUSAL = "{noun} cannot go from {from_} to {to}"


class IllegalTransition(Conflict):
    """A move the machine's table does not allow (409); it names both states."""

    def __init__(self, detail: str, *, entity: str, from_state: str, to_state: str) -> None:
        super().__init__(detail)
        self.entity = entity
        self.from_state = from_state
        self.to_state = to_state


@dataclass(frozen=True, eq=False)
class Machine(Generic[S]):
    """The statuses of one table and the moves allowed between them.

    * ``moves``: every status -> the statuses it may go to next (an empty set: final).
    * ``timeline``: status -> the column stamped with the time the row enters it.
    * ``touch``: a column stamped on every move (``updated_at``), if the table has one.
    * ``noun``: the row as a sentence names it ("an appointment"), for the refusal.
    * ``refusal``: the 409 message, a format string of ``noun``, ``from_`` and ``to``.
    * ``stored``: ``False`` when the table keeps no ``status`` column and the model's
      read-only ``status`` property derives it from the timeline (a consent is revoked
      once ``revoked_at`` is set): a move then only stamps the timeline.
    """

    model: type[Any]
    states: type[S]
    moves: Mapping[S, Collection[S]]
    noun: str
    timeline: Mapping[S, str] = field(default_factory=dict)
    touch: str | None = None
    refusal: str = DEFAULT_REFUSAL
    stored: bool = True

    def __post_init__(self) -> None:
        # The table as frozen sets of members, checked once at import time.
        moves = {
            self.states(a): frozenset(self.states(b) for b in to) for a, to in self.moves.items()
        }
        object.__setattr__(self, "moves", moves)
        object.__setattr__(self, "timeline", {self.states(s): c for s, c in self.timeline.items()})
        missing = [s.value for s in self.states if s not in moves]
        if missing:
            raise ValueError(f"{self.entity}: no row in the table for {', '.join(missing)}")
        columns = [*self.timeline.values(), *([self.touch] if self.touch else [])]
        unknown = [c for c in columns if c not in self.model.__table__.columns]
        if unknown:
            raise ValueError(f"{self.entity}: no column {', '.join(unknown)}")
        if self.stored and "status" not in self.model.__table__.columns:
            raise ValueError(f"{self.entity}: no status column (stored=False derives it)")
        if not self.stored:
            unstamped = {b for to in moves.values() for b in to} - set(self.timeline)
            if unstamped:
                names = ", ".join(sorted(s.value for s in unstamped))
                raise ValueError(f"{self.entity}: a derived status needs a timeline for {names}")
        _MACHINES.append(self)

    @property
    def entity(self) -> str:
        """The table, which is also the audit event's collection."""
        return str(self.model.__tablename__)

    def allows(self, from_: str, to: str) -> bool:
        return to in self.moves.get(self.states(from_), frozenset())

    def pairs(self) -> Iterator[tuple[S, S]]:
        """Every (from, to) pair of statuses, allowed or not."""
        return ((a, b) for a in self.states for b in self.states)

    def state_of(self, row: Any) -> S:
        return self.states(row.status)

    def refuse(self, from_: str, to: str) -> IllegalTransition:
        detail = self.refusal.format(noun=self.noun, from_=from_, to=to)
        return IllegalTransition(
            detail, entity=self.entity, from_state=str(from_), to_state=str(to)
        )


_MACHINES: list[Machine[Any]] = []


def machines() -> tuple[Machine[Any], ...]:
    """Every machine defined so far (all of them once every model is imported)."""
    return tuple(_MACHINES)


def transition(
    session: Session,
    ctx: RequestContext,
    row: Any,
    to: S | str,
    machine: Machine[S],
    *,
    diff: dict[str, Any] | None = None,
) -> S:
    """Move ``row`` to ``to`` if its machine allows it from where the row is now.

    The row is locked and read afresh unless this transaction already locked it
    (:func:`records.lock`), so of two concurrent moves the second sees the first's result.
    A forbidden move (or an unknown status) raises :class:`IllegalTransition` (409) and
    changes nothing. An allowed one sets the status, stamps the timeline (and ``touch``)
    column with ``ctx.now()``, flushes, and records one audit event with from/to (and
    ``diff``, if given). Returns the status the row left.
    """
    if not isinstance(row, machine.model):
        raise TypeError(f"{machine.entity} moves {machine.model.__name__} rows, not {row!r}")
    records.lock(session, row)
    before = machine.state_of(row)
    try:
        target = machine.states(to)
    except ValueError:
        raise machine.refuse(before, to) from None
    if not machine.allows(before, target):
        raise machine.refuse(before, target)
    now = ctx.now()
    if machine.stored:
        row.status = target
    if target in machine.timeline:
        setattr(row, machine.timeline[target], now)
    if machine.touch is not None:
        setattr(row, machine.touch, now)
    session.flush()
    if machine.state_of(row) != target:  # a derived status must follow its timeline
        raise RuntimeError(f"{machine.entity} {row.id} did not reach {target}")
    audit.record(
        ctx,
        entity=machine.entity,
        entity_id=row.id,
        action="state-transition",
        from_state=before.value,
        to_state=target.value,
        diff=diff,
    )
    return before


__all__ = ["IllegalTransition", "Machine", "machines", "transition"]
