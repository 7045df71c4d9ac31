"""How dicombus names itself to peers (PS3.7 D.3.3.2 and D.3.3.3)."""

from __future__ import annotations

# PS3.5 9: a UID under the ISO/ITU-T "2.25" root built from a fixed UUID, so it
# needs no registered organisation root and never collides.
IMPLEMENTATION_CLASS_UID = "2.25.249367713240215116455297425139412874012"
# PS3.7 D.3.3.2: 1 to 16 characters of the default character repertoire.
IMPLEMENTATION_VERSION_NAME = "DICOMBUS_010"
