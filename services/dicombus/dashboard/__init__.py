"""``dicombus dashboard``: a live web page of the node and the JSON API it reads.

- :mod:`~dicombus.dashboard.edges`: heartbeats, per-minute series, C-STORE latency;
- :mod:`~dicombus.dashboard.queues`: queue depth and age, and the workers on each queue;
- :mod:`~dicombus.dashboard.routing`: destinations, breakers, dead letters and replay;
- :mod:`~dicombus.dashboard.events`: the last events of the audit store;
- :mod:`~dicombus.dashboard.app`: the Starlette app serving the page and the API.

The page's charts are uPlot (MIT, ``static/uPlot.LICENSE``), shipped in the package:
the page works offline, with no CDN.
"""
