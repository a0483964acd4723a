//! Messages that cannot be read or classified: empty, without a header block, too large to be a
//! failure notice, a DMARC aggregate report that cannot be read, or one the classifier panics on. Such a message is set aside (the mailbox
//! moves it into its `Unreadable` folder, and the store records it for `gazette status`) instead
//! of stopping the round, or every round after it, at one message.

use std::cell::{Cell, RefCell};
use std::io::Read;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

use mail_parser::MessageParser;

use super::{Report, classify};
use crate::store::{Store, StoreError};

/// The folder of the mailbox that unreadable messages are moved into (in a maildir, its
/// Maildir++ sub-folder `.Unreadable`).
pub const FOLDER: &str = "Unreadable";

/// The largest message read. Failure notices and complaints are a few KB (with `RET=HDRS`, only
/// the headers of the newsletter come back), so anything near this is something else, and
/// reading it would only cost memory and time.
pub const MAX_MESSAGE_BYTES: u64 = 10 * 1024 * 1024;

/// Why a message cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unreadable {
    #[error("it is empty")]
    Empty,
    #[error("it has no header block, so it is not an email message")]
    NoHeaders,
    #[error("it is {:.1} MB, over the {} MB that a failure notice or complaint can be; it was not read", megabytes(*size), MAX_MESSAGE_BYTES >> 20)]
    TooLarge { size: u64 },
    #[error("cannot read it: {0}")]
    Io(String),
    /// A DMARC aggregate report (`crate::dmarc`) that cannot be read: why.
    #[error("{0}")]
    Report(String),
    #[error("reading it made Gazette panic ({message}{}); this is a bug in Gazette: please report it, with the message if you may share it", place.as_deref().map(|p| format!(", at {p}")).unwrap_or_default())]
    Panicked { message: String, place: Option<String> },
}

fn megabytes(size: u64) -> f64 {
    size as f64 / (1024.0 * 1024.0)
}

/// `Err(TooLarge)` for a message of `size` bytes over the limit: checked before it is read or
/// fetched, so a huge message is never downloaded.
pub fn check_size(size: u64) -> Result<(), Unreadable> {
    if size > MAX_MESSAGE_BYTES { Err(Unreadable::TooLarge { size }) } else { Ok(()) }
}

/// One message file, read whole unless it is over the limit. `Ok(None)` when it is gone (another
/// reader of the mailbox moved it meanwhile).
pub fn read_file(path: &Path) -> Result<Option<Vec<u8>>, Unreadable> {
    let io = |e: std::io::Error| Unreadable::Io(e.to_string());
    let file = match std::fs::File::open(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        other => other.map_err(io)?,
    };
    check_size(file.metadata().map_err(io)?.len())?;
    let mut bytes = Vec::new();
    // At most one byte past the limit, should the file have grown since.
    file.take(MAX_MESSAGE_BYTES + 1).read_to_end(&mut bytes).map_err(io)?;
    check_size(bytes.len() as u64)?;
    Ok(Some(bytes))
}

/// What a message readable is: a failure notice or complaint (or a message to ignore), classified,
/// or a DMARC aggregate report.
#[derive(Debug)]
pub enum Readable {
    Notice(Report),
    Aggregate(crate::dmarc::AggregateReport),
}

/// Reads one message (or a bare report file) as a DMARC aggregate report when it is one, else
/// classifies it (as `read`); or says why it cannot be read. A report that cannot be read is
/// `Unreadable::Report`, never a notice.
pub fn read_any(bytes: &[u8], bounce_address: Option<&lettre::Address>) -> Result<Readable, Unreadable> {
    check_size(bytes.len() as u64)?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(Unreadable::Empty);
    }
    let found = catching_panics(|| Ok(crate::dmarc::read(bytes)))?;
    match found {
        crate::dmarc::Found::Report(report) => Ok(Readable::Aggregate(report)),
        crate::dmarc::Found::Malformed(why) => Err(Unreadable::Report(why)),
        crate::dmarc::Found::NotAReport => read(bytes, bounce_address).map(Readable::Notice),
    }
}

/// Classifies one message (as `classify`), or says why it cannot be read. A panic in the
/// classifier is caught here and becomes `Panicked`: the last line of defence, so that a bug
/// shows as one message set aside rather than as a scheduler that stops at it every round.
pub fn read(bytes: &[u8], bounce_address: Option<&lettre::Address>) -> Result<Report, Unreadable> {
    check_size(bytes.len() as u64)?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(Unreadable::Empty);
    }
    catching_panics(|| {
        if !has_header_block(bytes) {
            return Err(Unreadable::NoHeaders);
        }
        #[cfg(debug_assertions)]
        panic_if_asked(bytes);
        Ok(classify(bytes, bounce_address))
    })
}

/// Whether `bytes` start with at least one header field that has a name. mail_parser takes any
/// line as a header (a line of binary junk becomes a field with that name and no value), so a
/// name of printable ASCII without spaces (RFC 5322 §3.6.8) is asked for too.
fn has_header_block(bytes: &[u8]) -> bool {
    // Some notices arrive with empty lines before their headers; the classifier skips them too.
    let Some(message) = MessageParser::default().parse_headers(bytes.trim_ascii_start()) else { return false };
    message.headers().iter().any(|h| {
        let name = h.name.as_str();
        !name.is_empty() && name.bytes().all(|b| b.is_ascii_graphic() && b != b':')
    })
}

/// Logs a message set aside (at warn level, with its name and why) and records it for
/// `gazette status`. `bytes` are the message when it was read whole.
pub async fn record(store: &Store, source: &str, why: &Unreadable, bytes: Option<&[u8]>) -> Result<(), StoreError> {
    tracing::warn!("{source}: moved to the {FOLDER} folder: {why}");
    record_quietly(store, source, why, bytes).await
}

