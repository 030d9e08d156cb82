//! Compresses the dashboard's files and the OpenAPI document for src/http/assets.rs to embed:
//! 86 KB of text become 24 KB of binary (a fifth of what the static build may weigh, and four
//! times less to send to a browser on a slow link). The system's `gzip -9 -n` does it (`-n`:
//! no name or time in the header, so a build is reproducible); gzip is on every Debian, Ubuntu,
//! Fedora and Alpine system. Without it the files are embedded as they are, with a warning.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::{env, fs};

/// The constant each file becomes, and the file.
const FILES: [(&str, &str); 3] = [
    ("APP_JS_FILE", "static/app.js"),
    ("APP_CSS_FILE", "static/app.css"),
    ("OPENAPI_FILE", "src/http/openapi.json"),
];

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let root = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    println!("cargo::rerun-if-changed=build.rs");
    let mut code = String::from("// Written by build.rs.\n");
    for (name, file) in FILES {
        println!("cargo::rerun-if-changed={file}");
        let source = root.join(file);
        let (embedded, gzip) = match compress(&source, &out.join(format!("{name}.gz"))) {
            Ok(compressed) => (compressed, true),
            Err(why) => {
                println!("cargo::warning={file} is embedded uncompressed: {why}");
                (source, false)
            }
        };
        code += &format!(
            "const {name}: Embedded = Embedded {{ bytes: include_bytes!({embedded:?}), gzip: {gzip} }};\n"
        );
    }
    fs::write(out.join("assets.rs"), code).expect("OUT_DIR is writable");
}

// The rule in clippy.toml is for tend's process, where the reaper owns waitpid; a build
// script is cargo's child and waits for its own.
#[allow(clippy::disallowed_methods)]
fn compress(source: &Path, target: &Path) -> Result<PathBuf, String> {
    let output = Command::new("gzip")
        .args(["-9", "-n", "-c"])
        .arg(source)
        .output()
        .map_err(|e| format!("cannot run gzip: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "gzip failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    fs::write(target, &output.stdout)
        .map_err(|e| format!("cannot write {}: {e}", target.display()))?;
    Ok(target.to_path_buf())
}
