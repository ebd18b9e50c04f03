//! Unit tests of the call registry on a simulated clock.
