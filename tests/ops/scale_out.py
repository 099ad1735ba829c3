"""The Citus rules of DESIGN rule 3, read from a database's catalog.

OPDesk is meant to be distributed by ``tenant_id`` with Citus unchanged. Citus cannot be
installed here, so this module checks what Citus would refuse, on the migrated schema of
PostgreSQL itself (``pg_catalog``). Every table of the ``public`` schema is one of:

* a **tenant table** (it has a ``tenant_id`` column): distributed by ``tenant_id``, all
  colocated. Its primary key, every unique constraint and unique index and every
  exclusion constraint must have ``tenant_id`` as a plain key column (Citus can enforce
  uniqueness only inside one shard), and a foreign key to another tenant table must pair
  ``tenant_id`` with ``tenant_id`` at the same position (a row can only point into its
  own shard);
* a **global table** (no ``tenant_id``), listed in :data:`GLOBAL_TABLES` with where it
  lives and why: a *reference* table (copied to every node; distributed tables may point
  at it) or a *local* table (stays on the coordinator; nothing distributed may point at
  it, and it may point at nothing distributed). A global table must not point at a
  tenant table, and must not be written per tenant: a column naming a clinic, a foreign
  key to ``tenants``, row-level security on ``app.tenant_id``, or (for a reference table)
  writes by the app role each say that a clinic's rows live in it. Where that is right,
  the entry says why (``per_tenant``); the one list is the place to argue it.

:func:`schema_problems` returns one readable line per violation, naming the table and the
constraint. :func:`doc_problems` holds ``docs/scale-out.md`` to the catalog: its table
list names every table once, as this module classifies it, and its Citus statements
distribute each table once, a referenced table before the tables that point at it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from sqlalchemy import Connection, text

from opdesk.db import APP_ROLE

TENANT = "tenant_id"
TENANTS_TABLE = "tenants"
DOC = "docs/scale-out.md"

Placement = Literal["reference", "local"]


@dataclass(frozen=True)
class Global:
    """A table without ``tenant_id``: where it lives under Citus, and why."""

    placement: Placement
    reason: str
    # Why this global table may carry a clinic (a column, a policy, the app's writes);
    # None: it must carry none.
    per_tenant: str | None = None


GLOBAL_TABLES: Mapping[str, Global] = {
    TENANTS_TABLE: Global(
        "reference",
        "The clinics themselves: every tenant table's tenant_id points at tenants.id, so "
        "every node needs the rows; a clinic is found by its slug (unique across clinics) "
        "before any clinic is known. One small row per clinic, rarely written.",
        per_tenant="Each row is a tenant, not a tenant's data: its policy lets a clinic "
        "change only its own row, and the app creates a clinic by inserting one.",
    ),
    "icd10_codes": Global(
        "reference",
        "WHO ICD-10, the same for every clinic, loaded by a migration; "
        "visits_diagnoses.code points at it. The app role may only read it.",
    ),
    "otp_tokens": Global(
        "local",
        "A sign-in code or a set-password link, found by its secret (a link also by the "
        "user it is for) before any clinic is known; a verified phone then serves every "
        "clinic that knows it "
        "(the seed's otp_tokens has no tenantId). Short-lived; no foreign keys; never "
        "joined to a tenant table. Stays on the coordinator with the app's sign-in.",
        per_tenant="clinic_id names the clinic whose page asked for the code, so that "
        "clinic's audit trail records the attempt. The row is reached only through its "
        "secret, never listed by clinic, so there is no clinic data to isolate or shard.",
    ),
    "auth_throttle": Global(
        "local",
        "Sliding-window counts of sign-in attempts, keyed by hashed phone, address, "
        "prefix or clinic (the SMS budget): the per-phone and per-address limits span "
        "clinics by design. Counted under an advisory lock, which only one node sees.",
    ),
    "abdm_facilities": Global(
        "local",
        "Which clinic a public HFR facility id leads to: the ABDM gateway calls one bridge "
        "URL for every clinic and names the facility before any clinic is known, and a "
        "facility id is unique across clinics, which no table distributed by clinic could "
        "keep. One small row per clinic on ABDM; no foreign keys; read by that one lookup.",
        per_tenant="clinic_id names the clinic that claims the facility: the row is the "
        "routing itself, holding no clinic data beyond which public id is whose.",
    ),
    "alembic_version": Global(
        "local",
        "Alembic's bookkeeping; migrations run on the coordinator.",
    ),
}

# A column whose name says it holds a clinic: tenant, tenant_id, clinic_id, owner_clinic...
_TENANT_NAME = re.compile(r"(?:^|_)(?:tenant|clinic)(?:_?(?:id|uuid|key))?$")


# --------------------------------------------------------------------------- catalog


@dataclass
class Table:
    oid: int
    name: str
    tenant_attnum: int | None
    tenant_not_null: bool
    tenant_type: str | None
    columns: dict[int, str] = field(default_factory=dict)

    @property
    def is_tenant(self) -> bool:
        return self.tenant_attnum is not None

    def names(self, attnums: list[int]) -> str:
        return ", ".join(self.columns.get(n, f"#{n}") for n in attnums)


@dataclass(frozen=True)
class Constraint:
    name: str
    kind: str  # p, u, f, x
    table: int
    keys: list[int]
    ref_table: int | None
    ref_keys: list[int]
    exclusion_ops: list[str]


@dataclass(frozen=True)
class UniqueIndex:
    name: str
    table: int
    key_attnums: list[int]  # 0 = an expression
    key_texts: list[str]
    partial: bool
    constraint: str | None  # the constraint it backs (p, u), if any


@dataclass(frozen=True)
class Policy:
    name: str
    table: int
    expressions: str


@dataclass
class Catalog:
    tables: dict[int, Table]
    constraints: list[Constraint]
    unique_indexes: list[UniqueIndex]
    policies: list[Policy]
    tenant_functions: set[str]
    app_writes: set[int]
    tenants_id_type: str | None

    def by_name(self) -> dict[str, Table]:
        return {t.name: t for t in self.tables.values()}


def read_catalog(conn: Connection, app_role: str = APP_ROLE) -> Catalog:
    """The ``public`` schema's tables and what the rules look at, in a few queries."""
    tables = {
        row.oid: Table(row.oid, row.relname, row.attnum, bool(row.attnotnull), row.type)
        for row in conn.execute(
            text(
                "select c.oid, c.relname, a.attnum, a.attnotnull, "
                "format_type(a.atttypid, a.atttypmod) as type "
                "from pg_class c join pg_namespace n on n.oid = c.relnamespace "
                "left join pg_attribute a on a.attrelid = c.oid and a.attname = :tenant "
                "and a.attnum > 0 and not a.attisdropped "
                "where n.nspname = 'public' and c.relkind in ('r', 'p') "
                "and not c.relispartition order by c.relname"
            ),
            {"tenant": TENANT},
        )
    }
    oids = list(tables)
    for row in conn.execute(
        text(
            "select attrelid, attnum, attname from pg_attribute "
            "where attrelid = any(:oids) and attnum > 0 and not attisdropped"
        ),
        {"oids": oids},
    ):
        tables[row.attrelid].columns[row.attnum] = row.attname
    constraints = [
        Constraint(
            row.conname,
            row.contype,
            row.conrelid,
            list(row.conkey or []),
            row.confrelid or None,
            list(row.confkey or []),
            list(row.ops or []),
        )
        for row in conn.execute(
            text(
                "select con.conname, con.contype, con.conrelid, con.conkey, con.confrelid, "
                "con.confkey, array(select o.oprname from unnest(con.conexclop) "
                "with ordinality u(op, ord) join pg_operator o on o.oid = u.op "
                "order by u.ord) as ops "
                "from pg_constraint con where con.conrelid = any(:oids) "
                "and con.contype in ('p', 'u', 'f', 'x') order by con.conname"
            ),
            {"oids": oids},
        )
    ]
    unique_indexes = [
        UniqueIndex(
            row.relname,
            row.indrelid,
            list(row.keys)[: row.indnkeyatts],
            list(row.key_texts),
            bool(row.partial),
            row.conname,
        )
        for row in conn.execute(
            text(
                "select c.relname, i.indrelid, i.indnkeyatts, i.indkey::int2[] as keys, "
                "i.indpred is not null as partial, "
                "array(select pg_get_indexdef(i.indexrelid, k, true) "
                "from generate_series(1, i.indnkeyatts) k order by k) as key_texts, "
                "(select con.conname from pg_constraint con where con.conindid = "
                "i.indexrelid and con.conrelid = i.indrelid and con.contype in ('p', 'u')) "
                "as conname "
                "from pg_index i join pg_class c on c.oid = i.indexrelid "
                "where i.indisunique and i.indrelid = any(:oids) order by c.relname"
            ),
            {"oids": oids},
        )
    ]
    policies = [
        Policy(row.polname, row.polrelid, f"{row.qual or ''} {row.check or ''}")
        for row in conn.execute(
            text(
                "select polname, polrelid, pg_get_expr(polqual, polrelid) as qual, "
                "pg_get_expr(polwithcheck, polrelid) as check "
                "from pg_policy where polrelid = any(:oids) order by polname"
            ),
            {"oids": oids},
        )
    ]
    functions = {
        row.proname: row.prosrc or ""
        for row in conn.execute(
            text(
                "select p.proname, p.prosrc from pg_proc p "
                "join pg_namespace n on n.oid = p.pronamespace where n.nspname = 'public'"
            )
        )
    }
    app_writes: set[int] = set()
    if conn.execute(text("select 1 from pg_roles where rolname = :r"), {"r": app_role}).scalar():
        app_writes = {
            oid
            for (oid,) in conn.execute(
                text(
                    "select c.oid from pg_class c where c.oid = any(:oids) "
                    "and has_table_privilege(:r, c.oid, 'INSERT, UPDATE, DELETE')"
                ),
                {"oids": oids, "r": app_role},
            )
        }
    return Catalog(
        tables,
        constraints,
        unique_indexes,
        policies,
        _reading_tenant_setting(functions),
        app_writes,
        conn.execute(
            text(
                "select format_type(atttypid, atttypmod) from pg_attribute "
                "where attrelid = to_regclass(:t) and attname = 'id'"
            ),
            {"t": f"public.{TENANTS_TABLE}"},
        ).scalar(),
    )


