//! A filter the kernel runs over the sock_diag listener dump: INET_DIAG bytecode
//! (linux/inet_diag.h, `INET_DIAG_REQ_BYTECODE`) that keeps only the sockets whose local port
//! falls in one of a few ranges covering the watched ports.
//!
//! Why: the dump lists every listener on the host, and a busy host has many more of them than
//! tend watches (on the bench's shared machine ~1,000 besides tend's 100). Each one costs the
//! kernel a reply message and tend a parse and a lookup per round; filtered in the kernel, a
//! round's work follows the watched ports, not the host (docs/NOTES.md "Ports").
//!
//! The kernel runs the program once per socket, so it is kept short: at most [`MAX_RANGES`]
//! ranges (two comparisons each). More runs of ports than that are joined across their
//! smallest gaps; the caller drops the few extra sockets such a range lets through.

/// `INET_DIAG_BC_JMP` (always takes its `no` offset), `INET_DIAG_BC_S_GE` and
/// `INET_DIAG_BC_S_LE` (the socket's local port is ≥ / ≤ the operand).
const JMP: u8 = 1;
const S_GE: u8 = 2;
const S_LE: u8 = 3;
/// One `struct inet_diag_bc_op` { code: u8, yes: u8, no: u16 }; a port comparison is two of
/// them, the second holding the port in `no`.
const OP: usize = 4;
/// A range: two port comparisons.
const RANGE: usize = 4 * OP;

/// The most ranges in one filter: the kernel runs up to three operations per range for every
/// listener on the host.
pub const MAX_RANGES: usize = 16;

/// `ports` (sorted, without repeats) as at most [`MAX_RANGES`] inclusive ranges: runs of
/// consecutive ports, the runs closest together joined when there are too many.
pub fn ranges(ports: &[u16]) -> Vec<(u16, u16)> {
    let mut runs: Vec<(u16, u16)> = Vec::new();
    for &port in ports {
        match runs.last_mut() {
            Some((_, end)) if end.checked_add(1) == Some(port) => *end = port,
            _ => runs.push((port, port)),
        }
    }
    if runs.len() <= MAX_RANGES {
        return runs;
    }
    // Keep the MAX_RANGES - 1 widest gaps between runs; join across the others.
    let mut gaps: Vec<(u16, usize)> = runs
        .windows(2)
        .enumerate()
        .map(|(i, pair)| (pair[1].0 - pair[0].1, i))
        .collect();
    gaps.sort_unstable_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    let mut splits: Vec<usize> = gaps[..MAX_RANGES - 1].iter().map(|&(_, i)| i).collect();
    splits.sort_unstable();
    let mut joined = Vec::with_capacity(MAX_RANGES);
    let mut start = 0;
    for split in splits.into_iter().chain([runs.len() - 1]) {
        joined.push((runs[start].0, runs[split].1));
        start = split + 1;
    }
    joined
}

/// The program that accepts a socket whose local port lies in one of `ranges`.
///
/// Each range is `S_GE lo; S_LE hi`, and a failed comparison jumps 4 bytes past the range's
/// end: to the next range, or off the program's end (reject). A range that holds falls through
/// to a `JMP` to the program's exact end (accept; the last range needs none). This is the
/// shape `ss` compiles `a || b` to, and the one the kernel's check (`inet_diag_bc_audit`)
/// accepts: every jump must land on an operation that the chain of `yes` steps from the start
/// also reaches.
pub fn bytecode(ranges: &[(u16, u16)]) -> Vec<u8> {
    assert!(
        !ranges.is_empty() && ranges.len() <= MAX_RANGES,
        "1..={MAX_RANGES} ranges"
    );
    let len = ranges.len() * (RANGE + OP) - OP;
    let mut code = Vec::with_capacity(len);
    for (i, &(lo, hi)) in ranges.iter().enumerate() {
        push_op(&mut code, S_GE, (2 * OP) as u8, (RANGE + OP) as u16);
        push_op(&mut code, 0, 0, lo);
        push_op(&mut code, S_LE, (2 * OP) as u8, (2 * OP + OP) as u16);
        push_op(&mut code, 0, 0, hi);
        if i + 1 < ranges.len() {
            let to_end = len - code.len();
            push_op(&mut code, JMP, OP as u8, to_end as u16);
        }
    }
    debug_assert_eq!(code.len(), len);
    code
}

