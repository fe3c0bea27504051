"""Testing kit for adapter authors: cassettes, recording, scrubbing, fault injection, and the conformance suite.

- :class:`Cassette` replays recorded partner exchanges with respx; :class:`RecordingTransport` records them from a
  live partner or sandbox, scrubbed by a :class:`Scrubber`; :class:`FaultInjector` makes the partner fail on demand.
- The pytest plugin (:mod:`tanpuhui.testing.plugin`, loaded automatically through the ``pytest11`` entry
  point) provides the ``cassette`` marker and fixture and the ``--tanpuhui-record`` option.
- :mod:`tanpuhui.testing.conformance` holds :class:`~tanpuhui.testing.conformance.AdapterConformance`, the
  suite every adapter's tests inherit (imported on its own: it needs pytest and the hub).

docs/adapter-authors.md walks through all of it.
"""

from .cassette import Cassette, CassetteMismatch, dump_cassette, request_key
from .faults import Fault, FaultInjector
from .recording import RecordingTransport
from .scrub import Scrubber, identifiers_in, is_secret_key, personal_fields
from .sleeps import SleepRecorder

__all__ = [
    "Cassette",
    "CassetteMismatch",
    "Fault",
    "FaultInjector",
    "RecordingTransport",
    "Scrubber",
    "SleepRecorder",
    "dump_cassette",
    "identifiers_in",
    "is_secret_key",
    "personal_fields",
    "request_key",
]