def _reading_tenant_setting(functions: Mapping[str, str]) -> set[str]:
    """Functions whose body reads ``app.tenant_id``, directly or through another one."""
    found = {name for name, body in functions.items() if "app.tenant_id" in body}
    while True:
        more = {
            name
            for name, body in functions.items()
            if name not in found and any(re.search(rf"\b{f}\s*\(", body) for f in found)
        }
        if not more:
            return found
        found |= more


def _mentions_tenant_setting(expression: str, functions: set[str]) -> bool:
    return "app.tenant_id" in expression or any(
        re.search(rf"\b{f}\s*\(", expression) for f in functions
    )


# --------------------------------------------------------------------------- the rules


def schema_problems(
    conn: Connection,
    *,
    global_tables: Mapping[str, Global] = GLOBAL_TABLES,
    app_role: str = APP_ROLE,
) -> list[str]:
    """Every violation of the Citus rules in the ``public`` schema, one line each."""
    catalog = read_catalog(conn, app_role)
    problems: list[str] = []
    problems += _classified(catalog, global_tables)
    problems += _tenant_keys(catalog)
    problems += _foreign_keys(catalog, global_tables)
    problems += _written_per_tenant(catalog, global_tables)
    return problems


def _classified(catalog: Catalog, global_tables: Mapping[str, Global]) -> list[str]:
    problems = []
    names = catalog.by_name()
    tenant_type = catalog.tenants_id_type
    for table in catalog.tables.values():
        if table.is_tenant:
            if table.name in global_tables:
                problems.append(
                    f"{table.name}: has {TENANT} but GLOBAL_TABLES lists it as "
                    f"{global_tables[table.name].placement}"
                )
            if not table.tenant_not_null:
                problems.append(f"{table.name}: {TENANT} is nullable (Citus needs a value)")
            if tenant_type and table.tenant_type != tenant_type:
                problems.append(
                    f"{table.name}: {TENANT} is {table.tenant_type}, not {tenant_type} like "
                    f"{TENANTS_TABLE}.id (colocated tables need one type)"
                )
        elif table.name not in global_tables:
            problems.append(
                f"{table.name}: no {TENANT} and not in GLOBAL_TABLES "
                f"(add {TENANT}, or list it as reference or local with its reason)"
            )
    for name in sorted(set(global_tables) - set(names)):
        problems.append(f"{name}: in GLOBAL_TABLES but not in the catalog")
    return problems


