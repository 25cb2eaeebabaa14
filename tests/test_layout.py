"""The shape a reviewer relies on: the app module is the request path only."""

from __future__ import annotations

import collections
import importlib
import subprocess
import sys
import threading

import pytest

OPERATOR_MODULES = ("argparse", "getpass", "signal", "todo_wsgi_cli", "waitress")


def test_embedding_the_app_loads_no_operator_code():
    probe = f"import sys, todo_wsgi; print(' '.join(m for m in {OPERATOR_MODULES!r} if m in sys.modules))"
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert loaded.split() == []


def test_python_dash_m_todo_wsgi_hands_over_to_the_operators_module():
    result = subprocess.run([sys.executable, "-m", "todo_wsgi", "--help"], capture_output=True, text=True)
    assert result.returncode == 0
    assert "create-user" in result.stdout and "serve" in result.stdout


SHIPPED_MODULES = ("todo_wsgi", "router", "store", "store_pg", "todo_wsgi_cli", "todo_wsgi_web")
MUTABLE = (list, dict, set, bytearray, collections.deque, threading.local)


@pytest.mark.parametrize("name", SHIPPED_MODULES)
def test_no_module_holds_mutable_state(name):
    # Everything that changes lives in what create_app builds, so two apps in one
    # process never touch each other: a module's tables are tuples, frozensets
    # and read-only mappings.
    module = importlib.import_module(name)
    mutable = [attr for attr, value in vars(module).items() if not attr.startswith("__") and isinstance(value, MUTABLE)]
    assert mutable == []
