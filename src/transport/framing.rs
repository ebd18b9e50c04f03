//! Frames SIP messages out of a byte stream (TCP/TLS) by Content-Length (RFC 3261 §18.3); it does not
//! parse the messages (hand each frame to `sip::message::parse_stream_message`) and owns no socket.
//!
//! Bytes are fed as they arrive; pipelined messages, segments split anywhere, and CRLF keep-alives
//! between messages (RFC 5626 §3.5.1, RFC 3261 §7.5) are handled. Work is linear in the bytes fed: the
//! search for the end of the header section resumes where it stopped.
//!
//! A double CRLF between messages is an RFC 5626 §4.4.1 "ping", which the server answers with one
//! CRLF ("pong"); the framer counts pings ([`StreamFramer::take_pings`]) and the reader answers. A
//! lone CRLF (a pong, or a stray line end) is skipped and answered with nothing.

/// Largest message (header section + body) accepted on a stream.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// Why the stream can no longer be framed; the caller should close the connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FramingError {
    /// The header section has no Content-Length, which is mandatory on streams (RFC 3261 §18.3).
    #[error("missing content-length on a stream message")]
    MissingContentLength,
    /// Content-Length is not a decimal number, or two of them disagree.
    #[error("malformed content-length on a stream message")]
    MalformedContentLength,
    /// The message would exceed the size limit.
    #[error("stream message larger than {limit} bytes")]
    TooLarge {
        /// The limit in bytes.
        limit: usize,
    },
}

/// A stream framer: `push` bytes, then call `next_message` until it returns `Ok(None)`.
#[derive(Debug)]
pub struct StreamFramer {
    buf: Vec<u8>,
    /// Start of the current (not yet yielded) message in `buf`.
    start: usize,
    /// Where the header-end search resumes, so split segments are not rescanned.
    scanned: usize,
    /// Total length of the current message once its header section has been read.
    pending: Option<usize>,
    limit: usize,
    failed: Option<FramingError>,
    /// Whether CRLF keep-alives were skipped since [`StreamFramer::take_keepalive`] was last asked.
    keepalive: bool,
    /// How much of a `\r\n\r\n` ping the keep-alive bytes skipped last have matched (0–3); kept
    /// across pushes, since a ping may be split between reads.
    ping_matched: u8,
    /// Whole pings since [`StreamFramer::take_pings`] was last asked.
    pings: u32,
}

impl Default for StreamFramer {
    fn default() -> Self {
        Self::new()
    }
}

impl StreamFramer {
    /// A framer with the [`MAX_MESSAGE_BYTES`] limit.
    pub fn new() -> Self {
        Self::with_limit(MAX_MESSAGE_BYTES)
    }

    /// A framer with a custom message size limit.
    pub fn with_limit(limit: usize) -> Self {
        StreamFramer {
            buf: Vec::new(),
            start: 0,
            scanned: 0,
            pending: None,
            limit,
            failed: None,
            keepalive: false,
            ping_matched: 0,
            pings: 0,
        }
    }

