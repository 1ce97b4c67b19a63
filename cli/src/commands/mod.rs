//! One module per command family.

pub mod bench;
pub mod bench_dashboard;
pub mod compress;
pub mod docs;
pub mod inspect;
pub mod local;
pub mod monitor;
pub mod search;
pub mod submit;
pub mod watch;
