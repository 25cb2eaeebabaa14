"""The stores against a fresh database of each backend: schema, transactions, queries and
every guard a write makes inside its own transaction (one test per promise, on both
backends; the few about the SQLite file itself are marked sqlite_only)."""

import sqlite3
import uuid

import pytest

import store
import todo_wsgi
from tests.conftest import every_row

HASH = "pbkdf2_sha256$1$c2FsdA==$aGFzaA=="


@pytest.fixture
def backend(database):
    return todo_wsgi.backend_for(database)


@pytest.fixture
def db(backend, database):
    handle = backend.open_database(database)
    yield handle
    handle.close()


@pytest.fixture
def conn(db):
    with db.connection() as connection:
        yield connection


@pytest.fixture
def s(backend):
    """The store under test (store or store_pg)."""
    return backend


def new_user(s, conn, name, admin=False):
    """Create an account and return it with its internal id and a live session (its Caller)."""
    s.create_user(conn, None, str(uuid.uuid4()), name, HASH, admin)
    account = s.get_user_by_name(conn, name)
    caller = store.Caller(uuid.uuid4().hex, account["public_id"], "10.0.0.9", 1e9)
    assert s.start_session(conn, s.get_login(conn, name), caller, uuid.uuid4().hex, 2e9)
    return {**account, "caller": caller}


def another_session(account, session_id):
    return store.Caller(session_id, account["public_id"], "10.0.0.9", 1e9)


def todos_of(s, conn, account, **page):
    """The account's to-dos as the list route reads them."""
    return s.session_account_with_todos(conn, *account["caller"][:2], 1.5e9, **page)[1]


def todo_of(s, conn, account, todo_id):
    """The account's to-do ``todo_id`` as the get route reads it."""
    return s.session_account_with_todo(conn, *account["caller"][:2], 1.5e9, todo_id)[1]


def count(conn, table):
    return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


def pragma(conn, name):
    return conn.execute(f"PRAGMA {name}").fetchone()[0]


# -- the SQLite file ------------------------------------------------------------------


@pytest.mark.sqlite_only
def test_schema_version_is_recorded_in_user_version(conn):
    assert pragma(conn, "user_version") == store.SCHEMA_VERSION
    assert store.schema_version(conn) == store.SCHEMA_VERSION


@pytest.mark.sqlite_only
def test_foreign_keys_are_on(conn):
    assert pragma(conn, "foreign_keys") == 1


@pytest.mark.sqlite_only
def test_journal_is_wal(conn):
    assert pragma(conn, "journal_mode") == "wal"


@pytest.mark.sqlite_only
def test_busy_timeout_is_set(conn):
    assert pragma(conn, "busy_timeout") == store.BUSY_TIMEOUT_MS


@pytest.mark.sqlite_only
def test_todos_have_an_index_on_their_owner(conn):
    indexes = conn.execute("PRAGMA index_list(todos)").fetchall()
    first_columns = {conn.execute(f"PRAGMA index_info({row['name']})").fetchone()["name"] for row in indexes}
    assert "owner_id" in first_columns


# -- accounts -----------------------------------------------------------------------


def test_deleting_an_account_deletes_its_todos_and_sessions(s, conn):
    alice = new_user(s, conn, "alice")
    bob = new_user(s, conn, "bob")
    s.create_todo(conn, alice["caller"], "one", 10)
    s.create_todo(conn, alice["caller"], "two", 10)
    kept = s.create_todo(conn, bob["caller"], "bob's", 10)
    assert s.delete_user(conn, None, alice["public_id"]) is True
    assert count(conn, "todos") == 1 and count(conn, "sessions") == 1
    assert todos_of(s, conn, bob) == [kept]


@pytest.mark.parametrize("taken", ["alice", "Alice", "ALICE", "ａｌｉｃｅ"])
def test_names_are_unique_by_their_nfkc_case_fold(s, conn, taken):
    new_user(s, conn, "alice")
    before = every_row(conn)
    with pytest.raises(s.NameTaken):
        s.create_user(conn, None, str(uuid.uuid4()), taken, "x", False)
    assert every_row(conn) == before


