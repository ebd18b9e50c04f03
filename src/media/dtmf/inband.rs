//! In-band DTMF detection (placeholder while the codec is tested).
