"""PUT and DELETE /api/admin/models/{model}/profile (docs/contract.md §12), audited."""

from __future__ import annotations

import pytest


def test_a_profile_is_stored_under_the_normalised_name_and_returned(api):
    profile = {
        "load_options": {"num_ctx": 8192},
        "keep_alive": "30m",
        "keep_alive_max": 7200,
        "max_parallel": 2,
    }
    response = api.put("/api/admin/models/llama3.2/profile", json=profile)
    assert response.status_code == 200
    assert response.get_json() == {"model": "llama3.2:latest", "keep_alive_min": None, **profile}
    again = api.put("/api/admin/models/library/llama3.2:latest/profile", json={"load_options": "server"})
    assert again.get_json() == {
        "model": "llama3.2:latest",
        "load_options": "server",
        "keep_alive": None,
        "keep_alive_min": None,
        "keep_alive_max": None,
        "max_parallel": None,
    }
    entries = api.get("/api/admin/audit").get_json()
    assert [e["action"] for e in entries[:2]] == ["model_profile.update", "model_profile.update"]
    assert entries[0]["target"] == "model:llama3.2:latest" and entries[0]["actor"] == "alice"
    assert entries[0]["changes"]["load_options"] == [{"num_ctx": 8192}, "server"]
    assert entries[0]["changes"]["max_parallel"] == [2, None]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"load_options": {"num_ctx": -5}}, "load_options"),
        ({"keep_alive": "300"}, "keep_alive"),
        ({"keep_alive_min": "1x"}, "keep_alive_min"),
        ({"keep_alive_max": []}, "keep_alive_max"),
        ({"max_parallel": 0}, "max_parallel"),
        ({"max_paralel": 1}, "max_paralel"),
    ],
)
def test_a_bad_field_is_a_400_naming_it_and_stores_nothing(api, body, field):
    response = api.put("/api/admin/models/llama3.2/profile", json=body)
    assert response.status_code == 400 and field in response.get_json()["error"]
    assert api.delete("/api/admin/models/llama3.2/profile").status_code == 404


def test_a_bad_model_name_is_a_400(api):
    response = api.put("/api/admin/models/llama*/profile", json={})
    assert response.status_code == 400 and "model" in response.get_json()["error"]


def test_delete_answers_the_old_profile_then_404(api):
    api.put("/api/admin/models/qwen2.5:7b/profile", json={"max_parallel": 1})
    gone = api.delete("/api/admin/models/qwen2.5:7b/profile")
    assert gone.status_code == 200 and gone.get_json()["max_parallel"] == 1
    assert api.delete("/api/admin/models/qwen2.5:7b/profile").status_code == 404
    entry = api.get("/api/admin/audit").get_json()[0]
    assert (entry["action"], entry["target"]) == ("model_profile.delete", "model:qwen2.5:7b")


def test_only_admins_may_set_profiles(user_client, client):
    assert client.put("/api/admin/models/llama3.2/profile", json={}).status_code == 401
    assert user_client.put("/api/admin/models/llama3.2/profile", json={}).status_code == 403
