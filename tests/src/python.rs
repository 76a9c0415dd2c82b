//! The Python tools the contract tests drive (schemathesis, grpcio), from
//! the venv `tests/run.sh` makes out of `tests/requirements.txt`.

use std::path::Path;
use std::process::{Command, Output};

/// The venv's Python, checked to import `modules` (comma-separated). A
/// missing tool fails the test: a skipped contract check would look like a
/// passing one.
pub fn python(modules: &str) -> String {
    let py = std::env::var("SWITCHYARD_PYTHON").unwrap_or_else(|_| {
        panic!("SWITCHYARD_PYTHON is not set: run tests/run.sh, or create target/py-venv from tests/requirements.txt and export SWITCHYARD_PYTHON")
    });
    let ok = Command::new(&py)
        .args(["-c", &format!("import {modules}")])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(ok, "{py} lacks {modules} (tests/requirements.txt)");
    py
}

/// Runs schemathesis against the API at `base` with the checks the suite
/// holds the OpenAPI document to: no 5xx; every status, content type and
/// body is the one the document declares for that operation. Runs in
/// `work_dir`: schemathesis writes a `.schemathesis` cache in its working
/// directory, which must not land in the checkout. Fails with its output
/// and `server_log()` unless it passed.
pub fn schemathesis(
    work_dir: &Path,
    base: &str,
    headers: &[String],
    max_examples: u32,
    seed: u32,
    server_log: impl Fn() -> String,
) -> String {
    let py = python("schemathesis");
    let mut args: Vec<String> = [
        "-c",
        "import sys; from schemathesis.cli import schemathesis; sys.exit(schemathesis())",
        "run",
    ]
    .map(String::from)
    .to_vec();
    args.push(format!("{base}/api/openapi.json"));
    args.extend(["--url".to_owned(), base.to_owned()]);
    for h in headers {
        args.extend(["--header".to_owned(), h.clone()]);
    }
    args.extend(
        [
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
            "--phases",
            "examples,fuzzing",
            "--no-color",
        ]
        .map(String::from),
    );
    args.extend([
        "--max-examples".to_owned(),
        max_examples.to_string(),
        "--seed".to_owned(),
        seed.to_string(),
    ]);
    let out: Output = Command::new(&py)
        .current_dir(work_dir)
        .args(&args)
        .output()
        .unwrap_or_else(|e| panic!("run schemathesis with {py}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "schemathesis failed:\n{stdout}\n{}\nserver log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        server_log()
    );
    assert!(stdout.contains("passed"), "{stdout}");
    stdout
}