def test_renaming_to_a_taken_name_raises_name_taken(s, conn):
    new_user(s, conn, "alice")
    bob = new_user(s, conn, "bob")
    before = every_row(conn)
    with pytest.raises(s.NameTaken):
        s.update_user(conn, None, bob["public_id"], name="ALICE", admin=True)
    assert every_row(conn) == before


def test_renaming_an_account_to_another_case_of_its_own_name_is_allowed(s, conn):
    alice = new_user(s, conn, "alice")
    assert s.update_user(conn, None, alice["public_id"], name="Alice")["name"] == "Alice"


def test_deleting_the_last_admin_raises_last_admin_and_deletes_nothing(s, conn):
    root = new_user(s, conn, "root", admin=True)
    s.create_todo(conn, root["caller"], "keep me", 10)
    before = every_row(conn)
    with pytest.raises(s.LastAdmin):
        s.delete_user(conn, root["caller"], root["public_id"])
    assert every_row(conn) == before


def test_demoting_the_last_admin_raises_last_admin_and_changes_nothing(s, conn):
    root = new_user(s, conn, "root", admin=True)
    before = every_row(conn)
    with pytest.raises(s.LastAdmin):
        s.update_user(conn, None, root["public_id"], name="renamed", admin=False)
    assert every_row(conn) == before


def test_an_admin_can_go_while_another_remains(s, conn):
    root = new_user(s, conn, "root", admin=True)
    new_user(s, conn, "second", admin=True)
    assert s.update_user(conn, None, root["public_id"], admin=False)["admin"] is False
    assert s.delete_user(conn, None, root["public_id"]) is True


def test_missing_account_gives_none_or_false(s, conn):
    assert s.get_user(conn, "no-such-id") is None
    assert s.update_user(conn, None, "no-such-id", admin=True) is None
    assert s.delete_user(conn, None, "no-such-id") is False


def test_accounts_never_carry_the_hash_except_get_login(s, conn):
    alice = new_user(s, conn, "alice")
    for account in (s.get_user(conn, alice["public_id"]), *s.list_users(conn)):
        assert "password_hash" not in account
    assert s.get_login(conn, "alice")["password_hash"] == HASH


def test_get_login_finds_the_exact_name_first_then_its_nfc_form(s, conn):
    new_user(s, conn, "café")  # stored NFC
    assert s.get_login(conn, "cafe\u0301")["name"] == "café"
    assert s.get_login(conn, "nobody") is None


# -- what a write checks inside its own transaction --------------------------------------


def test_a_write_whose_session_ended_raises_session_ended_and_writes_nothing(s, conn):
    root = new_user(s, conn, "root", admin=True)
    alice = new_user(s, conn, "alice")
    todo = s.create_todo(conn, alice["caller"], "mine", 10)
    s.end_session(conn, root["caller"])
    s.end_session(conn, alice["caller"])
    s.count_login_attempt(conn, "alice", "", 1e9, 900)  # the attempt a password change counted
    before = every_row(conn)
    for write in (
        lambda: s.create_user(conn, root["caller"], str(uuid.uuid4()), "mallory", HASH, False),
        lambda: s.update_user(conn, root["caller"], alice["public_id"], admin=True),
        lambda: s.delete_user(conn, root["caller"], alice["public_id"]),
        lambda: s.update_user(
            conn, alice["caller"], alice["public_id"], password_hash="new", verified_hash=HASH, forgive=("alice", "")
        ),
        lambda: s.create_todo(conn, alice["caller"], "more", 10),
        lambda: s.update_todo(conn, alice["caller"], todo["id"], text="changed"),
        lambda: s.delete_todo(conn, alice["caller"], todo["id"]),
    ):
        with pytest.raises(s.SessionEnded):
            write()
    assert every_row(conn) == before


def test_an_admins_write_after_its_demotion_raises_not_admin_and_writes_nothing(s, conn):
    root = new_user(s, conn, "root", admin=True)
    new_user(s, conn, "other", admin=True)
    alice = new_user(s, conn, "alice")
    s.update_user(conn, None, root["public_id"], admin=False)
    before = every_row(conn)
    for write in (
        lambda: s.create_user(conn, root["caller"], str(uuid.uuid4()), "mallory", HASH, False),
        lambda: s.update_user(conn, root["caller"], alice["public_id"], admin=True),
        lambda: s.delete_user(conn, root["caller"], alice["public_id"]),
    ):
        with pytest.raises(s.NotAdmin):
            write()
    assert every_row(conn) == before


