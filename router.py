"""A small regex router, and the one error type every layer raises.

Owns: turning a route table of ``(method, pattern, target)`` rows into
compiled regexes once, and matching ``(method, path)`` against them. Knows
nothing of WSGI, JSON, SQL or the targets it returns: a match gives
``(target, params)``, a miss raises ``HTTPError`` with 404, or 405 and ``Allow``.

Must not import todo_wsgi or store.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from types import MappingProxyType
from typing import Any


class HTTPError(Exception):
    """An error with an HTTP status, a client-safe message and extra headers.

    Raised anywhere; turned into a JSON response in exactly one place at the
    edge of the application.
    """

    def __init__(self, status: int, message: str, headers: Sequence[tuple[str, str]] = ()) -> None:
        super().__init__(status, message)
        self.status = status
        self.message = message
        self.headers = list(headers)


# Python refuses int() of more than 4300 digits (CVE-2020-10735), and no
# 64-bit id has more than 19: anything longer becomes 10**20, out of range alike.
_MAX_DIGITS = 20


def _to_int(text: str) -> int:
    digits = text.lstrip("0") or "0"
    return int(digits) if len(digits) <= _MAX_DIGITS else 10**_MAX_DIGITS


# A converter is a regex for the path segment and a function from its text to
# the handler's argument. [0-9], not \d: \d also matches non-ASCII digits.
CONVERTERS: Mapping[str, tuple[str, Callable[[str], Any]]] = MappingProxyType(
    {
        "int": (r"[0-9]+", _to_int),
        "str": (r"[^/]+", str),
    }
)

_PLACEHOLDER = re.compile(r"<(?:(?P<type>[a-z]+):)?(?P<name>[A-Za-z_][A-Za-z0-9_]*)>")


def compile_pattern(pattern: str) -> tuple[re.Pattern[str], dict[str, Callable[[str], Any]]]:
    """Compile ``/todo/<int:todo_id>`` into a regex and its converters by name."""
    regex, converters, position = [], {}, 0
    for placeholder in _PLACEHOLDER.finditer(pattern):
        kind = placeholder["type"] or "str"
        if kind not in CONVERTERS:
            raise ValueError(f"unknown converter {kind!r} in route {pattern!r}")
        segment, to_python = CONVERTERS[kind]
        regex.append(re.escape(pattern[position : placeholder.start()]))
        regex.append(f"(?P<{placeholder['name']}>{segment})")
        converters[placeholder["name"]] = to_python
        position = placeholder.end()
    regex.append(re.escape(pattern[position:]))
    return re.compile("".join(regex)), converters


class Router:
    """Matches a method and a path against a route table built once."""

    def __init__(self, routes: Iterable[tuple[str, str, Any]]) -> None:
        # One entry per distinct pattern, holding every method it answers,
        # so a miss on the method can name them all in Allow (RFC 9110 15.5.6).
        self._routes: list[tuple[re.Pattern[str], dict[str, Callable[[str], Any]], dict[str, Any]]] = []
        by_pattern: dict[str, dict[str, Any]] = {}
        self.table: list[tuple[str, str, Any]] = []
        for method, pattern, target in routes:
            if pattern not in by_pattern:
                by_pattern[pattern] = {}
                regex, converters = compile_pattern(pattern)
                self._routes.append((regex, converters, by_pattern[pattern]))
            if method in by_pattern[pattern]:
                raise ValueError(f"route {method} {pattern} declared twice")
            by_pattern[pattern][method] = target
            self.table.append((method, pattern, target))
        # A route that answers GET answers HEAD too (RFC 9110 9.3.2).
        for methods in by_pattern.values():
            if "GET" in methods and "HEAD" not in methods:
                methods["HEAD"] = methods["GET"]
        # Literal paths are the common case: find them with one dict lookup.
        self._static: dict[str, dict[str, Any]] = {
            pattern: methods for pattern, methods in by_pattern.items() if "<" not in pattern
        }
        # A literal pattern matches only its own path, which the dict above
        # answers: the regex scan needs only the patterns with placeholders.
        self._dynamic = [route for route, pattern in zip(self._routes, by_pattern, strict=True) if "<" in pattern]

    def match(self, method: str, path: str) -> tuple[Any, dict[str, Any]]:
        """Return ``(target, params)`` or raise HTTPError 404 or 405."""
        methods = self._static.get(path)
        if methods is not None:
            if method in methods:
                return methods[method], {}
            raise self._not_allowed(methods)
        for regex, converters, methods in self._dynamic:
            found = regex.fullmatch(path)
            if found is None:
                continue
            if method not in methods:
                raise self._not_allowed(methods)
            params = {}
            for name, convert in converters.items():  # a loop: Python 3.11 runs a comprehension in a frame of its own
                params[name] = convert(found[name])
            return methods[method], params
        raise HTTPError(404, "Not found")

    def allowed_methods(self, path: str) -> list[str]:
        """Return the methods that ``path`` answers (empty if none)."""
        for regex, _, methods in self._routes:
            if regex.fullmatch(path):
                return sorted(methods)
        return []

    @staticmethod
    def _not_allowed(methods: dict[str, Any]) -> HTTPError:
        return HTTPError(405, "Method not allowed", [("Allow", ", ".join(sorted(methods)))])
