//! The case generator and runner of `tests/hostile_input.rs`: a small deterministic mutator over
//! `rand` (no property-testing crate in the build), one generator per case so that any case can
//! be replayed alone, and a runner that catches each case's panic and reports the input.

use std::cell::{Cell, RefCell};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

/// Cases per parser when `GAZETTE_PROPERTY_CASES` is not set (never fewer than its seeds): the
/// whole file runs in about 20 s in a debug build on a 2-core machine (BENCHMARKS.md).
pub const DEFAULT_CASES: u64 = 2000;
const DEFAULT_SEED: u64 = 0x6A2E_7E27;

/// One real input that cases are made from.
pub struct Seed {
    pub name: String,
    pub bytes: Vec<u8>,
}

impl Seed {
    pub fn new(name: &str, bytes: Vec<u8>) -> Seed {
        Seed { name: name.to_string(), bytes }
    }

    pub fn from_file(path: &Path) -> Seed {
        let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        Seed::new(&path.file_name().unwrap().to_string_lossy(), bytes)
    }
}

/// One case, as the check sees it: its seed, and a generator of its own for any further choice
/// (so that replaying the case makes the same ones).
pub struct Case<'a> {
    pub seed: &'a Seed,
    /// The input is the seed as it is.
    pub unchanged: bool,
    pub rng: StdRng,
}

fn env_u64(name: &str) -> Option<u64> {
    let value = std::env::var(name).ok()?;
    let value = value.trim();
    let parsed = match value.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => value.parse(),
    };
    Some(parsed.unwrap_or_else(|_| panic!("{name}={value} is not a number")))
}

thread_local! {
    /// Set while a case runs on this thread: its panic is recorded here instead of printed.
    static IN_CASE: Cell<bool> = const { Cell::new(false) };
    static CAUGHT: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// A panic hook that keeps a case's panic (message and place) for the report, and leaves every
/// other panic (the test's own assertions, other threads) to the default hook.
fn record_case_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if IN_CASE.get() {
                CAUGHT.set(Some(info.to_string()));
            } else {
                default(info);
            }
        }));
    });
}

struct Failure {
    number: u64,
    seed: String,
    how: String,
    what: String,
    saved: PathBuf,
    preview: String,
}

/// What became of the cases that passed, by the outcome their check named ("parsed",
/// "refused", ...).
pub struct Outcomes {
    counts: std::collections::BTreeMap<&'static str, u64>,
    /// One case replayed (`GAZETTE_PROPERTY_CASE`): it cannot reach every outcome.
    replay: bool,
}

impl Outcomes {
    /// Fails unless some case had each of `wanted`: cases that all end the same way (every
    /// input refused at its first byte, say) would leave the parser's other paths untested.
    pub fn reached(&self, wanted: &[&str]) {
        let missing: Vec<&&str> = wanted.iter().filter(|w| !self.counts.contains_key(**w)).collect();
        assert!(self.replay || missing.is_empty(), "no case ended as {missing:?}: {:?}", self.counts);
    }
}

