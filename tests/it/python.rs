//! The real Python peers (pyiceberg, …) in a virtual environment the tests
//! create once per requirements file and reuse across runs.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

fn tests_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python")
}

/// The venv's python, creating the venv on first use.
pub fn python() -> &'static Path {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(|| {
        let requirements = tests_dir().join("requirements.txt");
        let text = std::fs::read(&requirements).expect("tests/python/requirements.txt");
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
    run(Command::new(python())
        .arg(tests_dir().join(script))
        .args(args))
}
