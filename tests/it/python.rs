//! The real Python peers (pyiceberg, …) in a virtual environment the tests
//! create once per requirements file and reuse across runs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

fn tests_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python")
}

/// The venv's python, creating the venv on first use.
pub fn python() -> &'static Path {
    python_for("requirements.txt")
}

/// The python of the venv made from `tests/python/<requirements>`, creating
/// the venv on first use (once per process; each file has its own venv).
pub fn python_for(requirements: &str) -> &'static Path {
    static VENVS: Mutex<BTreeMap<String, &'static OnceLock<PathBuf>>> = Mutex::new(BTreeMap::new());
    let cell = *VENVS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry(requirements.to_string())
        .or_insert_with(|| Box::leak(Box::new(OnceLock::new())));
    cell.get_or_init(|| {
        let requirements = tests_dir().join(requirements);
        let text = std::fs::read(&requirements)
            .unwrap_or_else(|e| panic!("{}: {e}", requirements.display()));
        // FNV-1a of the requirements: a new pin gets a new venv.
        let hash = text.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3)
        });
        let base = std::env::var_os("PITLAKE_VENV_DIR")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
            .unwrap_or_else(std::env::temp_dir);
        let venv = base.join(format!("pitlake-venv-{hash:016x}"));
        let python = venv.join("bin/python");
        if !venv.join(".complete").exists() {
            let _ = std::fs::remove_dir_all(&venv);
            run(Command::new("python3").args(["-m", "venv"]).arg(&venv));
            run(Command::new(&python)
                .args([
                    "-m",
                    "pip",
                    "install",
                    "--quiet",
                    "--disable-pip-version-check",
                    "-r",
                ])
                .arg(&requirements));
            std::fs::write(venv.join(".complete"), b"").expect("mark venv complete");
        }
        python
    })
}

fn run(command: &mut Command) -> String {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).to_string()
}

/// Runs `tests/python/<script>` with arguments; returns its stdout.
pub fn run_script(script: &str, args: &[&str]) -> String {
    run_script_with("requirements.txt", script, args)
}

/// Runs `tests/python/<script>` with arguments in the venv of
/// `tests/python/<requirements>`; returns its stdout.
pub fn run_script_with(requirements: &str, script: &str, args: &[&str]) -> String {
    run(Command::new(python_for(requirements))
        .arg(tests_dir().join(script))
        .args(args))
}

/// Runs `examples/<script>` with the venv's python and arguments; returns its
/// stdout.
pub fn run_example(script: &str, args: &[&str]) -> String {
    run(Command::new(python())
        .arg(
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("examples")
                .join(script),
        )
        .args(args))
}