    /// Appends bytes read from the connection.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.failed.is_none() {
            self.buf.extend_from_slice(bytes);
        }
    }

    /// How many double-CRLF pings (RFC 5626 §4.4.1) came between messages since the last call; the
    /// count starts again from zero.
    pub fn take_pings(&mut self) -> u32 {
        std::mem::take(&mut self.pings)
    }

    /// Whether CRLF keep-alives (RFC 5626 §3.5.1) came between messages since the last call; the flag
    /// is cleared. Only whole-message framing clears a connection's first-message deadline; this only
    /// says the peer is alive.
    pub fn take_keepalive(&mut self) -> bool {
        std::mem::take(&mut self.keepalive)
    }

    /// Bytes buffered but not yet yielded.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    /// The next complete message, `Ok(None)` when more bytes are needed. After an error every later call
    /// returns the same error.
    pub fn next_message(&mut self) -> Result<Option<Vec<u8>>, FramingError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        match self.step() {
            Err(e) => {
                self.failed = Some(e.clone());
                self.buf = Vec::new();
                self.start = 0;
                Err(e)
            }
            ok => ok,
        }
    }

    fn step(&mut self) -> Result<Option<Vec<u8>>, FramingError> {
        if self.pending.is_none() {
            // Keep-alive CRLFs between messages are skipped, never part of a frame.
            while let Some(&b @ (b'\r' | b'\n')) = self.buf.get(self.start) {
                self.start += 1;
                self.keepalive = true;
                self.match_ping(b);
            }
            if self.start < self.buf.len() {
                // A message begins: a ping is only whole CRLF pairs between messages.
                self.ping_matched = 0;
            }
            self.scanned = self.scanned.max(self.start);
            let Some(header_end) = self.find_header_end() else {
                if self.buffered() > self.limit {
                    return Err(FramingError::TooLarge { limit: self.limit });
                }
                self.compact();
                return Ok(None);
            };
            let head = self.buf.get(self.start..header_end).unwrap_or(&[]);
            let body_len = content_length(head)?;
            let total = (header_end - self.start)
                .checked_add(body_len)
                .filter(|&t| t <= self.limit)
                .ok_or(FramingError::TooLarge { limit: self.limit })?;
            self.pending = Some(total);
        }
        let Some(total) = self.pending else {
            return Ok(None);
        };
        let Some(frame) = self.buf.get(self.start..self.start + total) else {
            return Ok(None);
        };
        let frame = frame.to_vec();
        self.start += total;
        self.scanned = self.start;
        self.pending = None;
        self.compact();
        Ok(Some(frame))
    }

    /// Moves the ping match on by one keep-alive byte (`\r\n\r\n` counts one ping).
    fn match_ping(&mut self, b: u8) {
        let expected = if self.ping_matched.is_multiple_of(2) {
            b'\r'
        } else {
            b'\n'
        };
        self.ping_matched = match (b == expected, b) {
            (true, _) => self.ping_matched + 1,
            (false, b'\r') => 1,
            (false, _) => 0,
        };
        if self.ping_matched == 4 {
            self.pings = self.pings.saturating_add(1);
            self.ping_matched = 0;
        }
    }

    /// Finds the end of the header section (after the empty line, CRLF or bare LF) from `scanned`.
    fn find_header_end(&mut self) -> Option<usize> {
        let mut i = self.scanned;
        while let Some(off) = self.buf.get(i..)?.iter().position(|&b| b == b'\n') {
            let nl = i + off;
            match (self.buf.get(nl + 1), self.buf.get(nl + 2)) {
                (Some(b'\n'), _) => return Some(nl + 2),
                (Some(b'\r'), Some(b'\n')) => return Some(nl + 3),
                // Not enough bytes yet to decide: resume at this LF next time.
                (None, _) | (Some(b'\r'), None) => {
                    self.scanned = nl;
                    return None;
                }
                _ => i = nl + 1,
            }
        }
        self.scanned = self.buf.len();
        None
    }

    /// Drops consumed bytes once they are at least half the buffer, keeping the copying amortized O(1)
    /// per byte.
    fn compact(&mut self) {
        if self.start > 0 && self.start * 2 >= self.buf.len() {
            self.buf.drain(..self.start);
            self.scanned -= self.start;
            self.start = 0;
        }
    }
}

