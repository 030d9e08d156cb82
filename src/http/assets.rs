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

/// The asset served at a path given as segments (`[]` is `/`).
pub fn find(path: &[&str]) -> Option<&'static Asset> {
    match path {
        [] | ["index.html"] => Some(&INDEX),
        ["app.js"] => Some(&APP_JS),
        ["app.css"] => Some(&APP_CSS),
        _ => None,
    }
}
