"""store.py against a temporary SQLite file: schema, PRAGMAs, transactions, queries."""

import sqlite3
import uuid

import pytest

import store


@pytest.fixture
def db(tmp_path):
    database = store.open_database(str(tmp_path / "store.db"))
    yield database
    database.close()


@pytest.fixture
def conn(db):
    with db.connection() as connection:
        yield connection


def new_user(conn, name, admin=False):
    """Create an account and return it with its internal id."""
    store.create_user(conn, str(uuid.uuid4()), name, "pbkdf2_sha256$1$c2FsdA==$aGFzaA==", admin)
    return store.get_user_by_name(conn, name)


def todos_of(conn, account, **page):
    """The account's to-dos as the list route reads them."""
    return store.token_account_with_todos(conn, account["public_id"], "-", **page)[1]


def todo_of(conn, account, todo_id):
    """The account's to-do ``todo_id`` as the get route reads it."""
    return store.token_account_with_todo(conn, account["public_id"], "-", todo_id)[1]


def pragma(conn, name):
    return conn.execute(f"PRAGMA {name}").fetchone()[0]


def test_schema_version_is_recorded_in_user_version(conn):
    assert pragma(conn, "user_version") == store.SCHEMA_VERSION
    assert store.schema_version(conn) == store.SCHEMA_VERSION


def test_foreign_keys_are_on(conn):
    assert pragma(conn, "foreign_keys") == 1


def test_journal_is_wal(conn):
    assert pragma(conn, "journal_mode") == "wal"


def test_busy_timeout_is_set(conn):
    assert pragma(conn, "busy_timeout") > 0


def test_todos_have_an_index_on_their_owner(conn):
    indexes = conn.execute("PRAGMA index_list(todos)").fetchall()
    first_columns = {conn.execute(f"PRAGMA index_info({row['name']})").fetchone()["name"] for row in indexes}
    assert "owner_id" in first_columns


def test_deleting_an_account_deletes_its_todos(conn):
    alice = new_user(conn, "alice")
    bob = new_user(conn, "bob")
    store.create_todo(conn, alice["id"], "one")
    store.create_todo(conn, alice["id"], "two")
    kept = store.create_todo(conn, bob["id"], "bob's")
    assert store.delete_user(conn, alice["public_id"]) is True
    assert conn.execute("SELECT count(*) FROM todos WHERE owner_id = ?", (alice["id"],)).fetchone()[0] == 0
    assert todos_of(conn, bob) == [kept]


def test_names_are_unique(conn):
    new_user(conn, "alice")
    with pytest.raises(store.NameTaken):
        store.create_user(conn, str(uuid.uuid4()), "alice", "x", False)
    assert len(store.list_users(conn)) == 1


def test_renaming_to_a_taken_name_raises_name_taken(conn):
    new_user(conn, "alice")
    bob = new_user(conn, "bob")
    with pytest.raises(store.NameTaken):
        store.update_user(conn, bob["public_id"], name="alice")
    assert store.get_user(conn, bob["public_id"])["name"] == "bob"


def test_deleting_the_last_admin_raises_last_admin(conn):
    root = new_user(conn, "root", admin=True)
    with pytest.raises(store.LastAdmin):
        store.delete_user(conn, root["public_id"])
    assert store.get_user(conn, root["public_id"]) is not None


def test_demoting_the_last_admin_raises_last_admin(conn):
    root = new_user(conn, "root", admin=True)
    with pytest.raises(store.LastAdmin):
        store.update_user(conn, root["public_id"], admin=False)
    assert store.get_user(conn, root["public_id"])["admin"] is True


def test_an_admin_can_go_while_another_remains(conn):
    root = new_user(conn, "root", admin=True)
    new_user(conn, "second", admin=True)
    assert store.update_user(conn, root["public_id"], admin=False)["admin"] is False
    assert store.delete_user(conn, root["public_id"]) is True


def test_missing_account_gives_none_or_false(conn):
    assert store.get_user(conn, "no-such-id") is None
    assert store.update_user(conn, "no-such-id", admin=True) is None
    assert store.delete_user(conn, "no-such-id") is False


