"""Password changes are audited, never with a secret (docs/contract.md §16).

An admin changes their own password on the account page; ``flask create-admin`` on an existing
user resets theirs. Each leaves one audit row, read back through the audit API.
"""

from __future__ import annotations

import json

from tests.admin.helpers import PASSWORDS, bearer_token, login

NEW = "brand-new-pw-17"


def audit_of(app, action: str, password: str | None = None) -> list[dict]:
    """The audit API's rows of ``action``, read as alice (signed in with ``password``)."""
    client = app.test_client()
    token = bearer_token(client, "alice", password)
    rows = client.get("/api/admin/audit", headers={"Authorization": f"Bearer {token}"}).get_json()
    return [row for row in rows if row["action"] == action]


def test_an_admins_own_password_change_is_audited_without_a_secret(app, client, alice):
    assert login(client, "alice").status_code == 302
    form = {"current_password": PASSWORDS["alice"], "new_password": NEW, "confirm_password": NEW}
    assert client.post("/auth/account", data=form).status_code == 302
    [row] = audit_of(app, "user.password_change", NEW)
    assert (row["actor"], row["target"]) == ("alice", f"user:{alice.id}")
    text = json.dumps(row)
    assert (
        PASSWORDS["alice"] not in text and NEW not in text and "argon2" not in text and "scrypt" not in text
    )


def test_a_refused_password_change_is_not_audited(app, client, alice):
    assert login(client, "alice").status_code == 302
    form = {"current_password": "wrong-password-1", "new_password": NEW, "confirm_password": NEW}
    assert client.post("/auth/account", data=form).status_code == 400
    assert audit_of(app, "user.password_change") == []


def test_create_admin_on_an_existing_user_audits_the_reset(app, alice, make_user):
    bob = make_user("bob")
    result = app.test_cli_runner().invoke(args=["create-admin", "bob", "--password", "reset-bob-password"])
    assert result.exit_code == 0, result.output
    [row] = audit_of(app, "user.password_change")
    assert row["target"] == f"user:{bob.id}" and row["actor"] is None
    assert row["changes"] == {"is_admin": [False, True], "via": "cli"}
    assert "reset-bob-password" not in json.dumps(row)
    created = app.test_cli_runner().invoke(args=["create-admin", "root", "--password", "root-password-1"])
    assert created.exit_code == 0
    [made] = audit_of(app, "user.create")
    assert made["changes"] == {"username": "root", "is_admin": True, "via": "cli"}
