"""The ``dicombus`` command line: ``echo``, ``store``, ``storescp`` and ``up`` (see docs/cli.md)."""
