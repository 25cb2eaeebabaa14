"""The shape a reviewer relies on: the app module is the request path only."""

from __future__ import annotations

import subprocess
import sys

OPERATOR_MODULES = ("argparse", "getpass", "signal", "todo_wsgi_cli", "waitress")


def test_embedding_the_app_loads_no_operator_code():
    probe = f"import sys, todo_wsgi; print(' '.join(m for m in {OPERATOR_MODULES!r} if m in sys.modules))"
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert loaded.split() == []


def test_python_dash_m_todo_wsgi_hands_over_to_the_operators_module():
    result = subprocess.run([sys.executable, "-m", "todo_wsgi", "--help"], capture_output=True, text=True)
    assert result.returncode == 0
    assert "create-user" in result.stdout and "serve" in result.stdout
