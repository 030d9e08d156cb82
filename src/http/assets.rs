//! The dashboard's files and the API's description, embedded in the binary at build time (no
//! CDN, works offline). build.rs stores them gzip-compressed (86 KB of text in 24 KB); a client
//! that accepts gzip, as every browser does, gets them as stored, any other decoded.

use super::{Reply, gzip};

/// A file as build.rs embedded it: gzip-compressed, or as it is where the build machine had
/// no gzip (build.rs warns then).
struct Embedded {
    bytes: &'static [u8],
    gzip: bool,
}

// APP_JS, APP_CSS and OPENAPI.
include!(concat!(env!("OUT_DIR"), "/assets.rs"));

pub struct Asset {
    embedded: Embedded,
    mime: &'static str,
}

impl Asset {
    /// The file as an answer, in the encoding the request's `Accept-Encoding` allows.
    pub fn reply(&self, accept_encoding: Option<&str>) -> Reply {
        let Embedded { bytes, gzip } = self.embedded;
        let reply = if !gzip {
            Reply::bytes(200, self.mime, bytes.to_vec())
        } else if gzip::accepted(accept_encoding) {
            Reply::bytes(200, self.mime, bytes.to_vec())
                .with_header("Content-Encoding", "gzip".into())
        } else {
            match gzip::decode(bytes) {
                Ok(plain) => Reply::bytes(200, self.mime, plain),
                Err(e) => Reply::error(500, "internal", e),
            }
        };
        // A cache between tend and a browser must not hand one client's encoding to another.
        reply.with_header("Vary", "Accept-Encoding".into())
    }
}

/// The page is served through [`index_with_snapshot`], which fills in the server list.
const INDEX: &str = include_str!("../../static/index.html");
const APP_JS: Asset = Asset {
    embedded: APP_JS_FILE,
    mime: "text/javascript; charset=utf-8",
};
const APP_CSS: Asset = Asset {
    embedded: APP_CSS_FILE,
    mime: "text/css; charset=utf-8",
};
/// The API's description, kept true by a test that exercises every route and status it lists.
pub const OPENAPI: Asset = Asset {
    embedded: OPENAPI_FILE,
    mime: "application/json",
};

/// Where [`index_with_snapshot`] puts the server list: a comment in static/index.html.
const SNAPSHOT_MARK: &str = "<!-- snapshot -->";

/// The dashboard page with the server list (the JSON array of `GET /api/servers`) embedded as
/// a data block, so the first paint shows the servers before the event stream or any request
/// has answered (issue 10: a headless `chromium --screenshot` showed an empty table). A data
/// block is never executed, so the CSP (`default-src 'self'`) has nothing to refuse.
pub fn index_with_snapshot(servers_json: &str) -> Vec<u8> {
    // Inside <script> only `</script` could end the block early; JSON has `<` only inside
    // strings (a command such as `a </script> b`), where `\u003c` means the same.
    let block = format!(
        "<script type=\"application/json\" id=\"snapshot\">{}</script>",
        servers_json.replace('<', "\\u003c")
    );
    INDEX.replacen(SNAPSHOT_MARK, &block, 1).into_bytes()
}

/// The asset served at a path given as segments (`[]` is `/`).
pub fn find(path: &[&str]) -> Option<&'static Asset> {
    match path {
        ["app.js"] => Some(&APP_JS),
        ["app.css"] => Some(&APP_CSS),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_snapshot_lands_in_the_page_and_cannot_end_its_script_block() {
        assert_eq!(
            INDEX.matches(SNAPSHOT_MARK).count(),
            1,
            "one mark in index.html"
        );
        let json = r#"[{"id":"web","command":"echo </script><b>x</b>"}]"#;
        let served = String::from_utf8(index_with_snapshot(json)).unwrap();
        let start = served
            .find(r#"<script type="application/json" id="snapshot">"#)
            .unwrap();
        let body = &served[start..];
        let end = body.find("</script>").unwrap();
        let data = &body[body.find('>').unwrap() + 1..end];
        let parsed: serde_json::Value = serde_json::from_str(data).unwrap();
        assert_eq!(parsed[0]["command"], "echo </script><b>x</b>");
        assert!(!served.contains(SNAPSHOT_MARK));
    }

    /// What build.rs embedded is each source file, byte for byte, in either encoding.
    #[test]
    fn every_embedded_file_is_its_source_in_either_encoding() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        for (asset, source) in [
            (&APP_JS, "static/app.js"),
            (&APP_CSS, "static/app.css"),
            (&OPENAPI, "src/http/openapi.json"),
        ] {
            let source_bytes = std::fs::read(root.join(source)).unwrap();
            assert!(asset.embedded.gzip, "{source}: this build machine has gzip");
            let header = |reply: &Reply, name: &str| {
                reply
                    .headers
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, v)| v.clone())
            };
            let plain = asset.reply(Some("identity"));
            assert_eq!(plain.body, source_bytes, "{source} decoded");
            assert_eq!(header(&plain, "Content-Encoding"), None);
            let packed = asset.reply(Some("gzip, deflate, br"));
            assert_eq!(header(&packed, "Content-Encoding").as_deref(), Some("gzip"));
            assert!(
                packed.body.len() * 2 < source_bytes.len(),
                "{source} compressed"
            );
            assert_eq!(gzip::decode(&packed.body).unwrap(), source_bytes);
            for reply in [&plain, &packed] {
                assert_eq!(header(reply, "Vary").as_deref(), Some("Accept-Encoding"));
            }
        }
    }
}
