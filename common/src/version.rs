//! Versions: a worker must speak the coordinator's protocol revision and come from the same
//! major.minor release line.

/// This build's version (all Shoal crates share it).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Revision of the wire protocol; bumped on any incompatible change to `proto/`.
pub const PROTOCOL: u32 = 1;

/// Why a peer of `version` speaking `protocol` cannot join this build, if it cannot.
pub fn incompatibility(version: &str, protocol: u32) -> Option<String> {
    if protocol != PROTOCOL {
        return Some(format!("protocol revision {protocol} does not match the coordinator's {PROTOCOL}"));
    }
    if major_minor(version) != major_minor(VERSION) || major_minor(version).is_none() {
        return Some(format!(
            "version `{version}` is not compatible with the coordinator's {VERSION} \
             (major.minor must match)"
        ));
    }
    None
}

fn major_minor(version: &str) -> Option<(u64, u64)> {
    let mut parts = version.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_line_is_compatible_and_others_are_not() {
        assert_eq!(incompatibility(VERSION, PROTOCOL), None);
        assert!(incompatibility("99.0.0", PROTOCOL).is_some());
        assert!(incompatibility("garbage", PROTOCOL).is_some());
        assert!(incompatibility(VERSION, PROTOCOL + 1).is_some());
    }
}
