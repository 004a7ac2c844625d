//! Runs every `sql_examples/*.slt` file, each in a fresh temporary warehouse.
//!
//! `PITLAKE_SLT_COMPLETE=1 cargo test --test slt` rewrites the expected results
//! with what pitlake returns (review the diff before committing).
//! `cargo test --test slt -- <filter>` runs the files whose name contains `<filter>`.

use std::path::{Path, PathBuf};

use pitlake::Session;
use pitlake::examples::SltDatabase;
use sqllogictest::{Runner, default_column_validator, default_normalizer, default_validator};

async fn run_file(path: &Path, complete: bool) -> Result<(), String> {
    let scratch = tempfile::tempdir().map_err(|e| e.to_string())?;
    let warehouse = scratch.path().join("warehouse");
    let mut runner = Runner::new(move || {
        let warehouse = warehouse.clone();
        async move {
            let session = Session::open(&warehouse).await?;
            // Plans in the files are pinned for two partitions, whatever the machine.
            let state = session.context().state_ref();
            state
                .write()
                .config_mut()
                .options_mut()
                .execution
                .target_partitions = 2;
            Ok(SltDatabase::new(session))
        }
    });
    if complete {
        runner
            .update_test_file(
                path,
                " ",
                default_validator,
                default_normalizer,
                default_column_validator,
            )
            .await
            .map_err(|e| e.to_string())
    } else {
        runner
            .run_file_async(path)
            .await
            .map_err(|e| e.display(true).to_string())
    }
}

fn main() {
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let complete = std::env::var("PITLAKE_SLT_COMPLETE").is_ok_and(|v| v == "1");
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("sql_examples");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("sql_examples exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "slt"))
        .filter(|p| {
            filter
                .as_ref()
                .is_none_or(|f| p.to_string_lossy().contains(f.as_str()))
        })
        .collect();
    files.sort();
    // The quickstart embeds the examples: every file must be in its list.
    let embedded: Vec<&str> = pitlake::examples::EXAMPLES
        .iter()
        .map(|(name, _)| *name)
        .collect();
    for file in &files {
        let name = file
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        assert!(
            embedded.contains(&name.as_str()),
            "{name} is missing from pitlake::examples::EXAMPLES"
        );
    }
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    let mut failures = 0;
    for file in &files {
        let name = file
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        match runtime.block_on(run_file(file, complete)) {
            Ok(()) => println!("slt {name} ... ok"),
            Err(e) => {
                failures += 1;
                println!("slt {name} ... FAILED\n{e}");
            }
        }
    }
    println!("\nslt: {} files, {failures} failed", files.len());
    if failures > 0 {
        std::process::exit(1);
    }
}