/// Records a message set aside that no mailbox holds (`gazette bounces import` names it itself),
/// so that `gazette status` counts it as it counts the mailbox's.
pub async fn record_quietly(
    store: &Store,
    source: &str,
    why: &Unreadable,
    bytes: Option<&[u8]>,
) -> Result<(), StoreError> {
    store.record_unreadable(source, &why.to_string(), bytes.map(super::message_key).as_deref()).await
}

/// The test hook of debug builds: a message with the header `X-Gazette-Test: panic` makes the
/// classification panic, so that tests can show a classifier bug is caught (the classifier itself
/// is not meant to panic on anything). Release builds do not have it.
#[cfg(debug_assertions)]
fn panic_if_asked(bytes: &[u8]) {
    let asked = MessageParser::default()
        .parse_headers(bytes)
        .and_then(|m| {
            m.header("X-Gazette-Test").and_then(|v| v.as_text()).map(|v| v.trim().eq_ignore_ascii_case("panic"))
        })
        .unwrap_or(false);
    if asked {
        panic!("X-Gazette-Test: panic, the test hook of debug builds");
    }
}

thread_local! {
    /// Set while this thread runs `catching_panics`: the panic hook then keeps quiet.
    static CATCHING: Cell<bool> = const { Cell::new(false) };
    /// Where the panic caught last on this thread happened (`file:line`), from the panic hook.
    static PLACE: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// `f`, with a panic in it turned into `Unreadable::Panicked`. The default panic hook would print
/// "thread panicked at ..." to standard error for a panic that is caught and logged anyway; a
/// hook that stays quiet on this thread while `f` runs (and keeps the panic's place for the log)
/// is installed once, in front of it, for every other panic.
fn catching_panics<T>(f: impl FnOnce() -> Result<T, Unreadable>) -> Result<T, Unreadable> {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            // try_with: a panic while the thread's locals are torn down must still be reported.
            if CATCHING.try_with(Cell::get).unwrap_or(false) {
                let place = info.location().map(|l| format!("{}:{}", l.file(), l.line()));
                let _ = PLACE.try_with(|p| p.replace(place));
            } else {
                previous(info);
            }
        }));
    });
    let was = CATCHING.replace(true);
    // AssertUnwindSafe: `f` only reads the message; nothing it leaves half-done is looked at again.
    let result = catch_unwind(AssertUnwindSafe(f));
    CATCHING.set(was);
    result.unwrap_or_else(|payload| {
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic without a message".to_string());
        Err(Unreadable::Panicked { message, place: PLACE.take() })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOUNCE: &[u8] = b"From: MAILER-DAEMON@relay.example.net\r\nSubject: Undelivered Mail\r\n\r\nbody\r\n";

    #[test]
    fn empty_headerless_and_oversized_messages_are_unreadable_and_a_message_is_not() {
        assert_eq!(read(b"", None), Err(Unreadable::Empty));
        assert_eq!(read(b" \r\n\r\n", None), Err(Unreadable::Empty));
        assert_eq!(read(b"\r\n\r\njust a body after an empty header block\r\n", None), Err(Unreadable::NoHeaders));
        assert_eq!(read(&[0u8, 159, 146, 150, 255, 0, 1], None), Err(Unreadable::NoHeaders));
        assert_eq!(read(b"\xff\xfe junk: 1\nplain text, no header\n", None), Err(Unreadable::NoHeaders));
        assert_eq!(read(b"plain text\nand more\n", None), Err(Unreadable::NoHeaders));
        let big = vec![b'a'; MAX_MESSAGE_BYTES as usize + 1];
        assert_eq!(read(&big, None), Err(Unreadable::TooLarge { size: MAX_MESSAGE_BYTES + 1 }));
        assert_eq!(check_size(MAX_MESSAGE_BYTES), Ok(()));
        assert!(read(BOUNCE, None).is_ok());
        assert!(read(b"Subject: headers only, no body", None).is_ok());
        let text = Unreadable::TooLarge { size: 20 * 1024 * 1024 }.to_string();
        assert!(text.contains("20.0 MB, over the 10 MB"), "{text}");
    }

    #[cfg(debug_assertions)]
    #[test]
    fn a_panic_in_the_classifier_is_caught_and_named() {
        let message = b"From: someone@example.org\r\nX-Gazette-Test: panic\r\nSubject: x\r\n\r\nbody\r\n";
        let Err(Unreadable::Panicked { message, place }) = read(message, None) else {
            panic!("the test hook did not panic")
        };
        assert!(message.contains("X-Gazette-Test"), "{message}");
        assert!(place.as_deref().is_some_and(|p| p.starts_with("src/bounces/unreadable.rs:")), "{place:?}");
        // The next message on the same thread is read as usual, and a panic elsewhere still panics.
        assert!(read(BOUNCE, None).is_ok());
        assert!(std::thread::spawn(|| panic!("an ordinary panic")).join().is_err());
    }

    #[test]
    fn files_over_the_limit_are_not_read_and_a_missing_file_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big");
        std::fs::File::create(&big).unwrap().set_len(MAX_MESSAGE_BYTES + 1).unwrap();
        assert_eq!(read_file(&big), Err(Unreadable::TooLarge { size: MAX_MESSAGE_BYTES + 1 }));
        std::fs::write(dir.path().join("small"), BOUNCE).unwrap();
        assert_eq!(read_file(&dir.path().join("small")), Ok(Some(BOUNCE.to_vec())));
        assert_eq!(read_file(&dir.path().join("gone")), Ok(None));
        assert!(matches!(read_file(dir.path()), Err(Unreadable::Io(_))), "a folder is not a message");
    }
}
