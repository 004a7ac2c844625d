//! The floor plan holds: every top-level module of `src/` uses only modules
//! below it in the order `src/lib.rs` draws, so no two layers know each
//! other and no cycle can come back unnoticed.

use std::collections::BTreeSet;
use std::path::Path;

/// Bottom to top. A module may use the ones before it, never those after.
const LAYERS: &[&str] = &[
    "error",
    "allocator",
    "log_writer",
    "options",
    "shared",
    "key_map",
    "storage",
    "catalog",
    "access",
    "online",
    "ingest",
    "store",
    "execution",
    "lifecycle",
    "tables",
    "planning",
    "sql",
    "file_access",
    "settings",
    "session",
    "flight",
    "output",
    "examples",
    "repl",
    "quickstart",
];

/// The `crate::<module>` paths used in a file or folder.
fn uses(path: &Path, found: &mut BTreeSet<String>) {
    if path.is_dir() {
        for entry in std::fs::read_dir(path).expect("read_dir") {
            uses(&entry.expect("entry").path(), found);
        }
        return;
    }
    if !path.exists() || path.extension().is_none_or(|e| e != "rs") {
        return;
    }
    let text = std::fs::read_to_string(path).expect("read source");
    for (at, _) in text.match_indices("crate::") {
        let rest = &text[at + "crate::".len()..];
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || *c == '_')
            .collect();
        if !name.is_empty() {
            found.insert(name);
        }
    }
}

#[test]
fn every_module_uses_only_the_layers_below_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut modules = BTreeSet::new();
    for entry in std::fs::read_dir(&src).expect("read src") {
        let path = entry.expect("entry").path();
        let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
        if !matches!(stem, "lib" | "main") {
            modules.insert(stem.to_string());
        }
    }
    let unplaced: Vec<&String> = modules
        .iter()
        .filter(|m| !LAYERS.contains(&m.as_str()))
        .collect();
    assert!(
        unplaced.is_empty(),
        "modules not placed in LAYERS (add them where they belong): {unplaced:?}"
    );
    let mut upward = Vec::new();
    for (level, module) in LAYERS.iter().enumerate() {
        let mut found = BTreeSet::new();
        uses(&src.join(module), &mut found);
        uses(&src.join(format!("{module}.rs")), &mut found);
        for used in found {
            let Some(used_level) = LAYERS.iter().position(|l| *l == used) else {
                continue;
            };
            if used_level > level {
                upward.push(format!("{module} uses {used}"));
            }
        }
    }
    assert!(upward.is_empty(), "layers used from below: {upward:#?}");
}

/// Planning and the layers above it talk to warehouse tables through
/// `tables::Versioned`, never by downcasting to the concrete table.
#[test]
fn tables_are_reached_through_their_trait() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut offenders = Vec::new();
    for module in ["planning", "session", "flight"] {
        let mut files = vec![src.join(module)];
        while let Some(path) = files.pop() {
            if path.is_dir() {
                for entry in std::fs::read_dir(&path).expect("read_dir") {
                    files.push(entry.expect("entry").path());
                }
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).expect("read source");
                if text.contains("IcebergTable") {
                    offenders.push(path.display().to_string());
                }
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "name tables::IcebergTable: {offenders:?}"
    );
}
