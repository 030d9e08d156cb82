//! gzip decoding (RFC 1952 around RFC 1951's deflate), for the one client that needs it.
//!
//! The dashboard's files and the OpenAPI document are embedded gzip-compressed (build.rs): 86 KB
//! of text become 24 KB of binary, and a browser, which always accepts gzip, gets them as they are.
//! A client that does not accept gzip (`curl` without `--compressed`) gets them decoded here, at
//! request time. The input is only ever tend's own embedded bytes, but a panic ends tend, so every
//! malformed input is an `Err`, never an index out of bounds (tests below feed it broken streams).

/// Why a gzip stream could not be decoded; names the first problem found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed(pub &'static str);

impl std::fmt::Display for Malformed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "malformed gzip data: {}", self.0)
    }
}

/// Decodes one gzip member, checking its CRC-32 and length.
pub fn decode(member: &[u8]) -> Result<Vec<u8>, Malformed> {
    let body_start = header_len(member)?;
    let mut input = Bits::new(&member[body_start..]);
    let mut out = Vec::new();
    loop {
        let last = input.take(1)? == 1;
        match input.take(2)? {
            0 => stored(&mut input, &mut out)?,
            1 => codes(
                &mut input,
                &mut out,
                &Huffman::fixed_lengths(),
                &Huffman::fixed_dists(),
            )?,
            2 => {
                let (lengths, dists) = dynamic_tables(&mut input)?;
                codes(&mut input, &mut out, &lengths, &dists)?;
            }
            _ => return Err(Malformed("block type 3")),
        }
        if last {
            break;
        }
    }
    let trailer = input.rest();
    let word = |at: usize| -> Result<u32, Malformed> {
        let bytes = trailer
            .get(at..at + 4)
            .ok_or(Malformed("trailer cut short"))?;
        Ok(u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
    };
    if word(0)? != crc32(&out) {
        return Err(Malformed("CRC-32 does not match"));
    }
    if word(4)? != out.len() as u32 {
        return Err(Malformed("length does not match"));
    }
    Ok(out)
}

/// The bytes before the deflate stream: ten fixed ones and the optional fields FLG announces.
fn header_len(member: &[u8]) -> Result<usize, Malformed> {
    const FHCRC: u8 = 2;
    const FEXTRA: u8 = 4;
    const FNAME: u8 = 8;
    const FCOMMENT: u8 = 16;
    match member {
        [0x1f, 0x8b, 8, ..] if member.len() >= 10 => {}
        _ => return Err(Malformed("not a gzip member with deflate data")),
    }
    let flags = member[3];
    let mut at = 10;
    if flags & FEXTRA != 0 {
        let len = member
            .get(at..at + 2)
            .ok_or(Malformed("header cut short"))?;
        at += 2 + usize::from(u16::from_le_bytes([len[0], len[1]]));
    }
    for field in [FNAME, FCOMMENT] {
        if flags & field != 0 {
            let rest = member.get(at..).ok_or(Malformed("header cut short"))?;
            let end = rest.iter().position(|&b| b == 0);
            at += end.ok_or(Malformed("header name or comment unterminated"))? + 1;
        }
    }
    if flags & FHCRC != 0 {
        at += 2;
    }
    if at > member.len() {
        return Err(Malformed("header cut short"));
    }
    Ok(at)
}

/// Deflate's bit order: values are packed from each byte's least significant bit up.
struct Bits<'a> {
    bytes: &'a [u8],
    next: usize,
    buffer: u64,
    buffered: u32,
}

impl<'a> Bits<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Bits {
            bytes,
            next: 0,
            buffer: 0,
            buffered: 0,
        }
    }

    /// The next `count` (at most 16) bits as a number.
    fn take(&mut self, count: u32) -> Result<u32, Malformed> {
        while self.buffered < count {
            let byte = *self
                .bytes
                .get(self.next)
                .ok_or(Malformed("data cut short"))?;
            self.next += 1;
            self.buffer |= u64::from(byte) << self.buffered;
            self.buffered += 8;
        }
        let value = (self.buffer & ((1 << count) - 1)) as u32;
        self.buffer >>= count;
        self.buffered -= count;
        Ok(value)
    }

    /// The bytes after the current one: a stored block and the trailer start on a byte.
    fn rest(&mut self) -> &'a [u8] {
        self.buffer = 0;
        self.buffered = 0;
        &self.bytes[self.next..]
    }

    fn skip(&mut self, count: usize) {
        self.next += count;
    }
}

