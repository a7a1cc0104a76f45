//! Bidirectional flow tracking.
pub mod app;
pub mod defrag;
pub mod key;
pub mod stream;
pub mod table;
pub mod tcp_state;
pub mod update;
