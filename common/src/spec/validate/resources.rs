//! The `resources` section: what one rank needs on its worker.

use crate::proto;
use crate::spec::config::Resources;
use crate::spec::errors::FieldErrors;

const DEFAULT_MEMORY_MB: i64 = 512;

pub(super) fn resources(c: &mut FieldErrors, r: Option<&proto::ResourceSpec>) -> Resources {
    let r = r.cloned().unwrap_or_default();
    let cpus = c.size_or("resources.cpus", r.cpus, 1);
    if cpus > 4096 {
        c.fail("resources.cpus", "must be at most 4096");
    }
    let memory_mb = c.size_or("resources.memory_mb", r.memory_mb, DEFAULT_MEMORY_MB) as u64;
    let gpus = c.non_negative("resources.gpus", r.gpus);
    if gpus > 64 {
        c.fail("resources.gpus", "must be at most 64");
    }
    Resources { cpus: cpus as u32, memory_mb, gpus: gpus as u32 }
}