def _tenant_keys(catalog: Catalog) -> list[str]:
    """Primary keys, unique constraints and indexes, exclusion constraints: with tenant_id."""
    problems = []
    primary = {c.table: c for c in catalog.constraints if c.kind == "p"}
    for table in catalog.tables.values():
        if not table.is_tenant:
            continue
        pk = primary.get(table.oid)
        if pk is None:
            problems.append(f"{table.name}: no primary key (it needs one with {TENANT})")
        elif table.tenant_attnum not in pk.keys:
            problems.append(
                f"{table.name}: primary key {pk.name} is ({table.names(pk.keys)}) without {TENANT}"
            )
    for index in catalog.unique_indexes:
        table = catalog.tables[index.table]
        pk = primary.get(table.oid)
        if not table.is_tenant or (pk is not None and index.constraint == pk.name):
            continue
        if table.tenant_attnum in index.key_attnums:
            continue
        what = (
            f"unique constraint {index.constraint}"
            if index.constraint
            else f"{'partial ' if index.partial else ''}unique index {index.name}"
        )
        problems.append(
            f"{table.name}: {what} is ({', '.join(index.key_texts)}) "
            f"without {TENANT} as a key column"
        )
    for con in catalog.constraints:
        table = catalog.tables[con.table]
        if con.kind != "x" or not table.is_tenant:
            continue
        pairs = dict(zip(con.keys, con.exclusion_ops, strict=False))
        if pairs.get(table.tenant_attnum or -1) != "=":
            problems.append(
                f"{table.name}: exclusion constraint {con.name} does not compare {TENANT} with ="
            )
    return problems