/// Runs `check` on the cases of `parser`: first every seed as it is, then mutated seeds and
/// random bytes. A case fails when `check` panics or returns why its property does not hold;
/// otherwise it names its outcome. Every failure is saved and reported together at the end.
pub fn run_cases(
    parser: &str,
    seeds: &[Seed],
    mut check: impl FnMut(&[u8], &mut Case) -> Result<&'static str, String>,
) -> Outcomes {
    record_case_panics();
    let cases = env_u64("GAZETTE_PROPERTY_CASES").unwrap_or(DEFAULT_CASES);
    let base = env_u64("GAZETTE_PROPERTY_SEED").unwrap_or(DEFAULT_SEED);
    let only = env_u64("GAZETTE_PROPERTY_CASE");
    let saved_in = Path::new(env!("CARGO_TARGET_TMPDIR")).join("hostile-input").join(parser);
    let _ = std::fs::remove_dir_all(&saved_in);

    let started = Instant::now();
    let mut failures: Vec<Failure> = Vec::new();
    let mut outcomes = std::collections::BTreeMap::new();
    let mut slowest = (Duration::ZERO, 0u64);
    let numbers: Vec<u64> = match only {
        Some(n) => vec![n],
        None => (0..cases.max(seeds.len() as u64)).collect(),
    };
    for &number in &numbers {
        let at = Instant::now();
        let mut rng = StdRng::seed_from_u64(base ^ fnv(parser.as_bytes()) ^ number.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let (seed, input, how) = make_case(number, seeds, &mut rng);
        if only.is_some() {
            // A case replayed alone is kept, to look at or to time outside the test.
            std::fs::create_dir_all(&saved_in).unwrap();
            std::fs::write(saved_in.join(format!("case-{number}.bin")), &input).unwrap();
        }
        let mut case = Case { seed, unchanged: (number as usize) < seeds.len(), rng };
        IN_CASE.set(true);
        let outcome = catch_unwind(AssertUnwindSafe(|| check(&input, &mut case)));
        IN_CASE.set(false);
        slowest = slowest.max((at.elapsed(), number));
        let what = match outcome {
            Ok(Ok(outcome)) => {
                *outcomes.entry(outcome).or_default() += 1;
                continue;
            }
            Ok(Err(why)) => format!("property broken: {why}"),
            Err(_) => CAUGHT.take().unwrap_or_else(|| "panicked".into()),
        };
        std::fs::create_dir_all(&saved_in).unwrap();
        let saved = saved_in.join(format!("case-{number}.bin"));
        std::fs::write(&saved, &input).unwrap();
        let preview =
            input.iter().take(400).flat_map(|b| std::ascii::escape_default(*b)).map(char::from).collect::<String>();
        failures.push(Failure { number, seed: seed.name.clone(), how, what, saved, preview });
    }

    eprintln!(
        "{parser}: {} cases from {} seeds (seed {base:#x}) in {:.1} s, {} failed, {outcomes:?}; the slowest, case {}, took {} ms",
        numbers.len(),
        seeds.len(),
        started.elapsed().as_secs_f64(),
        failures.len(),
        slowest.1,
        slowest.0.as_millis()
    );
    if failures.is_empty() {
        return Outcomes { counts: outcomes, replay: only.is_some() };
    }
    let mut report = format!("{parser}: {} of {} cases failed (seed {base:#x}):\n", failures.len(), numbers.len());
    // The distinct failures: where each panic was (or which property broke), with its seeds.
    let kind = |f: &Failure| f.what.lines().next().unwrap_or("").to_string();
    let mut kinds: std::collections::BTreeMap<String, (usize, std::collections::BTreeSet<&str>)> = Default::default();
    for f in &failures {
        let k = kinds.entry(kind(f)).or_default();
        k.0 += 1;
        k.1.insert(&f.seed);
    }
    // The first twelve failures, and the first of every other kind.
    let mut shown = std::collections::BTreeSet::new();
    for (i, f) in failures.iter().enumerate() {
        if !shown.insert(kind(f)) && i >= 12 {
            continue;
        }
        report += &format!(
            "\ncase {} (from {}, {}): {}\n  input ({} bytes) saved as {}; it begins: b\"{}\"\n  replay: GAZETTE_PROPERTY_SEED={base:#x} GAZETTE_PROPERTY_CASE={} cargo test --test hostile_input {parser}\n",
            f.number,
            f.seed,
            f.how,
            f.what.trim_end(),
            std::fs::metadata(&f.saved).map_or(0, |m| m.len()),
            f.saved.display(),
            f.preview,
            f.number
        );
    }
    report += &format!("\nall {} saved in {}\n", failures.len(), saved_in.display());
    report += "\nby kind:\n";
    for (what, (count, seeds)) in &kinds {
        report += &format!("  {count} x {what} (from {})\n", seeds.iter().copied().collect::<Vec<_>>().join(", "));
    }
    panic!("{report}");
}

/// FNV-1a: a parser's name made into part of its cases' seed, the same on every platform.
fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3))
}

