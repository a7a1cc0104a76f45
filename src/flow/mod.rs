//! Bidirectional flow tracking.
pub mod key;
pub mod table;
pub mod tcp_state;
pub mod update;
