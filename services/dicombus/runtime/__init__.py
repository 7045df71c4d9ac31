"""The runtime: sockets, timers and threads around the sans-I/O protocol core."""
