//! Unit tests of the replaying caller on a simulated clock.