fn push_op(code: &mut Vec<u8>, op: u8, yes: u8, no: u16) {
    code.extend_from_slice(&[op, yes]);
    code.extend_from_slice(&no.to_ne_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The kernel's `inet_diag_bc_audit` (net/ipv4/inet_diag.c) for these operations: every
    /// offset a multiple of 4 and in bounds, and every `no` target on the chain of `yes` steps.
    fn audit(code: &[u8]) -> bool {
        let len = code.len() as isize;
        let mut on_chain = vec![];
        let mut at = 0isize;
        while at < len {
            on_chain.push(at);
            at += code[at as usize + 1] as isize;
        }
        if at != len {
            return false;
        }
        on_chain.iter().all(|&at| {
            let op = &code[at as usize..];
            let min = if op[0] == JMP { OP } else { 2 * OP } as isize;
            let (yes, no) = (op[1] as isize, u16::from_ne_bytes([op[2], op[3]]) as isize);
            let rest = len - at;
            yes >= min
                && yes <= rest + 4
                && yes % 4 == 0
                && no >= min
                && no <= rest + 4
                && no % 4 == 0
                && (no >= rest || on_chain.contains(&(at + no)))
        })
    }

    /// The kernel's `inet_diag_bc_run` (net/ipv4/inet_diag.c) for these operations.
    fn run(code: &[u8], port: u16) -> bool {
        let mut at: isize = 0;
        let len = code.len() as isize;
        while at < len {
            let op = &code[at as usize..];
            let operand = u16::from_ne_bytes([op[6], op[7]]);
            let yes = match op[0] {
                JMP => false,
                S_GE => port >= operand,
                S_LE => port <= operand,
                other => panic!("unexpected op {other}"),
            };
            at += if yes {
                op[1] as isize
            } else {
                u16::from_ne_bytes([op[2], op[3]]) as isize
            };
        }
        at == len
    }

    #[test]
    fn consecutive_ports_are_one_range() {
        assert_eq!(
            ranges(&[3000, 3001, 3002, 8080]),
            vec![(3000, 3002), (8080, 8080)]
        );
        assert_eq!(ranges(&[65534, 65535]), vec![(65534, 65535)]);
        assert!(ranges(&[]).is_empty());
    }

    #[test]
    fn too_many_runs_are_joined_across_the_smallest_gaps() {
        // 20 single ports 10 apart, and one far away: the far one keeps its own range.
        let mut ports: Vec<u16> = (0..20).map(|i| 1000 + i * 10).collect();
        ports.push(60000);
        let got = ranges(&ports);
        assert_eq!(got.len(), MAX_RANGES);
        assert_eq!(got.last(), Some(&(60000, 60000)));
        for port in &ports {
            assert!(got.iter().any(|&(lo, hi)| lo <= *port && *port <= hi));
        }
        assert!(got.windows(2).all(|w| w[0].1 < w[1].0), "sorted, disjoint");
    }

    #[test]
    fn the_program_accepts_exactly_the_ranges() {
        for ranges in [
            vec![(8080, 8080)],
            vec![(3000, 3002), (8080, 8080), (9000, 9100)],
            (0..MAX_RANGES as u16)
                .map(|i| (i * 1000 + 1, i * 1000 + 5))
                .collect(),
        ] {
            let code = bytecode(&ranges);
            assert!(audit(&code), "the kernel would refuse {ranges:?}");
            for port in 0..=u16::MAX {
                let want = ranges.iter().any(|&(lo, hi)| lo <= port && port <= hi);
                assert_eq!(run(&code, port), want, "port {port} with {ranges:?}");
            }
        }
    }
}
