//! Workload programs the managers supervise: `tend-bench child listen PORT` (accepts and closes
//! every connection: a healthy port), `tend-bench child stuck PORT` (a listener whose accept
//! queue is full and never drained: a connect to it hangs, the loopback-only way to make a port
//! unreachable; docs/NOTES.md), `tend-bench child http PORT` (answers every request `200 OK`: a
//! healthy HTTP health check) and `tend-bench child mute PORT` (accepts and never answers: an
//! HTTP check that times out). All die on SIGTERM (the default disposition) and use no CPU while
//! idle.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;

const USAGE: &str = "usage: tend-bench child listen|stuck|http|mute PORT";

pub fn run(args: &[String]) -> ! {
    let mode = args.first().map(String::as_str).unwrap_or("");
    let port: u16 = args
        .get(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| fail(USAGE));
    let listener = TcpListener::bind(("127.0.0.1", port))
        .unwrap_or_else(|e| fail(&format!("cannot listen on 127.0.0.1:{port}: {e}")));
    match mode {
        "listen" => loop {
            // Accept and drop: the health check only needs the connect to succeed.
            let _ = listener.accept();
        },
        "stuck" => {
            // A backlog of 0 holds one finished connection; fill it and never accept, so every
            // later SYN is dropped and a connect waits until its own timeout.
            // SAFETY: listen(2) on a socket this process owns; a second listen only changes the
            // backlog.
            unsafe { libc::listen(listener.as_raw_fd(), 0) };
            let mut held: Vec<TcpStream> = Vec::new();
            if let Ok(s) = TcpStream::connect(("127.0.0.1", port)) {
                held.push(s);
            }
            loop {
                std::thread::park();
            }
        }
        "http" => loop {
            // One request a connection, answered once its head has arrived (a health probe
            // sends a small GET and closes).
            let Ok((mut stream, _)) = listener.accept() else {
                continue;
            };
            let mut head = Vec::new();
            let mut chunk = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
                match stream.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&chunk[..n]),
                }
            }
            let _ = stream.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n",
            );
        },
        "mute" => {
            // Holds the last connections it accepted and says nothing on them; older ones are
            // let go so a long run does not pile up descriptors.
            let mut held = VecDeque::new();
            loop {
                if let Ok((stream, _)) = listener.accept() {
                    held.push_back(stream);
                    if held.len() > 16 {
                        held.pop_front();
                    }
                }
            }
        }
        _ => fail(USAGE),
    }
}

fn fail(message: &str) -> ! {
    eprintln!("tend-bench child: {message}");
    std::process::exit(2);
}
