"""The schema keeps the Citus rules (DESIGN rule 3), and docs/scale-out.md keeps up with it.

The checker is :mod:`tests.ops.scale_out`. The migrated schema must pass it; each
purpose-made bad table, created in a database of the test's own, must fail it with
exactly the problem it was made to show (and a near miss that Citus accepts must pass).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest
from sqlalchemy import text

from opdesk.db import Database
from tests.ops.scale_out import (
    DOC,
    GLOBAL_TABLES,
    Global,
    Placement,
    doc_problems,
    schema_problems,
)

DOC_TEXT = (Path(__file__).resolve().parents[2] / DOC).read_text(encoding="utf-8")

TENANT_ID = "tenant_id uuid not null references tenants (id)"
CODES = f"create table scale_codes ({TENANT_ID}, id uuid, code text, primary key (tenant_id, id))"
PARENTS = f"create table scale_parents ({TENANT_ID}, id uuid, primary key (tenant_id, id))"


def children(foreign_key: str) -> str:
    return (
        f"create table scale_children ({TENANT_ID}, id uuid, parent_id uuid, "
        f"primary key (tenant_id, id), {foreign_key})"
    )


def problems_after(
    database: Database, *ddl: str, global_tables: Mapping[str, Global] = GLOBAL_TABLES
) -> list[str]:
    """Create the tables (as the owner, committed), then run the checker."""
    with database.owner_engine.begin() as conn:
        for statement in ddl:
            conn.execute(text(statement))
    with database.owner_engine.connect() as conn:
        return schema_problems(conn, global_tables=global_tables)


def also_global(
    name: str, placement: Placement = "reference", per_tenant: str | None = None
) -> dict[str, Global]:
    """The real list, plus a table made by the test."""
    return {**GLOBAL_TABLES, name: Global(placement, "a table made by this test", per_tenant)}


# --------------------------------------------------------------------------- the schema


def test_the_migrated_schema_keeps_every_citus_rule(db: Database) -> None:
    with db.owner_engine.connect() as conn:
        assert schema_problems(conn) == []


def test_docs_list_every_table_and_distribute_it_in_order(db: Database) -> None:
    with db.owner_engine.connect() as conn:
        assert doc_problems(conn, DOC_TEXT) == []


def test_every_global_table_says_why(db: Database) -> None:
    for name, entry in GLOBAL_TABLES.items():
        assert entry.placement in ("reference", "local"), name
        assert len(entry.reason) > 40, name


# --------------------------------------------------------------------------- tenant tables


def test_a_primary_key_without_tenant_id_fails(fresh_database: Database) -> None:
    assert problems_after(
        fresh_database, f"create table scale_bad_pk ({TENANT_ID}, id uuid primary key)"
    ) == ["scale_bad_pk: primary key scale_bad_pk_pkey is (id) without tenant_id"]


def test_a_tenant_table_without_a_primary_key_fails(fresh_database: Database) -> None:
    assert problems_after(fresh_database, f"create table scale_no_pk ({TENANT_ID}, id uuid)") == [
        "scale_no_pk: no primary key (it needs one with tenant_id)"
    ]


@pytest.mark.parametrize(
    ("ddl", "problem"),
    [
        pytest.param(
            "create unique index uq_scale_code on scale_codes (code)",
            "unique index uq_scale_code is (code)",
            id="plain",
        ),
        pytest.param(
            "alter table scale_codes add constraint uq_scale_code unique (code)",
            "unique constraint uq_scale_code is (code)",
            id="constraint",
        ),
        pytest.param(
            "create unique index uq_scale_code on scale_codes ((tenant_id::text || code))",
            "unique index uq_scale_code is ((tenant_id::text || code))",
            id="tenant-in-an-expression",
        ),
        pytest.param(
            "create unique index uq_scale_code on scale_codes (lower(code)) "
            "where tenant_id is not null",
            "partial unique index uq_scale_code is (lower(code))",
            id="tenant-in-the-predicate",
        ),
        pytest.param(
            "create unique index uq_scale_code on scale_codes (code) include (tenant_id)",
            "unique index uq_scale_code is (code)",
            id="tenant-only-included",
        ),
    ],
)
def test_a_unique_index_without_tenant_id_as_a_key_column_fails(
    fresh_database: Database, ddl: str, problem: str
) -> None:
    assert problems_after(fresh_database, CODES, ddl) == [
        f"scale_codes: {problem} without tenant_id as a key column"
    ]


def test_a_unique_index_with_tenant_id_anywhere_in_its_key_passes(
    fresh_database: Database,
) -> None:
    # Citus needs the column, not its lead; DESIGN's "led by tenant_id" is
    # test_tenancy_rls's business.
    assert (
        problems_after(
            fresh_database,
            CODES,
            "create unique index uq_scale_code on scale_codes (lower(code), tenant_id) "
            "where code is not null",
        )
        == []
    )


@pytest.mark.parametrize(
    ("exclude", "name"),
    [
        ("room with =, during with &&", "scale_rooms_room_during_excl"),
        ("tenant_id with <>, during with &&", "scale_rooms_tenant_id_during_excl"),
    ],
)
def test_an_exclusion_constraint_without_tenant_id_equal_fails(
    fresh_database: Database, exclude: str, name: str
) -> None:
    assert problems_after(
        fresh_database,
        f"create table scale_rooms ({TENANT_ID}, id uuid, room text, during tstzrange, "
        f"primary key (tenant_id, id), exclude using gist ({exclude}))",
    ) == [f"scale_rooms: exclusion constraint {name} does not compare tenant_id with ="]


def test_a_foreign_key_on_the_id_alone_fails(fresh_database: Database) -> None:
    # PostgreSQL needs a unique index on the id alone to point at it: that fails too.
    assert problems_after(
        fresh_database,
        f"create table scale_parents ({TENANT_ID}, id uuid unique, primary key (tenant_id, id))",
        children("foreign key (parent_id) references scale_parents (id)"),
    ) == [
        "scale_parents: unique constraint scale_parents_id_key is (id) "
        "without tenant_id as a key column",
        "scale_children: foreign key scale_children_parent_id_fkey (parent_id) -> "
        "scale_parents (id) does not pair tenant_id with tenant_id",
    ]


def test_a_foreign_key_pairing_tenant_id_with_another_column_fails(
    fresh_database: Database,
) -> None:
    assert problems_after(
        fresh_database,
        PARENTS,
        children("foreign key (parent_id, tenant_id) references scale_parents (tenant_id, id)"),
    ) == [
        "scale_children: foreign key scale_children_parent_id_tenant_id_fkey "
        "(parent_id, tenant_id) -> scale_parents (tenant_id, id) "
        "does not pair tenant_id with tenant_id"
    ]


def test_a_composite_foreign_key_passes(fresh_database: Database) -> None:
    assert (
        problems_after(
            fresh_database,
            PARENTS,
            children("foreign key (tenant_id, parent_id) references scale_parents (tenant_id, id)"),
        )
        == []
    )


def test_a_tenant_table_pointing_at_a_local_table_fails(fresh_database: Database) -> None:
    assert problems_after(
        fresh_database,
        f"create table scale_used ({TENANT_ID}, id uuid, token_id uuid references otp_tokens, "
        "primary key (tenant_id, id))",
    ) == [
        "scale_used: foreign key scale_used_token_id_fkey (token_id) -> otp_tokens (id) "
        "points at a local table (a distributed table may point only at reference tables)"
    ]


def test_a_tenant_id_of_another_type_fails(fresh_database: Database) -> None:
    assert problems_after(
        fresh_database,
        "create table scale_texts (tenant_id text not null, id uuid, primary key (tenant_id, id))",
    ) == [
        "scale_texts: tenant_id is text, not uuid like tenants.id (colocated tables need one type)"
    ]


# --------------------------------------------------------------------------- global tables


def test_a_global_table_pointing_at_a_tenant_table_fails(fresh_database: Database) -> None:
    assert problems_after(
        fresh_database,
        "create table scale_lookup (code text primary key, owner uuid, patient_id uuid, "
        "foreign key (owner, patient_id) references patients (tenant_id, id))",
        global_tables=also_global("scale_lookup"),
    ) == [
        "scale_lookup: global table points at tenant table patients by foreign key "
        "scale_lookup_owner_patient_id_fkey (owner, patient_id) -> patients (tenant_id, id) "
        "(Citus refuses a reference or local table pointing at a distributed one)"
    ]


@pytest.mark.parametrize(
    ("ddl", "sign"),
    [
        pytest.param(
            ["create table scale_lookup (code text primary key, clinic_id uuid)"],
            "column clinic_id names a clinic",
            id="clinic-column",
        ),
        pytest.param(
            ["create table scale_lookup (code text primary key, owner uuid references tenants)"],
            "foreign key scale_lookup_owner_fkey points at tenants",
            id="foreign-key-to-tenants",
        ),
        pytest.param(
            [
                "create table scale_lookup (code text primary key)",
                "alter table scale_lookup enable row level security",
                "create policy mine on scale_lookup using (opdesk_current_tenant() is not null)",
            ],
            "row-level security policy mine reads app.tenant_id",
            id="policy-through-a-function",
        ),
        pytest.param(
            [
                "create table scale_lookup (code text primary key)",
                "alter table scale_lookup enable row level security",
                "create policy mine on scale_lookup "
                "using (code = current_setting('app.tenant_id', true))",
            ],
            "row-level security policy mine reads app.tenant_id",
            id="policy-on-the-setting",
        ),
        pytest.param(
            [
                "create table scale_lookup (code text primary key)",
                "grant insert on scale_lookup to opdesk_app",
            ],
            "the app role may write it",
            id="reference-written-by-the-app",
        ),
    ],
)
def test_a_global_table_written_per_tenant_fails(
    fresh_database: Database, ddl: list[str], sign: str
) -> None:
    assert problems_after(fresh_database, *ddl, global_tables=also_global("scale_lookup")) == [
        f"scale_lookup: global table written per tenant: {sign}"
    ]


def test_a_local_table_the_app_writes_passes(fresh_database: Database) -> None:
    assert (
        problems_after(
            fresh_database,
            "create table scale_lookup (code text primary key)",
            "grant insert on scale_lookup to opdesk_app",
            global_tables=also_global("scale_lookup", "local"),
        )
        == []
    )


def test_a_per_tenant_global_table_passes_only_with_its_reason(fresh_database: Database) -> None:
    ddl = "create table scale_lookup (code text primary key, clinic_id uuid)"
    assert (
        problems_after(
            fresh_database, ddl, global_tables=also_global("scale_lookup", per_tenant="a reason")
        )
        == []
    )


def test_a_table_without_tenant_id_must_be_listed(fresh_database: Database) -> None:
    assert problems_after(fresh_database, "create table scale_orphans (id uuid primary key)") == [
        "scale_orphans: no tenant_id and not in GLOBAL_TABLES "
        "(add tenant_id, or list it as reference or local with its reason)"
    ]


def test_the_list_of_global_tables_cannot_go_stale(db: Database) -> None:
    stale = {
        **GLOBAL_TABLES,
        "icd10_codes": Global("reference", "codes", per_tenant="no longer true"),
        "scale_gone": Global("local", "dropped long ago"),
        "patients": Global("reference", "not global at all"),
    }
    with db.owner_engine.connect() as conn:
        assert schema_problems(conn, global_tables=stale) == [
            "patients: has tenant_id but GLOBAL_TABLES lists it as reference",
            "scale_gone: in GLOBAL_TABLES but not in the catalog",
            "icd10_codes: GLOBAL_TABLES says why it carries a clinic, but it carries none "
            "(drop the per_tenant reason)",
        ]


# --------------------------------------------------------------------------- the doc


def test_a_new_table_missing_from_the_doc_fails(fresh_database: Database) -> None:
    problems_after(fresh_database, PARENTS)
    with fresh_database.owner_engine.connect() as conn:
        assert doc_problems(conn, DOC_TEXT) == [
            f"scale_parents: not in {DOC}'s table list",
            f"scale_parents: {DOC} has no statement making it distributed",
        ]


def test_a_table_the_catalog_lacks_fails_in_the_doc(db: Database) -> None:
    doc = (
        DOC_TEXT
        + "\n| `scale_gone` | distributed | |\n"
        + "SELECT create_distributed_table('scale_gone', 'tenant_id', "
        + "colocate_with => 'patients');\n"
    )
    with db.owner_engine.connect() as conn:
        assert doc_problems(conn, doc) == [
            f"scale_gone: listed in {DOC} but not in the catalog",
            f"scale_gone: {DOC} distributes a table the catalog does not have",
        ]


def test_the_doc_must_place_a_table_as_the_schema_does(db: Database) -> None:
    doc = DOC_TEXT.replace("| `icd10_codes` | reference |", "| `icd10_codes` | local |")
    with db.owner_engine.connect() as conn:
        assert doc_problems(conn, doc) == [
            f"icd10_codes: {DOC} says local, the schema makes it reference"
        ]


def test_the_doc_must_distribute_a_table_after_those_it_points_at(db: Database) -> None:
    line = "SELECT create_distributed_table('users', 'tenant_id', colocate_with => 'patients');\n"
    assert line in DOC_TEXT
    doc = DOC_TEXT.replace(line, "") + line
    with db.owner_engine.connect() as conn:
        found = doc_problems(conn, doc)
    assert (
        f"devices: {DOC} distributes it before users, which its foreign key "
        "fk_devices_tenant_id_user_id_users points at"
    ) in found
    assert all("before users" in problem for problem in found)
