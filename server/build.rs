//! Builds the web app's file table: every file under `web/` (index.html as `/`), with its
//! `Content-Type`, embedded by `include_bytes!` (see `src/web/mod.rs`). Nothing is read from disk
//! at run time, and a file added to or removed from `web/` needs no change in the code.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// `Content-Type` by extension; other files are left out, with a warning.
fn content_type(path: &Path) -> Option<&'static str> {
    let ext = path.extension()?.to_str()?.to_ascii_lowercase();
    Some(match ext.as_str() {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "svg" => "image/svg+xml; charset=utf-8",
        "json" => "application/json; charset=utf-8",
        "webmanifest" => "application/manifest+json; charset=utf-8",
        "txt" => "text/plain; charset=utf-8",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "woff2" => "font/woff2",
        _ => return None,
    })
}

/// Every file under `dir`, in a stable order, hidden ones left out.
fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("a directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        let hidden = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_none_or(|n| n.starts_with('.'));
        if hidden {
            continue;
        }
        if path.is_dir() {
            files(&path, out);
        } else {
            out.push(path);
        }
    }
}

fn main() {
    let web = Path::new(env!("CARGO_MANIFEST_DIR")).join("web");
    // A directory: cargo looks for changes anywhere under it.
    println!("cargo:rerun-if-changed=web");
    let mut all = Vec::new();
    files(&web, &mut all);
    let mut table = String::from("&[\n");
    for path in all {
        let Some(content_type) = content_type(&path) else {
            println!(
                "cargo:warning=web/: {} not served (unknown type)",
                path.display()
            );
            continue;
        };
        let rel = path.strip_prefix(&web).expect("under web/");
        let url = rel
            .to_str()
            .expect("a UTF-8 file name")
            .replace(std::path::MAIN_SEPARATOR, "/");
        let url = if url == "index.html" {
            "/".to_owned()
        } else {
            format!("/{url}")
        };
        writeln!(
            table,
            "    ({url:?}, {content_type:?}, include_bytes!({:?})),",
            path.display().to_string()
        )
        .expect("write to a String");
    }
    table.push_str("]\n");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR"));
    std::fs::write(out.join("web_files.rs"), table).expect("write web_files.rs");
}