def test_a_non_admin_may_change_only_its_own_account(s, conn):
    alice = new_user(s, conn, "alice")
    bob = new_user(s, conn, "bob")
    with pytest.raises(s.NotAdmin):
        s.update_user(conn, alice["caller"], bob["public_id"], password_hash="new")
    assert s.update_user(conn, alice["caller"], alice["public_id"], password_hash="new", verified_hash=HASH)


def test_a_password_write_compares_and_swaps_on_the_verified_hash(s, conn):
    alice = new_user(s, conn, "alice")
    s.count_login_attempt(conn, "alice", "10.0.0.9", 1e9, 900)  # the attempt its old password counted
    before = every_row(conn)
    with pytest.raises(s.PasswordChanged):
        s.update_user(
            conn,
            alice["caller"],
            alice["public_id"],
            password_hash="mine",
            verified_hash="stale",
            forgive=("alice", "10.0.0.9"),
        )
    assert every_row(conn) == before  # the attempt stays counted too


def test_a_password_write_forgives_the_attempt_its_verified_password_counted_in_the_same_write(s, conn):
    alice = new_user(s, conn, "alice")
    s.count_login_attempt(conn, "bob", "10.0.0.9", 1e9, 900)  # another name's failure from there
    s.count_login_attempt(conn, "alice", "10.0.0.9", 1e9, 900)
    assert s.login_failures(conn, "alice", "10.0.0.9", 0)[::2] == (1, 2)
    s.update_user(
        conn,
        alice["caller"],
        alice["public_id"],
        password_hash="mine",
        verified_hash=HASH,
        forgive=("alice", "10.0.0.9"),
    )
    assert s.login_failures(conn, "alice", "10.0.0.9", 0)[::2] == (0, 1)


def test_a_new_password_ends_every_session_of_the_account_and_no_other(s, conn):
    alice = new_user(s, conn, "alice")
    bob = new_user(s, conn, "bob")
    s.update_user(conn, None, alice["public_id"], password_hash="new")
    assert s.session_account(conn, *alice["caller"][:2], 1.5e9) is None
    assert s.session_account(conn, *bob["caller"][:2], 1.5e9)["name"] == "bob"


def test_a_session_starts_only_while_the_password_is_unchanged_since_it_was_read(s, conn):
    alice = new_user(s, conn, "alice")
    read = s.get_login(conn, "alice")
    s.update_user(conn, None, alice["public_id"], password_hash="changed meanwhile")
    before = every_row(conn)
    assert s.start_session(conn, read, another_session(alice, "late"), "r1", 2e9, stronger_hash="stronger") is False
    assert every_row(conn) == before


def test_a_session_start_stores_the_stronger_hash_of_the_verified_password(s, conn):
    alice = new_user(s, conn, "alice")
    read = s.get_login(conn, "alice")
    assert s.start_session(conn, read, another_session(alice, "next"), "r2", 2e9, stronger_hash="stronger") is True
    assert s.get_login(conn, "alice")["password_hash"] == "stronger"


def test_a_session_starts_though_another_login_stored_its_stronger_hash_meanwhile(s, conn):
    # Two logins read the same old hash; the first to start its session stores its
    # stronger hash, the second starts its session and keeps the first one's.
    alice = new_user(s, conn, "alice")
    read = s.get_login(conn, "alice")
    assert s.start_session(conn, read, another_session(alice, "first"), "r5", 2e9, stronger_hash="first's") is True
    assert s.start_session(conn, read, another_session(alice, "second"), "r6", 2e9, stronger_hash="second's") is True
    assert s.get_login(conn, "alice")["password_hash"] == "first's"
    assert s.session_account(conn, "second", alice["public_id"], 1.5e9)["name"] == "alice"


def test_ending_a_session_ends_only_it(s, conn):
    alice = new_user(s, conn, "alice")
    assert s.start_session(conn, s.get_login(conn, "alice"), another_session(alice, "second"), "r3", 2e9)
    assert s.end_session(conn, alice["caller"]) is True
    assert s.end_session(conn, alice["caller"]) is False
    assert s.session_account(conn, "second", alice["public_id"], 1.5e9)["name"] == "alice"


