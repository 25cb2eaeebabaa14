"""Build hook only: ship todo_wsgi_openapi.json beside todo_wsgi.py. Metadata is in pyproject.toml.

setuptools has no pyproject setting for a data file beside top-level modules
(package-data needs a package), so build_py copies the document into the build
tree the wheel is made from; an editable install reads it from the checkout.
``todo_wsgi.OPENAPI_PATH`` finds it next to the module either way.
"""

from __future__ import annotations

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

DOCUMENT = "todo_wsgi_openapi.json"


class BuildPyWithOpenAPI(build_py):
    """build_py that also copies the OpenAPI document next to the modules."""

    def run(self) -> None:
        super().run()
        self.copy_file(DOCUMENT, str(Path(self.build_lib) / DOCUMENT))

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:
        return [*super().get_outputs(include_bytecode), str(Path(self.build_lib) / DOCUMENT)]


setup(cmdclass={"build_py": BuildPyWithOpenAPI})