def _foreign_keys(catalog: Catalog, global_tables: Mapping[str, Global]) -> list[str]:
    problems = []
    for con in catalog.constraints:
        if con.kind != "f" or con.ref_table not in catalog.tables:
            continue
        src, dst = catalog.tables[con.table], catalog.tables[con.ref_table]
        link = (
            f"foreign key {con.name} ({src.names(con.keys)}) -> "
            f"{dst.name} ({dst.names(con.ref_keys)})"
        )
        if src.is_tenant and dst.is_tenant:
            paired = any(
                a == src.tenant_attnum and b == dst.tenant_attnum
                for a, b in zip(con.keys, con.ref_keys, strict=False)
            )
            if not paired:
                problems.append(f"{src.name}: {link} does not pair {TENANT} with {TENANT}")
        elif dst.is_tenant:
            problems.append(
                f"{src.name}: global table points at tenant table {dst.name} by {link} "
                "(Citus refuses a reference or local table pointing at a distributed one)"
            )
        elif src.is_tenant:
            target = global_tables.get(dst.name)
            if target is not None and target.placement == "local":
                problems.append(
                    f"{src.name}: {link} points at a local table (a distributed table "
                    "may point only at reference tables)"
                )
        else:
            source, target = global_tables.get(src.name), global_tables.get(dst.name)
            if (source and target and source.placement == "reference"
                    and target.placement == "local"):  # fmt: skip
                problems.append(f"{src.name}: {link} points from a reference table at a local one")
    return problems


def _written_per_tenant(catalog: Catalog, global_tables: Mapping[str, Global]) -> list[str]:
    """Global tables that hold a clinic's rows: each sign, unless the entry says why."""
    problems = []
    names = catalog.by_name()
    tenants = names.get(TENANTS_TABLE)
    for table in catalog.tables.values():
        entry = global_tables.get(table.name)
        if table.is_tenant or entry is None:
            continue
        signs = [
            f"column {column} names a clinic"
            for _, column in sorted(table.columns.items())
            if _TENANT_NAME.search(column)
        ]
        signs += [
            f"foreign key {con.name} points at {TENANTS_TABLE}"
            for con in catalog.constraints
            if con.kind == "f" and con.table == table.oid and tenants is not None
            and con.ref_table == tenants.oid and table.oid != tenants.oid
        ]  # fmt: skip
        signs += [
            f"row-level security policy {policy.name} reads app.tenant_id"
            for policy in catalog.policies
            if policy.table == table.oid
            and _mentions_tenant_setting(policy.expressions, catalog.tenant_functions)
        ]
        if entry.placement == "reference" and table.oid in catalog.app_writes:
            signs.append("the app role may write it")
        if signs and entry.per_tenant is None:
            problems += [f"{table.name}: global table written per tenant: {s}" for s in signs]
        if not signs and entry.per_tenant is not None:
            problems.append(
                f"{table.name}: GLOBAL_TABLES says why it carries a clinic, "
                "but it carries none (drop the per_tenant reason)"
            )
    return problems