/// Case `number`: a seed as it is (the first cases), random bytes (one case in twenty), or a
/// seed with one to four mutations. Returns the seed, the input and what was done to it.
fn make_case<'a>(number: u64, seeds: &'a [Seed], rng: &mut StdRng) -> (&'a Seed, Vec<u8>, String) {
    if (number as usize) < seeds.len() {
        let seed = &seeds[number as usize];
        return (seed, seed.bytes.clone(), "as it is".into());
    }
    let seed = &seeds[rng.random_range(0..seeds.len())];
    if rng.random_ratio(1, 20) {
        return (seed, random_bytes(rng), "random bytes".into());
    }
    let mut input = seed.bytes.clone();
    let mut how = Vec::new();
    for _ in 0..*[1, 1, 1, 2, 2, 3, 4].get(rng.random_range(0..7)).unwrap() {
        let other = &seeds[rng.random_range(0..seeds.len())].bytes;
        how.push(mutate(&mut input, other, rng));
        if input.len() > MAX_INPUT {
            input.truncate(MAX_INPUT);
            how.push(format!("cut at byte {MAX_INPUT}"));
        }
    }
    (seed, input, how.join(", then "))
}

/// The most one mutation adds by repeating (a megabyte), and the largest input (four): enough
/// for any quadratic walk to show, small enough for thousands of cases.
const MAX_GROWTH: usize = 1 << 20;
const MAX_INPUT: usize = 4 << 20;

fn random_bytes(rng: &mut StdRng) -> Vec<u8> {
    let len = rng.random_range(0..4096);
    match rng.random_range(0..3) {
        // Printable ASCII and line breaks: gets further into text parsers than noise does.
        0 => {
            let alphabet = b" \n\r\t:;,.|#_*[]()<>=&%@\"abcdefxyzABC0129From";
            (0..len).map(|_| alphabet[rng.random_range(0..alphabet.len())]).collect()
        }
        // Pieces of interesting bytes.
        1 => {
            let mut out = Vec::new();
            while out.len() < len {
                out.extend_from_slice(SPICE[rng.random_range(0..SPICE.len())]);
            }
            out
        }
        _ => (0..len).map(|_| rng.random()).collect(),
    }
}

/// Bytes that mean something to one of the formats read (separators, quoting, markup, escapes),
/// controls, and UTF-8 that is multi-byte, astral, a BOM, a noncharacter or broken.
const SPICE: &[&[u8]] = &[
    b"\0",
    b"\xff",
    b"\xfe",
    b"\r",
    b"\n",
    b"\r\n",
    b"\n\n",
    b"\t",
    b" ",
    b"|",
    b"\\|",
    b"\\",
    b"#",
    b"# __",
    b"## ",
    b"__",
    b"* ",
    b"[",
    b"](",
    b")",
    b".)",
    b"<",
    b">",
    b"</",
    b"<script>",
    b"=",
    b"&",
    b"%",
    b"%zz",
    b"%C3",
    b"%00",
    b"+",
    b"\"",
    b"\"\"",
    b"'",
    b",",
    b";",
    b"@",
    b":",
    b".",
    b"From ",
    b">From ",
    b"--",
    b"--boundary",
    b"=?utf-8?b?",
    b"=?iso-2022-jp?q?=1B",
    b"?=",
    b"=\r\n",
    b"{",
    b"}",
    b"\\u0000",
    b"\\ud800",
    b"Content-Type: multipart/report; boundary=x\r\n",
    b"5.1.1",
    b"550 ",
    b"Final-Recipient: rfc822;",
    b"\xc3\xa9",
    b"\xe2\x82\xac",
    b"\xf0\x9d\x84\x9e",
    b"\xef\xbb\xbf",
    b"\xef\xbf\xbe",
    b"\xef\xb7\x90",
    b"\xe2\x80\xa2",
    b"\xd0\xaf",
    b"\xe3\x81\x82",
    b"\xe2\x82",
    b"\xc3",
    b"\x80",
    b"\xbf",
    b"\xf4\x90\x80\x80",
    b"\xed\xa0\x80",
    b"\xc0\xaf",
    b"\x1b$B",
    b"\x7f",
];

/// Positions just after a line break (and 0): where lines start.
fn line_starts(data: &[u8]) -> Vec<usize> {
    std::iter::once(0).chain(data.iter().enumerate().filter(|(_, b)| **b == b'\n').map(|(i, _)| i + 1)).collect()
}

/// A random range of `data` (empty when `data` is), at most `max` bytes long.
fn chunk(data: &[u8], max: usize, rng: &mut StdRng) -> std::ops::Range<usize> {
    if data.is_empty() {
        return 0..0;
    }
    let start = rng.random_range(0..data.len());
    let len = rng.random_range(1..=max.min(data.len() - start));
    start..start + len
}