fn stored(input: &mut Bits, out: &mut Vec<u8>) -> Result<(), Malformed> {
    let rest = input.rest();
    let head = rest.get(..4).ok_or(Malformed("stored block cut short"))?;
    let len = u16::from_le_bytes([head[0], head[1]]);
    if len != !u16::from_le_bytes([head[2], head[3]]) {
        return Err(Malformed("stored block length and its complement differ"));
    }
    let data = rest
        .get(4..4 + usize::from(len))
        .ok_or(Malformed("stored block cut short"))?;
    out.extend_from_slice(data);
    input.skip(4 + usize::from(len));
    Ok(())
}

/// A canonical Huffman code as deflate defines it: how many codes have each length, and the
/// symbols in code order.
struct Huffman {
    count: [u16; 16],
    symbols: Vec<u16>,
}

impl Huffman {
    /// Over-subscribed lengths are an error; an incomplete code is allowed (deflate permits a
    /// single distance code) and fails only if the stream uses a code it lacks.
    fn from_lengths(lengths: &[u8]) -> Result<Self, Malformed> {
        let mut count = [0u16; 16];
        for &len in lengths {
            count[usize::from(len)] += 1;
        }
        let mut left: i32 = 1;
        for &n in &count[1..] {
            left = left * 2 - i32::from(n);
            if left < 0 {
                return Err(Malformed("over-subscribed Huffman code"));
            }
        }
        let mut offsets = [0u16; 16];
        for len in 1..15 {
            offsets[len + 1] = offsets[len] + count[len];
        }
        let mut symbols = vec![0u16; lengths.len()];
        for (symbol, &len) in lengths.iter().enumerate() {
            if len != 0 {
                symbols[usize::from(offsets[usize::from(len)])] = symbol as u16;
                offsets[usize::from(len)] += 1;
            }
        }
        Ok(Huffman { count, symbols })
    }

    fn fixed_lengths() -> Self {
        let mut lengths = [8u8; 288];
        lengths[144..256].fill(9);
        lengths[256..280].fill(7);
        Huffman::from_lengths(&lengths).expect("deflate's fixed code is complete")
    }

    fn fixed_dists() -> Self {
        Huffman::from_lengths(&[5u8; 30]).expect("deflate's fixed code is complete")
    }

    /// Reads one code bit by bit (codes are sent most significant bit first).
    fn decode(&self, input: &mut Bits) -> Result<u16, Malformed> {
        let (mut code, mut first, mut index) = (0i32, 0i32, 0i32);
        for &count in &self.count[1..] {
            code |= input.take(1)? as i32;
            let count = i32::from(count);
            if code - first < count {
                let at = (index + code - first) as usize;
                return self.symbols.get(at).copied().ok_or(Malformed("bad code"));
            }
            index += count;
            first = (first + count) << 1;
            code <<= 1;
        }
        Err(Malformed("a code the block's tables do not have"))
    }
}

const LENGTH_BASE: [u16; 29] = [
    3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131,
    163, 195, 227, 258,
];
const LENGTH_EXTRA: [u8; 29] = [
    0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0,
];
const DIST_BASE: [u16; 30] = [
    1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537,
    2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577,
];
const DIST_EXTRA: [u8; 30] = [
    0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13,
    13,
];

/// A block of literals and back-references, up to its end-of-block code.
fn codes(
    input: &mut Bits,
    out: &mut Vec<u8>,
    lengths: &Huffman,
    dists: &Huffman,
) -> Result<(), Malformed> {
    loop {
        let symbol = usize::from(lengths.decode(input)?);
        match symbol {
            0..=255 => out.push(symbol as u8),
            256 => return Ok(()),
            _ => {
                let at = symbol - 257;
                let (base, extra) = LENGTH_BASE
                    .get(at)
                    .zip(LENGTH_EXTRA.get(at))
                    .ok_or(Malformed("bad length code"))?;
                let len = usize::from(*base) + input.take(u32::from(*extra))? as usize;
                let at = usize::from(dists.decode(input)?);
                let (base, extra) = DIST_BASE
                    .get(at)
                    .zip(DIST_EXTRA.get(at))
                    .ok_or(Malformed("bad distance code"))?;
                let dist = usize::from(*base) + input.take(u32::from(*extra))? as usize;
                if dist > out.len() {
                    return Err(Malformed("distance back past the start"));
                }
                // Byte by byte: a copy may overlap what it writes (dist < len repeats a run).
                let from = out.len() - dist;
                for i in 0..len {
                    out.push(out[from + i]);
                }
            }
        }
    }
}