# --------------------------------------------------------------------------- the doc


_DOC_ROW = re.compile(r"^\|\s*`([a-z0-9_]+)`\s*\|\s*(distributed|reference|local)\b", re.M)
_DISTRIBUTE = re.compile(
    r"create_distributed_table\(\s*'([a-z0-9_]+)'\s*,\s*'([a-z0-9_]+)'"
    r"(?:\s*,\s*colocate_with\s*=>\s*'([a-z0-9_]+)')?\s*\)"
)
_REFERENCE = re.compile(r"create_reference_table\(\s*'([a-z0-9_]+)'\s*\)")


def doc_problems(
    conn: Connection, doc: str, *, global_tables: Mapping[str, Global] = GLOBAL_TABLES
) -> list[str]:
    """Where ``docs/scale-out.md`` (its text: ``doc``) disagrees with the catalog."""
    catalog = read_catalog(conn)
    names = catalog.by_name()
    expected = {
        name: "distributed" if table.is_tenant else global_tables[name].placement
        for name, table in names.items()
        if table.is_tenant or name in global_tables
    }
    problems: list[str] = []
    listed: dict[str, str] = {}
    for name, placement in _DOC_ROW.findall(doc):
        if name in listed:
            problems.append(f"{name}: listed twice in {DOC}")
        listed[name] = placement
    for name in sorted(set(names) - set(listed)):
        problems.append(f"{name}: not in {DOC}'s table list")
    for name in sorted(set(listed) - set(names)):
        problems.append(f"{name}: listed in {DOC} but not in the catalog")
    for name, placement in sorted(listed.items()):
        if name in expected and expected[name] != placement:
            problems.append(f"{name}: {DOC} says {placement}, the schema makes it {expected[name]}")
    problems += _statements(doc, catalog, expected)
    return problems


def _statements(doc: str, catalog: Catalog, expected: Mapping[str, str]) -> list[str]:
    """One Citus statement per distributed or reference table, in dependency order."""
    problems = []
    made: dict[str, tuple[int, str]] = {}  # table -> (position in the doc, placement)
    for match in _DISTRIBUTE.finditer(doc):
        name, column, anchor = match.groups()
        if column != TENANT:
            problems.append(f"{name}: {DOC} distributes it by {column}, not {TENANT}")
        if anchor and (anchor not in made or made[anchor][1] != "distributed"):
            problems.append(f"{name}: colocated with {anchor}, not distributed before it")
        if name in made:
            problems.append(f"{name}: {DOC} distributes it twice")
        made[name] = (match.start(), "distributed")
    for match in _REFERENCE.finditer(doc):
        name = match.group(1)
        if name in made:
            problems.append(f"{name}: {DOC} distributes it twice")
        made[name] = (match.start(), "reference")
    for name, placement in sorted(expected.items()):
        done = made.get(name)
        if placement == "local" and done is not None:
            problems.append(f"{name}: local, but {DOC} makes it {done[1]}")
        elif placement != "local" and (done is None or done[1] != placement):
            problems.append(f"{name}: {DOC} has no statement making it {placement}")
    for name in sorted(set(made) - set(expected)):
        problems.append(f"{name}: {DOC} distributes a table the catalog does not have")
    for con in catalog.constraints:
        if con.kind != "f" or con.ref_table == con.table or con.ref_table not in catalog.tables:
            continue
        src, dst = catalog.tables[con.table].name, catalog.tables[con.ref_table].name
        if src in made and dst in made and made[dst][0] > made[src][0]:
            problems.append(
                f"{src}: {DOC} distributes it before {dst}, which its foreign key "
                f"{con.name} points at"
            )
    return problems
