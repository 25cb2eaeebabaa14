#!/usr/bin/env bash
# The walk-through: the API from the first admin to the last-admin rule, with curl.
#
# Run it from the checkout against a fresh server, top to bottom:
#     make run                     # in one terminal: serves http://127.0.0.1:8080 with ./todo.db
#     bash docs/walkthrough.sh     # in another, from the same directory
# Another server:  BASE=http://127.0.0.1:9000 bash docs/walkthrough.sh
#
# Every request is printed ($ METHOD PATH), then its answer (status and body).
# The script checks each status and stops at the first that differs.
# It needs bash, curl and python3 (for reading JSON), and leaves the server as
# it found it but for the admin account, which it creates when there is none.
set -euo pipefail

BASE=${BASE:-http://127.0.0.1:8080}
PYTHON=${PYTHON:-.venv/bin/python}                  # runs the operator's commands
ADMIN_PASSWORD=${ADMIN_PASSWORD:-a-long-admin-password}
ALICE_PASSWORD=alice-password-1
JSON='Content-Type: application/json'

# call METHOD PATH [curl options...]: send, print, keep STATUS and BODY.
call() {
    local method=$1 path=$2 answer
    shift 2
    answer=$(curl -s -w '\n%{http_code}' -X "$method" "$@" "$BASE$path")
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
echo "# 4. alice logs in; she is no admin."
call POST /login -u "alice:$ALICE_PASSWORD"
expect 200
ALICE=(-H "Authorization: Bearer $(field token)")
call GET /user "${ALICE[@]}"
expect 403

echo
echo "# 5. alice's to-dos: create, list, read, edit, complete, page, delete. Nobody else sees them."
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
echo "# 6. alice changes her password: every token issued before stops working, so she logs in again."
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
echo "# 7. Logging out ends that token at once."
call POST /logout "${ALICE[@]}"
expect 200
call GET /me "${ALICE[@]}"
expect 401

echo
echo "# 8. The admin renames alice and makes her an admin, then takes it back."
call PATCH "/user/$ALICE_ID" "${ADMIN[@]}" -H "$JSON" -d '{"name": "alicia", "admin": true}'
expect 200
call PATCH "/user/$ALICE_ID" "${ADMIN[@]}" -H "$JSON" -d '{"admin": false}'
expect 200

echo
echo "# 9. There is always an admin: the last one cannot be demoted or deleted."
call PATCH "/user/$ME" "${ADMIN[@]}" -H "$JSON" -d '{"admin": false}'
expect 409
call DELETE "/user/$ME" "${ADMIN[@]}"
expect 409

echo
echo "# 10. Errors are JSON too: a bad body names the field; unknown path; wrong method (with Allow)."
call POST /todo "${ADMIN[@]}" -H "$JSON" -d '{"text": 42}'
expect 400
call GET /nowhere
expect 404
call DELETE /healthz -i
expect 405

echo
echo "# 11. Clean up: delete alicia (her to-dos go with her)."
call DELETE "/user/$ALICE_ID" "${ADMIN[@]}"
expect 200

echo
echo "walkthrough: every step answered as expected"