def session_with_spent_tokens(s, conn, name, session_id):
    """A new session of ``name`` whose refresh tokens r0 and r1 are spent and r2 is current."""
    account = s.get_user_by_name(conn, name)
    assert s.start_session(conn, s.get_login(conn, name), another_session(account, session_id), f"{session_id}r0", 2e9)
    for n in (0, 1):
        assert s.refresh_session(
            conn, session_id, f"{session_id}r{n}", f"{session_id}r{n + 1}", 1.5e9, None, max_rotations=100
        )
    return account


def test_a_refresh_keeps_the_hash_it_spent_for_its_session(s, conn):
    new_user(s, conn, "alice")
    session_with_spent_tokens(s, conn, "alice", "s")
    rows = conn.execute("SELECT hash, session_id FROM spent_refresh_tokens ORDER BY hash").fetchall()
    assert [tuple(row) for row in rows] == [("sr0", "s"), ("sr1", "s")]


@pytest.mark.parametrize("spent", ["sr0", "sr1"])
def test_a_spent_token_of_the_session_presented_again_ends_it_and_records_session_revoked(s, conn, spent):
    new_user(s, conn, "alice")
    alice = session_with_spent_tokens(s, conn, "alice", "s")
    assert s.refresh_session(conn, "s", spent, "next", 1.5e9, "10.0.0.7", max_rotations=100) is None
    assert s.session_account(conn, "s", alice["public_id"], 1.5e9) is None
    assert conn.execute("SELECT count(*) FROM spent_refresh_tokens WHERE session_id = 's'").fetchone()[0] == 0
    events = [e for e in s.list_events(conn) if e["action"] == "session.revoked"]
    assert [(e["actor"], e["address"]) for e in events] == [(alice["public_id"], "10.0.0.7")]


def test_a_refresh_of_a_session_ending_too_soon_is_refused_and_spends_nothing(s, conn):
    new_user(s, conn, "alice")
    session_with_spent_tokens(s, conn, "alice", "s")  # it ends at 2e9
    before = every_row(conn)
    with pytest.raises(s.SessionEnding):
        s.refresh_session(conn, "s", "sr2", "sr3", 1.5e9, None, 2e9 + 1, max_rotations=100)
    assert every_row(conn) == before
    assert s.refresh_session(conn, "s", "sr2", "sr3", 1.5e9, None, 2e9, max_rotations=100) is not None


@pytest.mark.parametrize("presented", ["never issued", "tr0"])
def test_a_token_never_issued_in_the_session_changes_nothing(s, conn, presented):
    # "tr0" was issued and spent, but in another session: not this one's to replay.
    new_user(s, conn, "alice")
    session_with_spent_tokens(s, conn, "alice", "s")
    session_with_spent_tokens(s, conn, "alice", "t")
    before = every_row(conn)
    assert s.refresh_session(conn, "s", presented, "next", 1.5e9, "10.0.0.7", max_rotations=100) is None
    assert every_row(conn) == before
    assert s.refresh_session(conn, "s", "sr2", "sr3", 1.5e9, None, max_rotations=100) is not None


def test_a_login_prunes_expired_sessions_with_their_spent_tokens(s, conn):
    new_user(s, conn, "alice")
    session_with_spent_tokens(s, conn, "alice", "s")  # alice's sessions end at 2e9
    s.create_user(conn, None, str(uuid.uuid4()), "bob", HASH, False)
    later = store.Caller("bob-session", s.get_user_by_name(conn, "bob")["public_id"], None, 2e9)
    assert s.start_session(conn, s.get_login(conn, "bob"), later, "bob-refresh", 3e9, events_before=0)
    assert count(conn, "sessions") == 1 and count(conn, "spent_refresh_tokens") == 0


