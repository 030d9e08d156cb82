//! The musl build's memory beside the glibc build's (issue 16: measure memory "with musl's
//! allocator too"). The bench measures the glibc build throughout, so its figures stay
//! comparable across runs; `make bench` also keeps the musl build (`make static`) as
//! target/static/tend-musl, and this runs it on the steady phase's workload (N listeners, one
//! port each) to read its RSS and PSS once every server runs and nobody looks.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::bench::{MIB, listeners, wait_running};
use crate::managers::{TendRun, free_port_range};
use crate::procs;
use crate::stats::Samples;

/// RSS and PSS in MiB, sampled every 2 s for 10 s after the start has settled.
pub fn footprint(me: &Path, musl: &Path, n: usize) -> (Samples, Samples) {
    let base = free_port_range(20000, n as u16);
    let config = TendRun::idle_config(&listeners(me, n, base, None), true);
    let tend = TendRun::start(musl, &format!("musl{n}"), &config, "info");
    wait_running(&tend, n);
    // The waiting's reads age past two rounds, as in the steady phase: nobody looks from here.
    std::thread::sleep(Duration::from_secs(8));
    let (mut rss, mut pss) = (Samples::default(), Samples::default());
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(10) {
        if let Some((r, p)) = procs::rss_pss(tend.pid) {
            rss.0.push(r as f64 / MIB);
            pss.0.push(p as f64 / MIB);
        }
        std::thread::sleep(Duration::from_secs(2));
    }
    (rss, pss)
}
