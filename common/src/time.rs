//! Conversions between wall-clock times and protobuf timestamps.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prost_types::Timestamp;

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    system_to_ms(SystemTime::now())
}

pub fn system_to_ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// A protobuf timestamp for a time in Unix milliseconds; `None` for 0 (never happened).
pub fn ms_to_timestamp(ms: i64) -> Option<Timestamp> {
    (ms > 0).then(|| Timestamp { seconds: ms.div_euclid(1000), nanos: (ms.rem_euclid(1000) * 1_000_000) as i32 })
}

/// Unix milliseconds of a protobuf timestamp.
pub fn timestamp_to_ms(ts: &Timestamp) -> i64 {
    ts.seconds * 1000 + i64::from(ts.nanos) / 1_000_000
}

/// Age of a timestamp relative to now (zero if it lies in the future).
pub fn age(ts: &Timestamp) -> Duration {
    let ms = now_ms() - timestamp_to_ms(ts);
    Duration::from_millis(ms.max(0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_round_trip() {
        let ms = 1_764_000_123_456;
        let ts = ms_to_timestamp(ms).expect("non-zero");
        assert_eq!(timestamp_to_ms(&ts), ms);
        assert!(ms_to_timestamp(0).is_none());
    }
}
