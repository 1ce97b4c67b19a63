//! Every job file in `examples/` is valid as it ships (the files it reads are not checked here).

use std::path::Path;

#[test]
fn every_example_job_file_validates() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).expect("examples folder") {
        let path = entry.expect("entry").path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("read example");
        if let Err(e) = shoal_common::spec::load_toml(&text) {
            panic!("{}: {e}", path.display());
        }
        seen += 1;
    }
    assert!(seen >= 8, "only {seen} examples found in {}", dir.display());
}