def test_a_login_prunes_at_most_a_batch_of_each_table_the_oldest_events_first(s, conn, monkeypatch):
    monkeypatch.setattr(s, "PRUNE_BATCH", 2)
    for name in ("alice", "carol", "dave"):
        new_user(s, conn, name)  # a session each, ending at 2e9
    for moment in (5.0, 1.0, 4.0, 2.0, 3.0):
        s.record_event(conn, store.Caller("", "", None, moment), "login.failed", None)
    s.create_user(conn, None, str(uuid.uuid4()), "bob", HASH, False)
    bob = s.get_user_by_name(conn, "bob")["public_id"]

    def login(n):
        caller = store.Caller(f"bob-{n}", bob, None, 2e9)
        return s.start_session(conn, s.get_login(conn, "bob"), caller, f"r{n}", 3e9, events_before=100)

    def old_events():
        return [moment for (moment,) in conn.execute("SELECT time FROM audit_events WHERE time < 100 ORDER BY time")]

    assert login(1)
    assert count(conn, "sessions") == 2 and old_events() == [3.0, 4.0, 5.0]  # one expired session left, bob's
    assert login(2)
    assert count(conn, "sessions") == 2 and old_events() == [5.0]  # bob's two


def test_a_session_answers_only_for_its_own_account(s, conn):
    alice = new_user(s, conn, "alice")
    bob = new_user(s, conn, "bob")
    assert s.session_account(conn, alice["caller"].session_id, bob["public_id"], 1.5e9) is None


# -- login throttling ---------------------------------------------------------------------


def test_attempts_are_counted_per_name_and_address_and_per_address(s, conn):
    assert s.count_login_attempt(conn, "a", "10.0.0.1", 100.0, 900)[::2] == (1, 1)
    assert s.count_login_attempt(conn, "b", "10.0.0.1", 101.0, 900)[::2] == (1, 2)
    assert s.count_login_attempt(conn, "a", "10.0.0.1", 102.0, 900)[::2] == (2, 3)
    assert s.count_login_attempt(conn, "a", "10.0.0.2", 103.0, 900)[::2] == (1, 1)


def test_a_passed_window_starts_afresh(s, conn):
    s.count_login_attempt(conn, "a", "10.0.0.1", 100.0, 900)
    assert s.count_login_attempt(conn, "a", "10.0.0.1", 1001.0, 900) == (1, 1001.0, 1, 1001.0)


def test_a_right_password_clears_the_names_count_and_gives_back_one_address_attempt(s, conn):
    alice = new_user(s, conn, "alice")
    for name in ("x", "y", "alice"):
        s.count_login_attempt(conn, name, "10.0.0.1", 100.0, 900)
    assert s.start_session(
        conn, s.get_login(conn, "alice"), another_session(alice, "s2"), "r4", 2e9, name="alice", address="10.0.0.1"
    )
    assert s.count_login_attempt(conn, "alice", "10.0.0.1", 101.0, 900)[::2] == (1, 3)


# -- to-dos -------------------------------------------------------------------------------


def test_an_account_holds_at_most_its_maximum_of_todos(s, conn):
    alice = new_user(s, conn, "alice")
    for n in range(3):
        s.create_todo(conn, alice["caller"], f"todo {n}", 3)
    before = every_row(conn)
    with pytest.raises(s.TooManyTodos):
        s.create_todo(conn, alice["caller"], "one too many", 3)
    assert every_row(conn) == before


def test_update_todo_of_another_owner_does_nothing(s, conn):
    alice = new_user(s, conn, "alice")
    bob = new_user(s, conn, "bob")
    todo = s.create_todo(conn, alice["caller"], "alice's", 10)
    assert s.update_todo(conn, bob["caller"], todo["id"], text="mine now", complete=True) is None
    assert todo_of(s, conn, alice, todo["id"]) == todo


def test_delete_todo_of_another_owner_does_nothing(s, conn):
    alice = new_user(s, conn, "alice")
    bob = new_user(s, conn, "bob")
    todo = s.create_todo(conn, alice["caller"], "alice's", 10)
    assert s.delete_todo(conn, bob["caller"], todo["id"]) is False
    assert todo_of(s, conn, alice, todo["id"]) == todo


def test_get_todo_of_another_owner_is_none(s, conn):
    alice = new_user(s, conn, "alice")
    bob = new_user(s, conn, "bob")
    todo = s.create_todo(conn, alice["caller"], "alice's", 10)
    assert todo_of(s, conn, bob, todo["id"]) is None


