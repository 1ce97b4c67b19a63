//! The foreign-load figure of every benchmark record: how much of the machine other processes used
//! while a benchmark ran, so that a noisy measurement can be recognised as such.

use shoal_train::{Collective, ReduceOp};

/// Machine-wide busy CPU seconds and this process's CPU seconds, for the foreign-load figure.
pub struct CpuSnapshot {
    machine_busy_s: f64,
    own_s: f64,
}

fn ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz > 0 { hz as f64 } else { 100.0 }
}

impl CpuSnapshot {
    /// The counters now.
    pub fn take() -> Self {
        let machine_busy_s = std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|s| {
                let v: Vec<f64> = s.lines().next()?.split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
                let total: f64 = v.iter().sum();
                let idle = v.get(3).copied().unwrap_or(0.0) + v.get(4).copied().unwrap_or(0.0);
                Some((total - idle) / ticks_per_second())
            })
            .unwrap_or(0.0);
        // SAFETY: getrusage fills the struct we pass; zeroed is a valid initial value.
        let own_s = unsafe {
            let mut u: libc::rusage = std::mem::zeroed();
            libc::getrusage(libc::RUSAGE_SELF, &mut u);
            let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 * 1e-6;
            t(u.ru_utime) + t(u.ru_stime)
        };
        Self { machine_busy_s, own_s }
    }

    /// Share of the machine used by other processes since `self`, over `wall` seconds. With
    /// several ranks on this machine, their CPU time is summed first so that ranks do not count
    /// each other as foreign load.
    pub fn foreign_share(&self, wall: f64, collective: Option<&mut dyn Collective>) -> f64 {
        let now = Self::take();
        let mut own = [(now.own_s - self.own_s) as f32];
        if let Some(c) = collective
            && c.all_reduce(&mut own, ReduceOp::Sum).is_err()
        {
            return f64::NAN;
        }
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        let foreign = ((now.machine_busy_s - self.machine_busy_s) - f64::from(own[0])).max(0.0);
        (foreign / (wall.max(1e-9) * cores) * 1000.0).round() / 1000.0
    }
}
