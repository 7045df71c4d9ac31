"""IHE ATNA audit messages (DICOM PS3.15 A.5) built from bus events, sent over syslog.

- :mod:`.codes`: the coded values of PS3.15 A.5 and PS3.16 (DCM, RFC-3881).
- :mod:`.messages`: the XML of each audit message, with ``xml.etree``.
- :mod:`.from_events`: which events make which messages.
- :mod:`.syslog`: RFC 5424 messages over TLS (RFC 5425) or UDP (RFC 5426).
- :mod:`.spool`: the durable, ordered spool that holds messages while the
  audit record repository is away.
- :mod:`.config`: the ``[audit.syslog]`` section of the node's TOML file.
- :mod:`.task`: the Celery task and the forwarder thread.

docs/audit.md has the mapping table.
"""
