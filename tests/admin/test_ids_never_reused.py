"""Identity ids are never reused (docs/contract.md §16; migration 0009_ids_never_reused).

Without AUTOINCREMENT SQLite gave a new row the largest id + 1: a whitelist entry added after the
newest one was removed took its id, and with it its counters. Add, delete, add: the new id differs,
on a fresh database (through the admin API) and on one migrated from 0008 with rows in it, whose
rows and references survive the rebuild.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import command

from common.db import alembic_config, make_sync_engine, upgrade

TABLES = ("users", "registration_tokens", "access_tokens", "api_keys", "whitelist_entries")
NOW = "'2026-01-01 00:00:00'"
INSERTS = {
    "users": "INSERT INTO users (username, username_key, password_hash, is_admin, is_active, session_version,"
    f" created_at) VALUES ('u{{n}}', 'u{{n}}', 'x', 0, 1, 1, {NOW})",
    "api_keys": "INSERT INTO api_keys (name, key_hash, prefix, priority, is_active, created_at)"
    f" VALUES ('k', 'h{{n}}', 'sdk_x', 5, 1, {NOW})",
    "whitelist_entries": "INSERT INTO whitelist_entries (ip, label, priority, added_at)"
    f" VALUES ('10.0.{{n}}.0/24', '', 5, {NOW})",
}


def test_a_whitelist_entry_and_a_key_added_after_a_removal_get_new_ids(api):
    entries = []
    for round_ in range(2):
        created = api.post("/api/admin/whitelist", json={"ip": f"10.9.{round_}.1", "priority": 5})
        assert created.status_code == 201, created.get_data(as_text=True)
        entries.append(created.get_json()["id"])
        assert api.delete(f"/api/admin/whitelist/{entries[-1]}").status_code == 200
    assert entries[1] != entries[0]
    key = api.post("/api/admin/apikeys", json={"name": "a", "priority": 5}).get_json()["id"]
    assert api.delete(f"/api/admin/apikeys/{key}").status_code == 200
    assert api.post("/api/admin/apikeys", json={"name": "b", "priority": 5}).get_json()["id"] != key


def test_add_delete_add_never_repeats_an_id_in_any_identity_table(settings):
    engine = make_sync_engine(settings.database_url)
    with engine.begin() as connection:
        for table, insert in INSERTS.items():
            connection.execute(sa.text(insert.format(n=1)))
            first = connection.execute(sa.text(f"SELECT max(id) FROM {table}")).scalar()
            connection.execute(sa.text(f"DELETE FROM {table} WHERE id = {first}"))
            connection.execute(sa.text(insert.format(n=2)))
            assert connection.execute(sa.text(f"SELECT max(id) FROM {table}")).scalar() == first + 1
        ddl = dict(
            connection.execute(sa.text("SELECT name, sql FROM sqlite_master WHERE type = 'table'")).all()
        )
    engine.dispose()
    assert all("AUTOINCREMENT" in ddl[table] for table in TABLES)


def test_the_migration_keeps_every_row_and_reference(tmp_path):
    url = f"sqlite:///{tmp_path / 'old.db'}"
    command.upgrade(alembic_config(url), "0008_end_user")
    engine = make_sync_engine(url)
    with engine.begin() as connection:
        connection.execute(sa.text(INSERTS["users"].format(n=1)))
        connection.execute(
            sa.text(
                "INSERT INTO access_tokens (user_id, token_hash, session_version, created_at, expires_at)"
                f" VALUES (1, 't', 1, {NOW}, '2030-01-01 00:00:00')"
            )
        )
        connection.execute(
            sa.text(
                "INSERT INTO conversations (user_id, title, model, created_at, updated_at)"
                f" VALUES (1, 't', 'm', {NOW}, {NOW})"
            )
        )
        for n in (1, 2, 3):
            connection.execute(sa.text(INSERTS["whitelist_entries"].format(n=n)))
        connection.execute(sa.text("DELETE FROM whitelist_entries WHERE id = 2"))
    before = _counts(engine)
    upgrade(url)
    assert _counts(engine) == before  # no cascade emptied a child table
    with engine.begin() as connection:
        assert connection.execute(sa.text("PRAGMA foreign_key_check")).all() == []
        assert [
            r[0] for r in connection.execute(sa.text("SELECT id FROM whitelist_entries ORDER BY id"))
        ] == [1, 3]
        connection.execute(sa.text("DELETE FROM whitelist_entries WHERE id = 3"))
        connection.execute(sa.text(INSERTS["whitelist_entries"].format(n=4)))
        assert connection.execute(sa.text("SELECT max(id) FROM whitelist_entries")).scalar() == 4
    command.downgrade(alembic_config(url), "0008_end_user")
    assert _counts(engine) == {**before, "whitelist_entries": 2}
    engine.dispose()


def _counts(engine) -> dict[str, int]:
    with engine.connect() as connection:
        return {
            table: connection.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar()
            for table in (*TABLES, "conversations")
        }


def test_the_personal_keys_migration_keeps_keys_their_log_rows_and_autoincrement(tmp_path):
    # 0012 rebuilds api_keys on SQLite: with foreign keys on, dropping the old table would null every
    # request-log row's api_key_id (ON DELETE SET NULL), and a plain rebuild drops AUTOINCREMENT.
    url = f"sqlite:///{tmp_path / 'keys.db'}"
    command.upgrade(alembic_config(url), "0011_model_profiles")
    engine = make_sync_engine(url)
    with engine.begin() as connection:
        for n in (1, 2):
            connection.execute(sa.text(INSERTS["api_keys"].format(n=n)))
        connection.execute(sa.text("DELETE FROM api_keys WHERE id = 2"))
        connection.execute(
            sa.text(
                "INSERT INTO request_log (created_at, request_id, source, api_key_id, method, endpoint,"
                f" status, repeats, adjusted) VALUES ({NOW}, 'r1', 'custom_app', 1, 'POST', '/api/chat', 200,"
                " 1, 0)"
            )
        )
    for target in ("0012_personal_keys", "0011_model_profiles"):
        (command.upgrade if target.startswith("0012") else command.downgrade)(alembic_config(url), target)
        with engine.begin() as connection:
            assert connection.execute(sa.text("SELECT api_key_id FROM request_log")).scalar() == 1
            ddl = connection.execute(
                sa.text("SELECT sql FROM sqlite_master WHERE name = 'api_keys'")
            ).scalar()
            assert "AUTOINCREMENT" in ddl
            connection.execute(sa.text(INSERTS["api_keys"].format(n=3)))
            assert connection.execute(sa.text("SELECT max(id) FROM api_keys")).scalar() > 2
            connection.execute(sa.text("DELETE FROM api_keys WHERE id > 1"))
    engine.dispose()
