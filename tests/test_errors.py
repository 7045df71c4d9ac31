"""The error hierarchy: every exception class dicombus defines derives from DicombusError
(protocol/errors.py), beside the standard class its callers catch it as."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import dicombus
import pytest
from dicombus.protocol.errors import DicombusError
from dicombus.runtime.transport import ConnectionClosed, DeadlineExpired
from dicombus.storage_files import StorageRootError


def exception_classes() -> list[type[BaseException]]:
    """Every exception class defined in a module of the dicombus package."""
    found: dict[str, type[BaseException]] = {}
    for module_info in pkgutil.walk_packages(dicombus.__path__, "dicombus."):
        module = importlib.import_module(module_info.name)
        for _name, value in inspect.getmembers(module, inspect.isclass):
            if issubclass(value, BaseException) and value.__module__ == module.__name__:
                found[f"{value.__module__}.{value.__qualname__}"] = value
    return [found[name] for name in sorted(found)]


CLASSES = exception_classes()


def test_the_walk_finds_the_exception_classes() -> None:
    # A walk that imports nothing would pass the test below vacuously.
    names = {cls.__name__ for cls in CLASSES}
    assert {"RemoteProtocolError", "PresentationContextError", "OutboxError"} <= names
    assert len(CLASSES) > 25


@pytest.mark.parametrize("cls", CLASSES, ids=lambda cls: f"{cls.__module__}.{cls.__name__}")
def test_every_exception_class_derives_from_the_root(cls: type[BaseException]) -> None:
    assert issubclass(cls, DicombusError)


def test_os_errors_are_still_caught_as_os_errors() -> None:
    """Socket and file callers catch OSError / TimeoutError; the root is added, not swapped."""
    for cls in (ConnectionClosed, StorageRootError):
        assert issubclass(cls, OSError)
    assert issubclass(DeadlineExpired, TimeoutError)
    with pytest.raises(OSError):
        raise ConnectionClosed("the peer closed the connection")
