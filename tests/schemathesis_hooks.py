"""Schemathesis hooks for tests/test_schemathesis.py, loaded by ``st run`` through SCHEMATHESIS_HOOKS.

The fuzzer runs as an admin, and some operations end what they are given: POST
/logout ends its token, PATCH /user/{public_id} with a password ends that
account's tokens, a rename breaks its next login, DELETE removes it. So:

- every request carries a token from a fresh login (the auth provider below,
  with no caching): whatever one request ends, the next does not depend on it;
- PATCH and DELETE never target the fuzzing admin itself (before_call points
  them at an id that names no account): the admin's name, password and
  existence stay what the logins need. Its id is still fuzzed by GET and PUT.

PUT /me/password cannot change the admin's password: the fuzzer cannot know
the old one. The test passes the server's URL and the admin's name, password
and public id in TODO_ST_* environment variables.
"""

from __future__ import annotations

import base64
import json
import os
import urllib.request
from typing import Any

import schemathesis

URL = os.environ["TODO_ST_URL"]
ADMIN_NAME = os.environ["TODO_ST_ADMIN_NAME"]
ADMIN_PASSWORD = os.environ["TODO_ST_ADMIN_PASSWORD"]
ADMIN_PUBLIC_ID = os.environ["TODO_ST_ADMIN_PUBLIC_ID"]
# A well-formed uuid4 that names no account.
NO_ACCOUNT = "00000000-0000-4000-8000-000000000000"


@schemathesis.auth(refresh_interval=None)
class FreshAdminLogin:
    """A new admin token for every request, from POST /login with HTTP Basic."""

    def get(self, case: schemathesis.Case[Any], context: schemathesis.AuthContext) -> str:
        request = urllib.request.Request(
            f"{URL}/login", method="POST", headers={"Authorization": basic_authorization()}
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return str(json.loads(response.read())["token"])

    def set(self, case: schemathesis.Case[Any], data: str, context: schemathesis.AuthContext) -> None:
        if context.operation.path == "/login":
            # The login itself is fuzzed with the admin's real credentials, so its 200 is checked too.
            case.headers["Authorization"] = basic_authorization()
        else:
            case.headers["x-access-token"] = data


def basic_authorization() -> str:
    """The admin's HTTP Basic Authorization header value (RFC 7617)."""
    return "Basic " + base64.b64encode(f"{ADMIN_NAME}:{ADMIN_PASSWORD}".encode()).decode()


@schemathesis.hook
def before_call(context: schemathesis.HookContext, case: schemathesis.Case[Any], kwargs: dict[str, Any]) -> None:
    """Keep PATCH and DELETE off the fuzzing admin's own account."""
    if case.method.upper() in ("PATCH", "DELETE") and case.path_parameters.get("public_id") == ADMIN_PUBLIC_ID:
        case.path_parameters["public_id"] = NO_ACCOUNT
