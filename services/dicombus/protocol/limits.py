"""Named limits of the protocol core, each with the reason for its value."""

from __future__ import annotations

# PS3.8 9.3.1: every PDU starts with type (1), reserved (1) and a 4-byte length.
PDU_HEADER_LENGTH = 6

# An A-ASSOCIATE-RQ/AC carries at most 128 presentation contexts and a few
# user-information items; real ones are a few KiB. DCMTK caps them at 1 MB to
# stop a header claiming 4 GB from making the reader allocate it; so do we.
DEFAULT_MAX_ASSOCIATE_PDU_LENGTH = 1 << 20

# The maximum P-DATA-TF length we advertise when the user sets nothing. Large
# PDUs mean fewer headers and syscalls on the C-STORE hot path; peers that
# advertise less still get PDUs no larger than their own limit.
DEFAULT_MAXIMUM_PDU_SIZE = 262_144

# PS3.8 D.1: the smallest non-zero Maximum Length we accept from a peer. A
# P-DATA-TF must hold a PDV header plus at least one byte of data.
MINIMUM_PDU_LENGTH = 7

# A DIMSE command set is a handful of group 0000 elements; the largest real
# ones (N-GET with an attribute list) stay under a few KiB. Anything past this
# is hostile and is aborted instead of buffered.
MAX_COMMAND_SET_LENGTH = 64 * 1024

# PS3.8 9.3.2.2: at most 128 presentation contexts (odd IDs 1..255).
MAX_PRESENTATION_CONTEXTS = 128

# PS3.8 9.3.2: AE titles are 16 bytes, space padded.
AE_TITLE_LENGTH = 16

# PS3.5 9.1: a UID is at most 64 characters.
MAX_UID_LENGTH = 64

# PS3.8 D.1: a peer's Maximum Length of 0 means "no limit", but we still cut
# outgoing P-DATA-TF PDUs at 1 MiB: the receiver then never needs a buffer the
# size of a whole data set, and a send of one PDU stays short.
MAX_PDU_LENGTH_WHEN_UNLIMITED = 1 << 20

# Received data sets that the runtime does not stream to disk are held in
# memory up to this size; a larger one is refused (A-ABORT) instead of letting
# a peer grow the process without bound. 64 MiB holds a large single-frame
# image (a digital mammogram is ~50 MB); bigger objects belong in a file sink.
DEFAULT_MAX_DATASET_IN_MEMORY = 64 * 1024 * 1024

# When we advertise no limit (maximum PDU size 0, PS3.8 D.1) a peer may send
# P-DATA-TF PDUs of any size, but a header claiming gigabytes is still refused:
# the body is read into memory whole. Real peers stay far below this.
UNLIMITED_PDATA_CAP = 64 * 1024 * 1024