def test_id_beyond_64_bits_finds_nothing(s, conn):
    alice = new_user(s, conn, "alice")
    huge = 2**63
    assert todo_of(s, conn, alice, huge) is None
    assert s.update_todo(conn, alice["caller"], huge, complete=True) is None
    assert s.delete_todo(conn, alice["caller"], huge) is False


def test_todos_are_listed_in_id_order(s, conn):
    alice = new_user(s, conn, "alice")
    created = [s.create_todo(conn, alice["caller"], f"todo {n}", 10) for n in range(5)]
    s.delete_todo(conn, alice["caller"], created[1]["id"])
    listed = todos_of(s, conn, alice)
    assert [t["id"] for t in listed] == sorted(t["id"] for t in created if t is not created[1])


def test_no_session_reads_no_todos(s, conn):
    alice = new_user(s, conn, "alice")
    todo = s.create_todo(conn, alice["caller"], "alice's", 10)
    assert s.session_account_with_todos(conn, "no-such-session", alice["public_id"], 1.5e9) == (None, [])
    assert s.session_account_with_todo(conn, "no-such-session", alice["public_id"], 1.5e9, todo["id"]) == (None, None)


def test_a_page_of_todos_follows_limit_offset_and_complete(s, conn):
    alice = new_user(s, conn, "alice")
    created = [s.create_todo(conn, alice["caller"], f"todo {n}", 10) for n in range(6)]
    for todo in created[::2]:
        s.update_todo(conn, alice["caller"], todo["id"], complete=True)
    done = [{**t, "complete": True} for t in created[::2]]
    assert [t["id"] for t in todos_of(s, conn, alice, limit=2, offset=1)] == [t["id"] for t in created[1:3]]
    assert todos_of(s, conn, alice, complete=True) == done
    assert todos_of(s, conn, alice, complete=True, limit=1, offset=1) == done[1:2]
    assert todos_of(s, conn, alice, complete=False) == created[1::2]
    assert todos_of(s, conn, alice, offset=6) == []


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
def test_text_read_with_the_session_check_is_exactly_what_was_stored(s, conn, text):
    alice = new_user(s, conn, "alice")
    todo = s.create_todo(conn, alice["caller"], text, 10)
    assert todos_of(s, conn, alice) == [todo]
    assert todo_of(s, conn, alice, todo["id"])["text"] == text


@pytest.mark.sqlite_only
@pytest.mark.parametrize("route", ["list", "get"])
def test_the_session_check_and_the_routes_data_are_one_statement(s, conn, route):
    alice = new_user(s, conn, "alice")
    created = [s.create_todo(conn, alice["caller"], f"todo {n}", 10) for n in range(3)]
    reads = {
        "list": (lambda: s.session_account_with_todos(conn, *alice["caller"][:2], 1.5e9), created),
        "get": (lambda: s.session_account_with_todo(conn, *alice["caller"][:2], 1.5e9, created[1]["id"]), created[1]),
    }
    read, expected = reads[route]
    seen = []
    conn.set_trace_callback(seen.append)
    try:
        found, data = read()
    finally:
        conn.set_trace_callback(None)
    assert len(seen) == 1
    assert found == s.session_account(conn, *alice["caller"][:2], 1.5e9)
    assert data == expected


# -- transactions, migrations, secrets ------------------------------------------------------


@pytest.mark.sqlite_only
def test_transaction_rolls_back_on_exception(s, conn):
    alice = new_user(s, conn, "alice")
    with pytest.raises(RuntimeError):
        with store.transaction(conn):
            conn.execute("INSERT INTO todos (owner_id, text) VALUES (?, ?)", (alice["id"], "lost"))
            raise RuntimeError("boom")
    assert todos_of(s, conn, alice) == []
    assert not conn.in_transaction


@pytest.mark.sqlite_only
def test_a_commit_that_fails_rolls_back_and_leaves_the_connection_usable(s, conn):
    alice = new_user(s, conn, "alice")
    conn.execute("PRAGMA defer_foreign_keys = ON")  # the violation is found at COMMIT
    with pytest.raises(sqlite3.IntegrityError):
        with store.transaction(conn):
            conn.execute("INSERT INTO todos (owner_id, text) VALUES (?, ?)", (999999, "orphan"))
    assert not conn.in_transaction
    assert s.create_todo(conn, alice["caller"], "next", 10)["text"] == "next"
    assert count(conn, "todos") == 1


