//! Agents: who the helpline's people are, whether they take calls, and what each is doing (sans-IO).
pub mod presence;