def test_update_todo_of_another_owner_does_nothing(conn):
    alice = new_user(conn, "alice")
    bob = new_user(conn, "bob")
    todo = store.create_todo(conn, alice["id"], "alice's")
    assert store.update_todo(conn, bob["id"], todo["id"], text="mine now", complete=True) is None
    assert todo_of(conn, alice, todo["id"]) == todo


def test_delete_todo_of_another_owner_does_nothing(conn):
    alice = new_user(conn, "alice")
    bob = new_user(conn, "bob")
    todo = store.create_todo(conn, alice["id"], "alice's")
    assert store.delete_todo(conn, bob["id"], todo["id"]) is False
    assert todo_of(conn, alice, todo["id"]) == todo


def test_get_todo_of_another_owner_is_none(conn):
    alice = new_user(conn, "alice")
    bob = new_user(conn, "bob")
    todo = store.create_todo(conn, alice["id"], "alice's")
    assert todo_of(conn, bob, todo["id"]) is None


def test_id_beyond_64_bits_finds_nothing(conn):
    alice = new_user(conn, "alice")
    huge = 2**63
    assert todo_of(conn, alice, huge) is None
    assert store.update_todo(conn, alice["id"], huge, complete=True) is None
    assert store.delete_todo(conn, alice["id"], huge) is False


def test_todos_are_listed_in_id_order(conn):
    alice = new_user(conn, "alice")
    created = [store.create_todo(conn, alice["id"], f"todo {n}") for n in range(5)]
    store.delete_todo(conn, alice["id"], created[1]["id"])
    listed = todos_of(conn, alice)
    assert [t["id"] for t in listed] == sorted(t["id"] for t in created if t is not created[1])


def test_transaction_rolls_back_on_exception(conn):
    alice = new_user(conn, "alice")
    with pytest.raises(RuntimeError):
        with store.transaction(conn):
            conn.execute("INSERT INTO todos (owner_id, text) VALUES (?, ?)", (alice["id"], "lost"))
            raise RuntimeError("boom")
    assert todos_of(conn, alice) == []
    assert not conn.in_transaction


def test_transaction_commits_on_success(db, conn):
    alice = new_user(conn, "alice")
    with store.transaction(conn):
        conn.execute("INSERT INTO todos (owner_id, text) VALUES (?, ?)", (alice["id"], "kept"))
    with sqlite3.connect(db.path) as other:
        assert other.execute("SELECT text FROM todos").fetchall() == [("kept",)]


def test_migrate_is_idempotent(conn):
    new_user(conn, "alice")
    assert store.migrate(conn) == store.SCHEMA_VERSION
    assert store.migrate(conn) == store.SCHEMA_VERSION
    assert store.schema_version(conn) == store.SCHEMA_VERSION
    assert [u["name"] for u in store.list_users(conn)] == ["alice"]


def test_reopening_a_file_keeps_its_data(tmp_path):
    path = str(tmp_path / "again.db")
    first = store.open_database(path)
    with first.connection() as conn:
        new_user(conn, "alice")
    first.close()
    second = store.open_database(path)
    try:
        with second.connection() as conn:
            assert [u["name"] for u in store.list_users(conn)] == ["alice"]
    finally:
        second.close()


def test_memory_database_is_refused():
    with pytest.raises(ValueError, match=":memory:"):
        store.open_database(":memory:")


def test_get_or_create_secret_keeps_the_first_value(conn):
    assert store.get_or_create_secret(conn, "jwt_signing_key", "first") == "first"
    assert store.get_or_create_secret(conn, "jwt_signing_key", "second") == "first"


def test_rehash_password_only_replaces_the_hash_it_was_given(conn):
    alice = new_user(conn, "alice")
    old = store.get_login(conn, "alice")["password_hash"]
    store.rehash_password(conn, alice["id"], "not-the-current-hash", "ignored")
    assert store.get_login(conn, "alice")["password_hash"] == old
    store.rehash_password(conn, alice["id"], old, "new-hash")
    assert store.get_login(conn, "alice")["password_hash"] == "new-hash"


