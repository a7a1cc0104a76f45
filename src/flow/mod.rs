//! Bidirectional flow tracking.
// Decoders meet hostile bytes: a panic here would stop the sensor (RELIABILITY.md).
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)
)]
pub mod app;
pub mod defrag;
pub mod key;
pub mod stream;
pub mod table;
pub mod tcp_state;
pub mod update;