/// The code tables a dynamic block sends before its data, themselves Huffman-coded.
fn dynamic_tables(input: &mut Bits) -> Result<(Huffman, Huffman), Malformed> {
    const ORDER: [usize; 19] = [
        16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15,
    ];
    let length_codes = input.take(5)? as usize + 257;
    let dist_codes = input.take(5)? as usize + 1;
    let code_codes = input.take(4)? as usize + 4;
    if length_codes > 286 || dist_codes > 30 {
        return Err(Malformed("too many length or distance codes"));
    }
    let mut code_lengths = [0u8; 19];
    for &at in &ORDER[..code_codes] {
        code_lengths[at] = input.take(3)? as u8;
    }
    let code_code = Huffman::from_lengths(&code_lengths)?;
    let mut lengths = vec![0u8; length_codes + dist_codes];
    let mut at = 0;
    while at < lengths.len() {
        let symbol = code_code.decode(input)?;
        let (value, repeat) = match symbol {
            0..=15 => (symbol as u8, 1),
            16 => {
                let previous = *lengths[..at]
                    .last()
                    .ok_or(Malformed("a repeat with nothing before it"))?;
                (previous, 3 + input.take(2)? as usize)
            }
            17 => (0, 3 + input.take(3)? as usize),
            _ => (0, 11 + input.take(7)? as usize),
        };
        let run = lengths
            .get_mut(at..at + repeat)
            .ok_or(Malformed("code lengths run past the tables"))?;
        run.fill(value);
        at += repeat;
    }
    if lengths[256] == 0 {
        return Err(Malformed("no end-of-block code"));
    }
    let (literal_lengths, dist_lengths) = lengths.split_at(length_codes);
    Ok((
        Huffman::from_lengths(literal_lengths)?,
        Huffman::from_lengths(dist_lengths)?,
    ))
}

/// CRC-32 (IEEE, reflected), a bit at a time: this runs only for the rare client that asks
/// for no gzip, and a table would cost a kilobyte of binary.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = (crc >> 1) ^ (0xEDB8_8320 & (crc & 1).wrapping_neg());
        }
    }
    !crc
}

