"""dnstap output (issue #4): copies of the DNS messages the resolver receives and sends, for
existing DNS analysis tools (``dnstap-ldns``, the ``dnstap`` command of golang-dnstap,
DNS-collector, Unbound's and Knot's readers).

Format. Each event is a ``Dnstap`` protobuf message (dnstap.proto of the dnstap project, proto2,
encoded here by hand: a handful of varint, fixed32 and length-delimited fields, numbers cited at
the constants below) carried in a Frame Streams data frame with the content type
``protobuf:dnstap.Dnstap``:

- a **file** (``file:PATH``) is a unidirectional stream: a START control frame naming the
  content type, the data frames, a STOP control frame when the resolver stops. A non-empty file
  already at PATH is moved to ``PATH.1`` first (a stream cannot be appended to: readers stop at
  the first STOP). A FIFO works as well (``mkfifo``, then a reader on it).
- a **unix socket** (``unix:PATH`` or a bare path) is bidirectional: READY (with the content
  type) is answered by the collector's ACCEPT, then START, the data frames, and at the end STOP,
  answered by FINISH. When the collector is not there, or goes away, the writer connects again
  with exponential backoff (0.1 s doubling to 5 s).

Messages (dnstap.proto's recommended fields for each type):

==================  ===========================================================================
CLIENT_QUERY        socket family and protocol, the client's address and port (``query_*``)
                    and the listener's (``response_*``), query time, the query as received
CLIENT_RESPONSE     the same addresses, query and response times, the reply as sent
RESOLVER_QUERY      family, protocol (UDP: the first try; DOT to a forwarder over TLS, RFC
                    7858), the server's address and port, ``query_zone`` (the zone the server
                    was asked as a server of), query time, the query as sent
RESOLVER_RESPONSE   the same, and TCP if the reply came over TCP, response time, the reply as
                    received
==================  ===========================================================================

Queries sent to a configured forwarder are FORWARDER_QUERY and FORWARDER_RESPONSE. The
resolver's own address for upstream queries is not known (each goes from a fresh socket) and is
left out, as dnstap.proto allows.

Best effort. The event loop only appends a tuple to a bounded queue; the writer thread encodes and
writes. When the queue is full (the collector is slow or away), the message is dropped and
counted (``stats["dropped"]``): unlike the forensic log, dnstap never slows the resolver down.

The package: ``message`` encodes the protobuf (dnstap.proto), ``framestream`` the Frame Streams
frames and handshake, ``writer`` is the tap (:class:`Dnstap`, its queue and writer thread),
``collector`` its Prometheus metrics (:class:`DnstapCollector`).
"""

from resolver.ops.dnstap.collector import DnstapCollector
from resolver.ops.dnstap.writer import Dnstap

__all__ = ["Dnstap", "DnstapCollector"]
