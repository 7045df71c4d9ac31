"""A plain ``pip install -e .`` (no test extras) brings everything dicombus imports.

The test extras install more (pytest, pynetdicom, psutil, ...), which can hide a distribution
the runtime imports but nobody declared: kombu's Redis transport imports ``packaging``, which
kombu declares only in its ``redis`` extra, so ``dicombus up`` failed in a fresh virtualenv
while every test passed. Here a subprocess imports every dicombus module (and the Celery worker
parts ``dicombus up`` runs) with the distributions outside the declared dependency closure made
unimportable, as in such a virtualenv; optional imports of theirs fall back as they would there.
CI also runs ``dicombus up`` itself in a clean virtualenv (scripts/smoke_up.py).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parent.parent

# What `dicombus worker` loads when it starts, beyond what importing dicombus_workers does.
WORKER_MODULES = ("celery.apps.worker", "celery.concurrency.solo", "celery.concurrency.prefork")

IMPORT_AS_A_PLAIN_INSTALL = """
import importlib, importlib.abc, json, pkgutil, sys

hidden, packages, extra_modules = json.loads(sys.argv[1])


class PlainInstall(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path, target=None):
        if fullname.partition(".")[0] in hidden:
            raise ModuleNotFoundError(
                f"No module named {fullname!r} (not installed by a plain pip install)",
                name=fullname,
            )
        return None


sys.meta_path.insert(0, PlainInstall())
for package in packages:
    module = importlib.import_module(package)
    for found in pkgutil.walk_packages(module.__path__, f"{package}."):
        importlib.import_module(found.name)
for name in extra_modules:
    importlib.import_module(name)
"""


def declared_closure() -> set[str]:
    """The distributions ``pip install -e .`` installs: [project] dependencies, transitively,
    with the extras each requirement names (``kombu[redis]``)."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    pending = [Requirement(text) for text in project["dependencies"]]
    extras_of: dict[str, set[str]] = {}
    while pending:
        requirement = pending.pop()
        name = canonicalize_name(requirement.name)
        if name in extras_of and requirement.extras <= extras_of[name]:
            continue
        extras = extras_of.setdefault(name, set())
        extras |= requirement.extras
        for text in metadata.distribution(name).requires or []:
            dependency = Requirement(text)
            marker = dependency.marker
            if marker is None or any(marker.evaluate({"extra": e}) for e in {"", *extras}):
                pending.append(dependency)
    return set(extras_of)


def undeclared_top_level_names(closure: set[str]) -> list[str]:
    """Importable top-level names that only distributions outside ``closure`` provide."""
    allowed = closure | {"dicombus"}
    return sorted(
        name
        for name, distributions in metadata.packages_distributions().items()
        if name not in sys.stdlib_module_names
        and not allowed & {canonicalize_name(d) for d in distributions}
    )


def test_a_plain_install_brings_what_dicombus_imports() -> None:
    closure = declared_closure()
    hidden = undeclared_top_level_names(closure)
    assert "pytest" in hidden  # the simulation hides the test extras
    arguments = json.dumps([hidden, ["dicombus", "dicombus_workers"], WORKER_MODULES])
    result = subprocess.run(
        [sys.executable, "-c", IMPORT_AS_A_PLAIN_INSTALL, arguments],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