fn chunk_len(rng: &mut StdRng) -> usize {
    // Mostly small, sometimes a good part of a message.
    if rng.random_ratio(1, 4) { 4096 } else { 64 }
}

/// One mutation of `data`, with `other` (another seed) to take pieces from; says what it did.
fn mutate(data: &mut Vec<u8>, other: &[u8], rng: &mut StdRng) -> String {
    let len = data.len();
    match rng.random_range(0..17) {
        0 => {
            let at = rng.random_range(0..=len);
            data.truncate(at);
            format!("cut at byte {at}")
        }
        1 => {
            // Inside a multi-byte character: before one of its continuation bytes.
            let inside: Vec<usize> = (0..len).filter(|&i| data[i] & 0xC0 == 0x80).collect();
            match inside.get(rng.random_range(0..inside.len().max(1))) {
                Some(&at) => {
                    data.truncate(at);
                    format!("cut inside a character at byte {at}")
                }
                None => {
                    let at = rng.random_range(0..=len);
                    data.truncate(at);
                    format!("cut at byte {at} (no multi-byte character)")
                }
            }
        }
        2 => {
            let starts = line_starts(data);
            let at = (starts[rng.random_range(0..starts.len())] + rng.random_range(0..3)).saturating_sub(1).min(len);
            data.truncate(at);
            format!("cut at a line's end, byte {at}")
        }
        3 => {
            let n = rng.random_range(1..=8);
            for _ in 0..n.min(len) {
                let at = rng.random_range(0..len);
                data[at] ^= 1 << rng.random_range(0..8);
            }
            format!("{n} bits flipped")
        }
        4 => {
            let n = rng.random_range(1..=16);
            for _ in 0..n.min(len) {
                let at = rng.random_range(0..len);
                data[at] = rng.random();
            }
            format!("{n} bytes replaced")
        }
        5 => {
            let piece = SPICE[rng.random_range(0..SPICE.len())];
            let starts = line_starts(data);
            let at = if rng.random_bool(0.5) {
                starts[rng.random_range(0..starts.len())]
            } else {
                rng.random_range(0..=len)
            };
            let times = if rng.random_ratio(1, 8) { rng.random_range(2..200) } else { 1 };
            let bytes = piece.repeat(times);
            data.splice(at..at, bytes);
            format!("{times} x {:?} inserted at byte {at}", String::from_utf8_lossy(piece))
        }
        6 => {
            let at = rng.random_range(0..=len);
            let bytes: Vec<u8> = (0..rng.random_range(1..32)).map(|_| rng.random()).collect();
            let n = bytes.len();
            data.splice(at..at, bytes);
            format!("{n} random bytes inserted at byte {at}")
        }
        7 => {
            let r = chunk(data, chunk_len(rng), rng);
            let what = format!("bytes {r:?} deleted");
            data.drain(r);
            what
        }
        8 => {
            let r = chunk(data, chunk_len(rng), rng);
            let copy = data[r.clone()].to_vec();
            let at = if rng.random_bool(0.5) { r.end } else { rng.random_range(0..=len) };
            let times = if rng.random_ratio(1, 8) { rng.random_range(2..100) } else { 1 };
            data.splice(at..at, copy.repeat(times));
            format!("bytes {r:?} repeated {times} x at byte {at}")
        }
        9 => {
            let a = chunk(data, chunk_len(rng), rng);
            let b = chunk(data, chunk_len(rng), rng);
            if a.end <= b.start || b.end <= a.start {
                let (first, second) = if a.start < b.start { (a, b) } else { (b, a) };
                let mut out = data[..first.start].to_vec();
                out.extend_from_slice(&data[second.clone()]);
                out.extend_from_slice(&data[first.end..second.start]);
                out.extend_from_slice(&data[first.clone()]);
                out.extend_from_slice(&data[second.end..]);
                *data = out;
                format!("bytes {first:?} and {second:?} swapped")
            } else {
                data.reverse();
                "reversed".into()
            }
        }
        10 => match rng.random_range(0..4) {
            0 => {
                *data = replace(data, b"\n", b"\r\n");
                "LF made CRLF".into()
            }
            1 => {
                *data = replace(data, b"\r\n", b"\n");
                "CRLF made LF".into()
            }
            2 => {
                *data = replace(data, b"\n", b"\r");
                "line breaks made lone CRs".into()
            }
            _ => {
                // One line break made a lone CR (or, with none, a CR put anywhere).
                let breaks: Vec<usize> = (0..len).filter(|&i| data[i] == b'\n').collect();
                match breaks.get(rng.random_range(0..breaks.len().max(1))) {
                    Some(&at) => data[at] = b'\r',
                    None => data.insert(rng.random_range(0..=len), b'\r'),
                }
                "a lone CR".into()
            }
        },
        11 => {
            let text = String::from_utf8_lossy(data).into_owned();
            match rng.random_range(0..5) {
                0 => {
                    data.splice(0..0, *b"\xef\xbb\xbf");
                    "a UTF-8 BOM added".into()
                }
                1 => {
                    *data = text.chars().map(|c| if (c as u32) < 256 { c as u8 } else { b'?' }).collect();
                    "re-encoded as Latin-1".into()
                }
                n => {
                    let little = n != 3;
                    let mut out = if n == 4 {
                        Vec::new()
                    } else if little {
                        vec![0xFF, 0xFE]
                    } else {
                        vec![0xFE, 0xFF]
                    };
                    for unit in text.encode_utf16() {
                        out.extend_from_slice(&if little { unit.to_le_bytes() } else { unit.to_be_bytes() });
                    }
                    *data = out;
                    format!(
                        "re-encoded as UTF-16{}",
                        if n == 4 {
                            "LE without a BOM"
                        } else if little {
                            "LE"
                        } else {
                            "BE"
                        }
                    )
                }
            }
        }
        12 => {
            // A very long line: a run with no line break, of one piece or of the input's own bytes.
            let n = *[1_000, 10_000, 100_000].get(rng.random_range(0..3)).unwrap();
            let piece: Vec<u8> = if rng.random_bool(0.5) || len == 0 {
                SPICE[rng.random_range(0..SPICE.len())].iter().copied().filter(|b| *b != b'\n').collect()
            } else {
                data[chunk(data, 64, rng)].iter().copied().filter(|b| *b != b'\n').collect()
            };
            let piece = if piece.is_empty() { b"x".to_vec() } else { piece };
            let run: Vec<u8> = piece.iter().copied().cycle().take(n).collect();
            let at = rng.random_range(0..=len);
            data.splice(at..at, run);
            format!("a {n}-byte line inserted at byte {at}")
        }
        13 => {
            let r = chunk(other, chunk_len(rng), rng);
            let at = rng.random_range(0..=len);
            data.splice(at..at, other[r.clone()].iter().copied());
            format!("bytes {r:?} of another seed inserted at byte {at}")
        }
        14 => {
            // Many lines: one line of the input repeated (rows, bullets, headers, parts).
            let starts = line_starts(data);
            let i = rng.random_range(0..starts.len());
            let end = starts.get(i + 1).copied().unwrap_or(len);
            let line = data[starts[i]..end].to_vec();
            let times = *[10, 1_000, 10_000].get(rng.random_range(0..3)).unwrap();
            let line = if line.ends_with(b"\n") { line } else { [line, b"\n".to_vec()].concat() };
            let many: Vec<u8> = std::iter::repeat_n(&line, times).flatten().copied().take(MAX_GROWTH).collect();
            data.splice(end..end, many);
            format!("line {} repeated {times} x", i + 1)
        }
        15 => {
            let n = rng.random_range(1..=8).min(len);
            let at = rng.random_range(0..=len - n);
            data.drain(at..at + n);
            format!("{n} bytes deleted at byte {at}")
        }
        _ => {
            // Lower or upper case: header names, statuses, keywords.
            let r = chunk(data, 256, rng);
            let upper = rng.random_bool(0.5);
            for b in &mut data[r.clone()] {
                *b = if upper { b.to_ascii_uppercase() } else { b.to_ascii_lowercase() };
            }
            format!("bytes {r:?} {}-cased", if upper { "upper" } else { "lower" })
        }
    }
}

fn replace(data: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + data.len() / 16);
    let mut i = 0;
    while i < data.len() {
        if data[i..].starts_with(from) {
            out.extend_from_slice(to);
            i += from.len();
        } else {
            out.push(data[i]);
            i += 1;
        }
    }
    out
}
