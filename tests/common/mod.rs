//! Helpers shared by integration tests.
// Each test binary uses a part of them.
#![allow(dead_code)]
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// A directory removed when dropped. Tests run in parallel in one process: each directory
/// gets its own number.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(prefix: &str, tag: &str) -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!(
            "egresswatch-{prefix}-{}-{n}-{tag}",
            std::process::id()
        ));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The public captures with their tshark oracles.
pub fn public_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/captures/public")
}

/// Every `*.oracle.json` in [`public_dir`], sorted.
pub fn oracle_files() -> Vec<PathBuf> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(public_dir())
        .expect("../shared/captures/public exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().ends_with(".oracle.json"))
        .collect();
    entries.sort();
    entries
}
