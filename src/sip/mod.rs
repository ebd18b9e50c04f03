//! SIP protocol core (sans-IO): transactions today; codec, endpoint and replies arrive on other branches.

pub mod transaction;
