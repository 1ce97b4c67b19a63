//! HTTP for the tests: the blocking client the benchmarks use too.

pub use shoal_common::http_client::{encode, get, request};