@pytest.mark.sqlite_only
def test_transaction_commits_on_success(s, db, conn):
    alice = new_user(s, conn, "alice")
    with store.transaction(conn):
        conn.execute("INSERT INTO todos (owner_id, text) VALUES (?, ?)", (alice["id"], "kept"))
    with sqlite3.connect(db.path) as other:
        assert other.execute("SELECT text FROM todos").fetchall() == [("kept",)]


def test_migrate_is_idempotent(s, conn):
    new_user(s, conn, "alice")
    assert s.migrate(conn) == s.SCHEMA_VERSION
    assert s.migrate(conn) == s.SCHEMA_VERSION
    assert s.schema_version(conn) == s.SCHEMA_VERSION
    assert [u["name"] for u in s.list_users(conn)] == ["alice"]


@pytest.mark.sqlite_only
def test_the_name_key_migration_keeps_colliding_names_working_and_reserved(tmp_path, caplog):
    path = str(tmp_path / "old.db")
    with sqlite3.connect(path, isolation_level=None) as old:
        for version, step in enumerate(store.MIGRATIONS[:3]):
            old.executescript(step)
            old.execute(f"PRAGMA user_version = {version + 1}")
        for n, name in enumerate(["admin", "Admin", "ａｄｍｉｎ"]):
            old.execute("INSERT INTO users (public_id, name, password_hash) VALUES (?, ?, 'x')", (f"p{n}", name))
    db = store.open_database(path)
    try:
        with db.connection() as conn:
            assert [store.get_login(conn, n)["public_id"] for n in ("admin", "Admin", "ａｄｍｉｎ")] == [
                "p0",
                "p1",
                "p2",
            ]
            with pytest.raises(store.NameTaken):
                store.create_user(conn, None, "p3", "ADMIN", "x", False)
    finally:
        db.close()
    assert sum("collides" in r.getMessage() for r in caplog.records) == 2


def test_reopening_a_database_keeps_its_data(s, database):
    first = s.open_database(database)
    with first.connection() as conn:
        new_user(s, conn, "alice")
    first.close()
    second = s.open_database(database)
    try:
        with second.connection() as conn:
            assert [u["name"] for u in s.list_users(conn)] == ["alice"]
    finally:
        second.close()


@pytest.mark.sqlite_only
def test_memory_database_is_refused():
    with pytest.raises(ValueError, match=":memory:"):
        store.open_database(":memory:")


def test_get_or_create_secret_keeps_the_first_value(s, conn):
    assert s.get_or_create_secret(conn, "test_key", "first") == "first"
    assert s.get_or_create_secret(conn, "test_key", "second") == "first"


def test_replace_secret_replaces_the_stored_value(s, conn):
    s.get_or_create_secret(conn, "test_key", "first")
    s.replace_secret(conn, "test_key", "second")
    assert s.get_or_create_secret(conn, "test_key", "third") == "second"


def test_ping_answers_on_a_working_database(s, conn):
    assert s.ping(conn) is None


@pytest.mark.parametrize(
    ("code", "transient"),
    [(5, True), (6, True), (8, True), (10, True), (13, True), (14, True), (5 | 0x100, True), (1, False), (19, False)],
)
def test_sqlite_errors_a_client_can_wait_out_are_told_apart_by_their_code(code, transient):
    # busy, locked, read-only, I/O, full, cannot open (and their extended codes): 503;
    # anything else (a generic error, a constraint): a bug, 500.
    error = sqlite3.OperationalError("as sqlite3 raises it")
    error.sqlite_errorcode = code  # type: ignore[attr-defined]
    assert store.unavailable(error) is transient


def test_the_login_limits_are_5_per_name_and_50_per_address_by_default():
    settings = todo_wsgi.Settings.resolve({})
    assert (settings.login_max_failures, settings.login_max_failures_per_address) == (5, 50)


def test_the_maximum_of_todos_is_10000_and_todo_max_todos_sets_it():
    assert todo_wsgi.Settings.resolve({}).max_todos_per_account == 10000
    assert todo_wsgi.Settings.resolve({"TODO_MAX_TODOS": "25"}).max_todos_per_account == 25
