//! The Python and C clients' own test suites, run against the real server. A missing toolchain or
//! library is a failure with the line to fix it, never a skip.

use std::process::Command;

use lanchat_tests::{bin_path, workspace_root};

fn run(cmd: &mut Command, what: &str) {
    let out = cmd
        .env("LANCHAT_SERVER_BIN", bin_path("lanchat-server"))
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{what} failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        out.status
    );
}

#[test]
fn python_client_suite() {
    let has_python = Command::new("python3").arg("--version").output().is_ok();
    assert!(has_python, "python3 is missing: apt-get install -y python3");
    let dir = workspace_root().join("interop/python");
    run(
        Command::new("python3")
            .args(["-m", "unittest", "discover", "-s", "tests", "-v"])
            .current_dir(&dir),
        "python3 -m unittest (interop/python)",
    );
}

#[test]
fn c_client_suite_and_valgrind() {
    let dir = workspace_root().join("interop/c");
    let pkg = Command::new("pkg-config")
        .args(["--exists", "libcjson", "openssl"])
        .status();
    assert!(
        matches!(pkg, Ok(s) if s.success()),
        "cJSON or the OpenSSL headers are missing: apt-get install -y libcjson-dev libssl-dev \
         pkg-config"
    );
    run(
        Command::new("make").arg("-C").arg(&dir).arg("test"),
        "make test (interop/c)",
    );
    let has_valgrind = Command::new("valgrind").arg("--version").output().is_ok();
    assert!(
        has_valgrind,
        "valgrind is missing: apt-get install -y valgrind"
    );
    run(
        Command::new("make").arg("-C").arg(&dir).arg("valgrind"),
        "make valgrind (interop/c)",
    );
}