def test_accounts_never_carry_the_hash_except_get_login(conn):
    alice = new_user(conn, "alice")
    for account in (alice, store.get_user(conn, alice["public_id"]), *store.list_users(conn)):
        assert "password_hash" not in account
    assert "password_hash" in store.get_login(conn, "alice")


def test_ping_answers_on_a_working_database(conn):
    assert store.ping(conn) is None


def statements_of(conn, read):
    """The SQL statements that ``read()`` runs on ``conn``, and its answer."""
    seen = []
    conn.set_trace_callback(seen.append)
    try:
        answer = read()
    finally:
        conn.set_trace_callback(None)
    return seen, answer


@pytest.mark.parametrize("route", ["list", "get"])
def test_the_token_check_and_the_routes_data_are_one_statement(conn, route):
    alice = new_user(conn, "alice")
    created = [store.create_todo(conn, alice["id"], f"todo {n}") for n in range(3)]
    reads = {
        "list": (lambda: store.token_account_with_todos(conn, alice["public_id"], "jti"), created),
        "get": (lambda: store.token_account_with_todo(conn, alice["public_id"], "jti", created[1]["id"]), created[1]),
    }
    read, expected = reads[route]
    seen, (found, data) = statements_of(conn, read)
    assert len(seen) == 1
    assert found == store.get_token_account(conn, alice["public_id"], "jti")
    assert data == expected


def test_no_account_reads_no_todos(conn):
    alice = new_user(conn, "alice")
    todo = store.create_todo(conn, alice["id"], "alice's")
    assert store.token_account_with_todos(conn, "no-such-id", "jti") == (None, [])
    assert store.token_account_with_todo(conn, "no-such-id", "jti", todo["id"]) == (None, None)


def test_the_token_check_read_with_data_sees_a_logout_and_a_password_change(conn):
    alice = new_user(conn, "alice")
    todo = store.create_todo(conn, alice["id"], "one")
    store.revoke_token(conn, "logged-out", 2e9, 1e9)
    store.update_user(conn, alice["public_id"], password_hash="pbkdf2_sha256$1$eA==$eQ==", now=1234.5)
    for found, _ in (
        store.token_account_with_todos(conn, alice["public_id"], "logged-out"),
        store.token_account_with_todo(conn, alice["public_id"], "logged-out", todo["id"]),
    ):
        assert found[1:] == (1234.5, True)
    assert store.token_account_with_todos(conn, alice["public_id"], "other")[0][2] is False


def test_a_page_of_todos_follows_limit_offset_and_complete(conn):
    alice = new_user(conn, "alice")
    created = [store.create_todo(conn, alice["id"], f"todo {n}") for n in range(6)]
    for todo in created[::2]:
        store.update_todo(conn, alice["id"], todo["id"], complete=True)
    done = [{**t, "complete": True} for t in created[::2]]
    assert [t["id"] for t in todos_of(conn, alice, limit=2, offset=1)] == [t["id"] for t in created[1:3]]
    assert todos_of(conn, alice, complete=True) == done
    assert todos_of(conn, alice, complete=True, limit=1, offset=1) == done[1:2]
    assert todos_of(conn, alice, complete=False) == created[1::2]
    assert todos_of(conn, alice, offset=6) == []


@pytest.mark.parametrize(
    "text",
    [
        "".join(map(chr, range(1, 32))) + '\x7f"\\/',
        "🦆 astral 𝄞, e\u0301, \u202e, \u2028\u2029, \ufeff\uffff",
        '["not", "json"]',
        "x" * 500,
    ],
    ids=["controls-and-escapes", "unicode", "json-looking", "long"],
)
def test_text_read_with_the_token_check_is_exactly_what_was_stored(conn, text):
    alice = new_user(conn, "alice")
    todo = store.create_todo(conn, alice["id"], text)
    assert todos_of(conn, alice) == [todo]
    assert todo_of(conn, alice, todo["id"])["text"] == text
