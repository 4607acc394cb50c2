//! Every config shipped in `conf/` parses, lowers and builds into a snapshot.

use std::path::Path;

use tether::peer::PeerRegistry;
use tether::snapshot::Snapshot;

#[test]
fn every_shipped_config_is_valid() {
    let mut checked = 0;
    for entry in std::fs::read_dir("conf").expect("conf/ exists") {
        let path = entry.expect("readable entry").path();
        if path.extension().is_none_or(|ext| ext != "conf") {
            continue;
        }
        let config = tether::config::load(&path, Path::new("."))
            .unwrap_or_else(|errors| panic!("{} does not parse:\n{errors}", path.display()));
        Snapshot::build(&config, &PeerRegistry::default(), 1)
            .unwrap_or_else(|errors| panic!("{} does not build:\n{errors}", path.display()));
        checked += 1;
    }
    assert!(
        checked >= 4,
        "expected the shipped examples, found {checked}"
    );
}
