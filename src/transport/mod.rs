//! Transport edge: the SIP sockets (UDP with per-datagram local addresses, TCP connections) and stream
//! framing; it does not parse SIP beyond finding where a message ends.

pub mod framing;
pub mod tcp;
pub mod udp;
