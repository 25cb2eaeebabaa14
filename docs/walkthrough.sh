#!/usr/bin/env bash
# The walk-through: the API from the first admin to the audit trail, with curl.
#
# Run it from the checkout against a fresh server, top to bottom:
#     make run                     # in one terminal: serves http://127.0.0.1:8080 with ./todo.db
#     bash docs/walkthrough.sh     # in another, from the same directory
# Another server:  BASE=http://127.0.0.1:9000 bash docs/walkthrough.sh
#
# Every request is printed ($ METHOD PATH), then its answer (status and body; an ETag
# where the step is about versions).
# The script checks each status and stops at the first that differs.
# It needs bash, curl and python3 (for reading JSON), and leaves the server as
# it found it but for the admin account, which it creates when there is none,
# and the audit events its requests record.
set -euo pipefail

BASE=${BASE:-http://127.0.0.1:8080}
PYTHON=${PYTHON:-.venv/bin/python}                  # runs the operator's commands
ADMIN_PASSWORD=${ADMIN_PASSWORD:-a-long-admin-password}
ALICE_PASSWORD=alice-password-1
JSON='Content-Type: application/json'
HEADERS=$(mktemp)                                   # the last answer's headers
trap 'rm -f "$HEADERS"' EXIT

# call METHOD PATH [curl options...]: send, print, keep STATUS, BODY and the headers.
call() {
    local method=$1 path=$2 answer
    shift 2
    answer=$(curl -s -D "$HEADERS" -w '\n%{http_code}' -X "$method" "$@" "$BASE$path")
    STATUS=${answer##*$'\n'}
    BODY=${answer%$'\n'*}
    printf '\n$ %s %s\n%s %s\n' "$method" "$path" "$STATUS" "$BODY"
}

# expect STATUS: stop unless the last answer had it.
expect() {
    if [ "$STATUS" != "$1" ]; then
        echo "walkthrough: expected $1, got $STATUS" >&2
        exit 1
    fi
}

# field KEY...: a value from the last answer's JSON body, e.g. field user public_id.
field() {
    python3 -c 'import json, sys
value = json.loads(sys.argv[1])
for key in sys.argv[2:]:
    value = value[key]
print(value)' "$BODY" "$@"
}

# header NAME: a header of the last answer, e.g. header ETag.
header() {
    python3 -c 'import sys
for line in open(sys.argv[1], encoding="latin-1"):
    name, _, value = line.partition(":")
    if name.strip().lower() == sys.argv[2].lower():
        print(value.strip())' "$HEADERS" "$1"
}

echo "# 1. Is it up? No token needed."
call GET /healthz
expect 200

echo
echo "# 2. The first admin: there is no default account. Made once, with the command line."
call POST /login -u "admin:$ADMIN_PASSWORD"
if [ "$STATUS" = 401 ]; then
    if [ ! -x "$PYTHON" ]; then
        echo "walkthrough: no $PYTHON here: run this from the checkout, where make run made .venv (or set PYTHON)" >&2
        exit 1
    fi
    printf '%s\n' "$ADMIN_PASSWORD" | "$PYTHON" -m todo_wsgi create-user admin --admin
    call POST /login -u "admin:$ADMIN_PASSWORD"
    if [ "$STATUS" = 401 ]; then
        echo "walkthrough: the admin went to another database than the server's:" \
            "run this from the directory the server runs in (make run: the checkout)" >&2
        exit 1
    fi
fi
expect 200
ADMIN_TOKEN=$(field token)
ADMIN=(-H "Authorization: Bearer $ADMIN_TOKEN")

call GET /me "${ADMIN[@]}"
expect 200
ME=$(field user public_id)

echo
echo "# 3. Accounts (admin only): list, create alice, read her account."
call GET /user "${ADMIN[@]}"
expect 200
# An earlier run stopped half-way may have left alice (or alicia, her later name): remove her.
for LEFT_OVER in $(python3 -c 'import json, sys
print(*[u["public_id"] for u in json.loads(sys.argv[1])["users"] if u["name"] in ("alice", "alicia")])' "$BODY"); do
    call DELETE "/user/$LEFT_OVER" "${ADMIN[@]}"
    expect 200
done
call POST /user "${ADMIN[@]}" -H "$JSON" -d "{\"name\": \"alice\", \"password\": \"$ALICE_PASSWORD\"}"
expect 201
ALICE_ID=$(field user public_id)
call GET "/user/$ALICE_ID" "${ADMIN[@]}"
expect 200

echo
echo "# 4. alice logs in; she is no admin. She keeps the refresh token for later."
call POST /login -u "alice:$ALICE_PASSWORD"
expect 200
ALICE=(-H "Authorization: Bearer $(field token)")
ALICE_REFRESH=$(field refresh_token)
call GET /user "${ALICE[@]}"
expect 403

echo
echo "# 5. Staying signed in: a refresh token buys a new pair, once. Used again, it ends the session."
call POST /refresh -H "$JSON" -d "{\"refresh_token\": \"$ALICE_REFRESH\"}"
expect 200
ALICE=(-H "Authorization: Bearer $(field token)")
call GET /me "${ALICE[@]}"
expect 200
call POST /refresh -H "$JSON" -d "{\"refresh_token\": \"$ALICE_REFRESH\"}"
expect 401
call GET /me "${ALICE[@]}"
expect 401
call POST /login -u "alice:$ALICE_PASSWORD"
expect 200
ALICE=(-H "Authorization: Bearer $(field token)")

echo
echo "# 6. alice's to-dos: create, list, read, edit, complete, page, delete. Nobody else sees them."
call POST /todo "${ALICE[@]}" -H "$JSON" -d '{"text": "buy milk"}'
expect 201
TODO=$(field todo id)
call POST /todo "${ALICE[@]}" -H "$JSON" -d '{"text": "water the plants"}'
expect 201
call GET /todo "${ALICE[@]}"
expect 200
call GET "/todo/$TODO" "${ALICE[@]}"
expect 200
call GET "/todo/$TODO" "${ADMIN[@]}"
expect 404
call PATCH "/todo/$TODO" "${ALICE[@]}" -H "$JSON" -d '{"text": "buy oat milk"}'
expect 200
call PUT "/todo/$TODO" "${ALICE[@]}"
expect 200
call GET '/todo?complete=false&limit=1' "${ALICE[@]}"
expect 200
call DELETE "/todo/$TODO" "${ALICE[@]}"
expect 200
call GET "/todo/$TODO" "${ALICE[@]}"
expect 404

echo
echo "# 7. Safe edits: a write carrying the ETag it read is refused (412) once the to-do changed."
call POST /todo "${ALICE[@]}" -H "$JSON" -d '{"text": "call the plumber"}'
expect 201
TODO=$(field todo id)
call GET "/todo/$TODO" "${ALICE[@]}"
expect 200
ETAG=$(header ETag)
echo "ETag: $ETAG"
call GET "/todo/$TODO" "${ALICE[@]}" -H "If-None-Match: $ETAG"
expect 304
call PATCH "/todo/$TODO" "${ALICE[@]}" -H "$JSON" -H "If-Match: $ETAG" -d '{"text": "call the plumber at 9"}'
expect 200
echo "ETag: $(header ETag)"
call PATCH "/todo/$TODO" "${ALICE[@]}" -H "$JSON" -H "If-Match: $ETAG" -d '{"complete": true}'
expect 412
echo "ETag: $(header ETag)"

echo
echo "# 8. Retry-safe creates: the same Idempotency-Key again gets the first answer; one to-do."
IDEMPOTENCY_KEY=walkthrough-buy-bread
call POST /todo "${ALICE[@]}" -H "$JSON" -H "Idempotency-Key: $IDEMPOTENCY_KEY" -d '{"text": "buy bread"}'
expect 201
FIRST=$(field todo id)
call POST /todo "${ALICE[@]}" -H "$JSON" -H "Idempotency-Key: $IDEMPOTENCY_KEY" -d '{"text": "buy bread"}'
expect 201
if [ "$(field todo id)" != "$FIRST" ]; then
    echo "walkthrough: the retry created a second to-do" >&2
    exit 1
fi
call GET /todo "${ALICE[@]}"
expect 200

echo
echo "# 9. alice changes her password: every token issued before stops working, so she logs in again."
call PUT /me/password "${ALICE[@]}" -H "$JSON" \
    -d "{\"old_password\": \"$ALICE_PASSWORD\", \"new_password\": \"alice-password-2\"}"
expect 200
call GET /me "${ALICE[@]}"
expect 401
call POST /login -u alice:alice-password-2
expect 200
ALICE=(-H "Authorization: Bearer $(field token)")
call GET /me "${ALICE[@]}"
expect 200

echo
echo "# 10. Logging out ends that token's session at once."
call POST /logout "${ALICE[@]}"
expect 200
call GET /me "${ALICE[@]}"
expect 401

echo
echo "# 11. The admin renames alice and makes her an admin, then takes it back."
call PATCH "/user/$ALICE_ID" "${ADMIN[@]}" -H "$JSON" -d '{"name": "alicia", "admin": true}'
expect 200
call PATCH "/user/$ALICE_ID" "${ADMIN[@]}" -H "$JSON" -d '{"admin": false}'
expect 200

echo
echo "# 12. There is always an admin: the last one cannot be demoted or deleted."
call PATCH "/user/$ME" "${ADMIN[@]}" -H "$JSON" -d '{"admin": false}'
expect 409
call DELETE "/user/$ME" "${ADMIN[@]}"
expect 409

echo
echo "# 13. Errors are JSON too: a bad body names the field; unknown path; wrong method (with Allow)."
call POST /todo "${ADMIN[@]}" -H "$JSON" -d '{"text": 42}'
expect 400
call GET /nowhere
expect 404
call DELETE /healthz -i
expect 405

echo
echo "# 14. The audit trail (admin only): what happened to alice, newest first; the replayed refresh token."
call GET "/audit?target=$ALICE_ID&limit=5" "${ADMIN[@]}"
expect 200
call GET "/audit?action=session.revoked&limit=1" "${ADMIN[@]}"
expect 200

echo
echo "# 15. Clean up: delete alicia (her to-dos go with her; her audit events stay)."
call DELETE "/user/$ALICE_ID" "${ADMIN[@]}"
expect 200

echo
echo "walkthrough: every step answered as expected"
