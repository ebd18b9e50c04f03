//! SIPp `-trace_msg` message logs (placeholder until the log reader lands).
use super::decode::Captured;

pub(crate) fn is_sipp_log(_bytes: &[u8]) -> bool {
    false
}

pub(crate) fn read(_bytes: &[u8]) -> Vec<Captured> {
    Vec::new()
}
