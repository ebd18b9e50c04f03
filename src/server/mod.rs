//! The tokio shell; this branch only adds the media engine (the integrator owns the rest).

pub mod media_engine;
