"""The sans-I/O protocol core: PDUs, the PS3.8 state machine and DIMSE messages.

Nothing in this package touches sockets, threads, clocks, files or loggers:
bytes go in, typed values and bytes come out.
"""
