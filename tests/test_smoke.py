"""The tutorial flow end to end: the slice every other test builds on."""

from tests.conftest import ADMIN_PASSWORD, basic


def test_tutorial_flow_logs_in_and_manages_todos(client, admin):
    token = client.get("/login", headers=basic("admin", ADMIN_PASSWORD), status=200).json["token"]
    headers = {"Authorization": f"Bearer {token}"}
    created = client.post_json("/todo", {"text": "buy milk"}, headers=headers, status=201)
    assert created.headers["Location"] == f"/todo/{created.json['todo']['id']}"
    assert client.get("/todo", headers=headers, status=200).json == {
        "todos": [{"id": created.json["todo"]["id"], "text": "buy milk", "complete": False}]
    }