/// Content-Length (full or compact `l`, any case) from a header section.
fn content_length(head: &[u8]) -> Result<usize, FramingError> {
    let mut found: Option<usize> = None;
    for line in head.split(|&b| b == b'\n').skip(1) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let name = line[..colon].trim_ascii();
        if !(name.eq_ignore_ascii_case(b"content-length") || name.eq_ignore_ascii_case(b"l")) {
            continue;
        }
        let value = line[colon + 1..].trim_ascii();
        if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
            return Err(FramingError::MalformedContentLength);
        }
        let n = value.iter().try_fold(0usize, |acc, &d| {
            acc.checked_mul(10)?.checked_add(usize::from(d - b'0'))
        });
        // A number too big for usize is certainly over the limit.
        let n = n.unwrap_or(usize::MAX);
        if found.is_some_and(|f| f != n) {
            return Err(FramingError::MalformedContentLength);
        }
        found = Some(n);
    }
    found.ok_or(FramingError::MissingContentLength)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(cseq: u32, body: &str) -> Vec<u8> {
        format!(
            "OPTIONS sip:ivr@192.0.2.1 SIP/2.0\r\nVia: SIP/2.0/TCP 192.0.2.2;branch=z9hG4bK{cseq}\r\n\
             CSeq: {cseq} OPTIONS\r\nl: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    }

    fn drain(f: &mut StreamFramer) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        while let Some(m) = f.next_message().unwrap() {
            out.push(m);
        }
        out
    }

    #[test]
    fn two_messages_split_at_every_byte_position() {
        let (a, b) = (msg(1, "hello"), msg(2, ""));
        let mut stream = b"\r\n\r\n".to_vec();
        stream.extend_from_slice(&a);
        stream.extend_from_slice(b"\r\n");
        stream.extend_from_slice(&b);
        for cut in 0..=stream.len() {
            let mut f = StreamFramer::new();
            f.push(&stream[..cut]);
            let mut got = drain(&mut f);
            f.push(&stream[cut..]);
            got.extend(drain(&mut f));
            assert_eq!(got, [a.clone(), b.clone()], "cut at {cut}");
            assert_eq!(f.buffered(), 0);
        }
    }

    #[test]
    fn byte_by_byte_feed_frames_every_message() {
        let mut stream = Vec::new();
        for i in 0..50 {
            stream.extend_from_slice(&msg(i, "x"));
        }
        let mut f = StreamFramer::new();
        let mut got = 0;
        for b in &stream {
            f.push(std::slice::from_ref(b));
            got += drain(&mut f).len();
        }
        assert_eq!(got, 50);
    }

    #[test]
    fn missing_content_length_is_an_error_and_sticks() {
        let mut f = StreamFramer::new();
        f.push(b"OPTIONS sip:a@b SIP/2.0\r\nVia: x\r\n\r\n");
        assert_eq!(f.next_message(), Err(FramingError::MissingContentLength));
        f.push(&msg(1, ""));
        assert_eq!(f.next_message(), Err(FramingError::MissingContentLength));
    }

    #[test]
    fn content_length_garbage_is_malformed() {
        let mut f = StreamFramer::new();
        f.push(b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 12a\r\n\r\n");
        assert_eq!(f.next_message(), Err(FramingError::MalformedContentLength));
    }

    #[test]
    fn the_64_kib_limit() {
        // Content-Length grows by four digits when the body is ~64 KiB.
        let fits = "x".repeat(MAX_MESSAGE_BYTES - msg(1, "").len() - 4);
        assert_eq!(msg(1, &fits).len(), MAX_MESSAGE_BYTES);
        let mut f = StreamFramer::new();
        f.push(&msg(1, &fits));
        assert_eq!(drain(&mut f).len(), 1, "exactly 64 KiB is accepted");

        let mut f = StreamFramer::new();
        f.push(&msg(1, &format!("{fits}y")));
        let limit = MAX_MESSAGE_BYTES;
        assert_eq!(f.next_message(), Err(FramingError::TooLarge { limit }));

        // A huge Content-Length is refused as soon as the headers are read, before the body arrives.
        let mut f = StreamFramer::new();
        f.push(b"INVITE sip:a@b SIP/2.0\r\nContent-Length: 99999999999999999999999\r\n\r\n");
        assert_eq!(f.next_message(), Err(FramingError::TooLarge { limit }));

        // Endless headers without an empty line are refused too.
        let mut f = StreamFramer::new();
        let line = b"X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n";
        let mut refused = false;
        for _ in 0..2000 {
            f.push(line);
            if f.next_message().is_err() {
                refused = true;
                break;
            }
        }
        assert!(refused);
    }

    #[test]
    fn keepalives_are_reported_once() {
        let mut f = StreamFramer::new();
        f.push(b"\r\n\r\n");
        assert_eq!(f.next_message(), Ok(None));
        assert!(f.take_keepalive());
        assert!(!f.take_keepalive());
        f.push(&msg(1, ""));
        assert_eq!(drain(&mut f).len(), 1);
        assert!(!f.take_keepalive());
    }

    #[test]
    fn a_double_crlf_is_a_ping_split_anywhere_and_a_lone_crlf_is_not() {
        let mut f = StreamFramer::new();
        f.push(b"\r\n");
        assert_eq!(f.next_message(), Ok(None));
        assert_eq!(f.take_pings(), 0, "a lone CRLF (a pong) is no ping");
        f.push(b"\r\n");
        assert_eq!(f.next_message(), Ok(None));
        assert_eq!(f.take_pings(), 1, "the two halves make one ping");
        assert_eq!(f.take_pings(), 0, "counted once");
        f.push(b"\r\n\r\n\r\n\r\n\r\n");
        assert_eq!(f.next_message(), Ok(None));
        assert_eq!(f.take_pings(), 2, "two whole pings; the fifth CRLF waits");
        // A message after a lone CRLF: the half ping is forgotten.
        f.push(&msg(1, ""));
        assert_eq!(drain(&mut f).len(), 1);
        f.push(b"\r\n");
        assert_eq!(f.next_message(), Ok(None));
        assert_eq!(f.take_pings(), 0);
        // Bare line feeds (RFC 3261 §7.5 tolerance) are no ping.
        f.push(b"\n\n\n\n");
        assert_eq!(f.next_message(), Ok(None));
        assert_eq!(f.take_pings(), 0);
    }

    #[test]
    fn lf_only_header_end_is_found() {
        let mut f = StreamFramer::new();
        f.push(b"OPTIONS sip:a@b SIP/2.0\nContent-Length: 2\n\nokOPTIONS");
        assert_eq!(
            f.next_message().unwrap().unwrap(),
            b"OPTIONS sip:a@b SIP/2.0\nContent-Length: 2\n\nok"
        );
        assert_eq!(f.next_message().unwrap(), None);
        assert_eq!(f.buffered(), 7);
    }
}