/// Whether an `Accept-Encoding` value (RFC 9110 §12.5.3) accepts gzip: named as `gzip` (or the
/// old `x-gzip`), or covered by `*`, with a weight above zero. No header at all means no
/// preference; tend then sends the plain bytes, which every client can read.
pub fn accepted(accept_encoding: Option<&str>) -> bool {
    let Some(value) = accept_encoding else {
        return false;
    };
    let mut named = None;
    let mut any = None;
    for item in value.split(',') {
        let mut parts = item.split(';');
        let coding = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let weight = parts
            .filter_map(|p| p.trim().strip_prefix("q=").or(p.trim().strip_prefix("Q=")))
            .filter_map(|q| q.trim().parse::<f32>().ok())
            .next_back()
            .unwrap_or(1.0);
        match coding.as_str() {
            "gzip" | "x-gzip" => named = Some(weight > 0.0),
            "*" => any = Some(weight > 0.0),
            _ => {}
        }
    }
    named.or(any).unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// zlib with Z_FIXED (fixed Huffman codes and back-references), made with Python's zlib.
    const FIXED: &[u8] = &[
        0x1f, 0x8b, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x03, 0x2b, 0x49, 0xcd, 0x4b, 0x51,
        0x28, 0x81, 0x11, 0x56, 0x0a, 0x89, 0x0a, 0x25, 0x99, 0x79, 0x95, 0x0a, 0x05, 0x45, 0xf9,
        0xc9, 0xa9, 0xc5, 0xc5, 0x0a, 0xc5, 0xa5, 0x05, 0xa9, 0x45, 0x65, 0x99, 0xc5, 0xf9, 0x45,
        0x3a, 0x08, 0x55, 0x7a, 0x00, 0x02, 0x69, 0x7a, 0xdf, 0x35, 0x00, 0x00, 0x00,
    ];
    /// zlib at level 0: one stored block.
    const STORED: &[u8] = &[
        0x1f, 0x8b, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04, 0x03, 0x01, 0x0c, 0x00, 0xf3, 0xff,
        0x73, 0x74, 0x6f, 0x72, 0x65, 0x64, 0x20, 0x62, 0x79, 0x74, 0x65, 0x73, 0x78, 0x77, 0xa6,
        0x0f, 0x0c, 0x00, 0x00, 0x00,
    ];
    const EMPTY: &[u8] = &[
        0x1f, 0x8b, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x03, 0x03, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00,
    ];

    #[test]
    fn fixed_stored_and_empty_streams_decode() {
        assert_eq!(
            decode(FIXED).unwrap(),
            b"tend tend tend: a tiny process supervisor, tend tend."
        );
        assert_eq!(decode(STORED).unwrap(), b"stored bytes");
        assert_eq!(decode(EMPTY).unwrap(), b"");
    }

    /// Dynamic blocks at every level, from the system's gzip, with a file name in the header.
    #[test]
    fn what_gzip_writes_decodes_at_every_level() {
        let dir = crate::test_support::TempDir::new("gzip");
        let text: Vec<u8> = (0..40_000u32)
            .flat_map(|i| format!("line {} of {}\n", i % 977, i * 7919 % 65_521).into_bytes())
            .collect();
        let file = dir.path().join("sample.txt");
        std::fs::write(&file, &text).unwrap();
        for level in ["-1", "-6", "-9"] {
            let packed = dir.path().join(format!("sample{level}.gz"));
            let mut gzip = crate::os::spawn::SessionCommand::new("gzip", 0);
            gzip.args([level, "-c"]).arg(&file);
            gzip.stdout(std::fs::File::create(&packed).unwrap());
            let child = gzip.spawn(|_| ()).expect("gzip runs");
            let status = crate::test_support::reap_child(child.pid, false);
            assert_eq!(status, 0, "gzip {level}");
            let out = std::fs::read(&packed).unwrap();
            assert_eq!(decode(&out).unwrap(), text, "gzip {level}");
        }
    }

    #[test]
    fn broken_streams_are_errors_not_panics() {
        assert!(decode(b"").is_err());
        assert!(decode(b"\x1f\x8b\x08").is_err());
        for cut in 0..FIXED.len() {
            assert!(decode(&FIXED[..cut]).is_err(), "cut at {cut}");
        }
        let mut seed = 0x2545_f491_u32;
        for _ in 0..20_000 {
            let mut bytes = FIXED.to_vec();
            for _ in 0..3 {
                seed ^= seed << 13;
                seed ^= seed >> 17;
                seed ^= seed << 5;
                let at = 10 + seed as usize % (bytes.len() - 10);
                bytes[at] ^= 1 << (seed >> 29);
            }
            // An error, or rarely a stream that still checks out; what is tested is that it
            // returns (a panic fails the test here, and would end tend).
            let _ = decode(&bytes);
        }
    }

    #[test]
    fn a_wrong_checksum_or_length_is_named() {
        let mut bytes = STORED.to_vec();
        let n = bytes.len();
        bytes[n - 8] ^= 1;
        assert_eq!(decode(&bytes), Err(Malformed("CRC-32 does not match")));
        let mut bytes = STORED.to_vec();
        bytes[n - 4] ^= 1;
        assert_eq!(decode(&bytes), Err(Malformed("length does not match")));
    }

    #[test]
    fn accept_encoding_is_read_with_its_weights() {
        assert!(accepted(Some("gzip, deflate, br, zstd")));
        assert!(accepted(Some("br;q=1.0, GZIP;q=0.5")));
        assert!(accepted(Some("*")));
        assert!(accepted(Some("x-gzip")));
        assert!(!accepted(None));
        assert!(!accepted(Some("")));
        assert!(!accepted(Some("identity")));
        assert!(!accepted(Some("br, deflate")));
        assert!(!accepted(Some("gzip;q=0")));
        assert!(!accepted(Some("gzip;q=0.000, *")));
        assert!(!accepted(Some("*;q=0")));
    }
}
