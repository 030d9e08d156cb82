//! Raw HTTP/1.1 over loopback: one request per connection (`Connection: close`), as tend answers
//! every request; supervisord's XML-RPC is asked the same way so both pay for a connect.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

pub struct Reply {
    pub status: u16,
    pub body: String,
}

/// Sends one request and reads the answer to the end of the connection.
pub fn request(
    port: u16,
    method: &str,
    path: &str,
    body: Option<(&str, &str)>,
) -> std::io::Result<Reply> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(10))?;
    stream.set_read_timeout(Some(Duration::from_secs(120)))?;
    let mut head =
        format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n");
    if let Some((content_type, text)) = body {
        head.push_str(&format!(
            "Content-Type: {content_type}\r\nContent-Length: {}\r\n",
            text.len()
        ));
    } else if method == "POST" {
        head.push_str("Content-Length: 0\r\n");
    }
    head.push_str("\r\n");
    if let Some((_, text)) = body {
        head.push_str(text);
    }
    stream.write_all(head.as_bytes())?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok(Reply { status, body })
}

/// The XML of one XML-RPC call; `params` are already-encoded `<param>` elements.
pub fn xmlrpc_body(method: &str, params: &str) -> String {
    format!(
        "<?xml version=\"1.0\"?><methodCall><methodName>{method}</methodName><params>{params}</params></methodCall>"
    )
}

pub fn xmlrpc(port: u16, method: &str, params: &str) -> std::io::Result<Reply> {
    request(
        port,
        "POST",
        "/RPC2",
        Some(("text/xml", &xmlrpc_body(method, params))),
    )
}

pub const FALSE_PARAM: &str = "<param><value><boolean>0</boolean></value></param>";
