//! Workload programs the managers supervise: `tend-bench child listen PORT` (accepts and closes
//! every connection: a healthy port) and `tend-bench child stuck PORT` (a listener whose accept
//! queue is full and never drained: a connect to it hangs, the loopback-only way to make a port
//! unreachable; NOTES.md). Both die on SIGTERM (the default disposition) and use no CPU while idle.

use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;

pub fn run(args: &[String]) -> ! {
    let mode = args.first().map(String::as_str).unwrap_or("");
    let port: u16 = args
        .get(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| fail("usage: tend-bench child listen|stuck PORT"));
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
        _ => fail("usage: tend-bench child listen|stuck PORT"),
    }
}

fn fail(message: &str) -> ! {
    eprintln!("tend-bench child: {message}");
    std::process::exit(2);
}
