//! The dashboard's files, embedded in the binary at build time (no CDN, works offline).

pub struct Asset {
    pub bytes: &'static [u8],
    pub mime: &'static str,
}

const INDEX: Asset = Asset {
    bytes: include_bytes!("../../static/index.html"),
    mime: "text/html; charset=utf-8",
};
const APP_JS: Asset = Asset {
    bytes: include_bytes!("../../static/app.js"),
    mime: "text/javascript; charset=utf-8",
};
const APP_CSS: Asset = Asset {
    bytes: include_bytes!("../../static/app.css"),
    mime: "text/css; charset=utf-8",
};

/// Where [`index_with_snapshot`] puts the server list: a comment in static/index.html.
const SNAPSHOT_MARK: &str = "<!-- snapshot -->";

/// The dashboard page with the server list (the JSON array of `GET /api/servers`) embedded as
/// a data block, so the first paint shows the servers before the event stream or any request
/// has answered (issue 10: a headless `chromium --screenshot` showed an empty table). A data
/// block is never executed, so the CSP (`default-src 'self'`) has nothing to refuse.
pub fn index_with_snapshot(servers_json: &str) -> Vec<u8> {
    let page = std::str::from_utf8(INDEX.bytes).expect("static/index.html is UTF-8");
    // Inside <script> only `</script` could end the block early; JSON has `<` only inside
    // strings (a command such as `a </script> b`), where `\u003c` means the same.
    let block = format!(
        "<script type=\"application/json\" id=\"snapshot\">{}</script>",
        servers_json.replace('<', "\\u003c")
    );
    page.replacen(SNAPSHOT_MARK, &block, 1).into_bytes()
}

/// The asset served at a path given as segments (`[]` is `/`).
pub fn find(path: &[&str]) -> Option<&'static Asset> {
    match path {
        [] | ["index.html"] => Some(&INDEX),
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
        let page = std::str::from_utf8(INDEX.bytes).unwrap();
        assert_eq!(
            page.matches(SNAPSHOT_MARK).count(),
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
}
