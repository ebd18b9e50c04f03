//! Byte soup: whatever the bytes, the reader returns, without panicking.
use proptest::prelude::*;

use super::super::*;
use super::fixture;

fn real() -> Vec<Vec<u8>> {
    [
        "udp_lo.pcapng",
        "udp_lo.pcap",
        "udp_any_sll2.pcapng",
        "tcp_lo.pcapng",
        "udp_v6.pcapng",
        "uac_messages.log",
    ]
    .iter()
    .map(|n| fixture(n))
    .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = read_trace(&bytes);
    }

    #[test]
    fn random_bytes_behind_each_magic(magic in 0usize..4, bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let heads: [&[u8]; 4] = [
            &[0xd4, 0xc3, 0xb2, 0xa1],
            &[0x0a, 0x0d, 0x0d, 0x0a],
            &[0xa1, 0xb2, 0x3c, 0x4d],
            b"----------------------------------------------- ",
        ];
        let _ = read_trace(&[heads[magic], &bytes].concat());
    }

    #[test]
    fn real_captures_truncated(which in 0usize..6, cut in any::<prop::sample::Index>()) {
        let bytes = &real()[which];
        let cut = cut.index(bytes.len() + 1);
        if let Ok(trace) = read_trace(&bytes[..cut]) {
            prop_assert!(trace.calls.len() <= 1);
        }
    }

    #[test]
    fn real_captures_with_bytes_changed(which in 0usize..6, edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..16)) {
        let mut bytes = real()[which].clone();
        for (at, value) in edits {
            let i = at.index(bytes.len());
            bytes[i] = value;
        }
        let _ = read_trace(&bytes);
    }
}
