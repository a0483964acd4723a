//! DKIM signatures (RFC 6376, relaxed/relaxed) over a message as it goes on the wire, with
//! `aws-lc-rs` (AWS-LC, the assembly OpenSSL's RSA runs on, and what mail-auth signs with):
//! RSA-SHA256, Ed25519-SHA256 (RFC 8463), or both on each message when both keys are given.
//!
//! The body hash is computed once per message and shared by its signatures; the signature headers
//! are put on top of the bytes the one-pass writer made, which are not touched otherwise.

use std::path::Path;
use std::sync::LazyLock;

use aws_lc_rs::digest::{Context, SHA256};
use aws_lc_rs::signature::{Ed25519KeyPair, RsaKeyPair};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use memchr::memmem::Finder;

use crate::config;

/// The headers the DKIM signature covers (RFC 6376 §5.4), each listed once in `h=`. A verifier
/// hashes the last header of a listed name, or nothing when there is none (§5.4.2): an absent
/// header is signed too, so one added in transit breaks the signature.
pub const SIGNED_HEADERS: [&str; 11] = [
    // Who it is from and to, and what it is: what the reader sees and DMARC aligns on.
    "From",
    "To",
    "Subject",
    "Date",
    // A resend carries the same Message-ID; a changed one would make it another message.
    "Message-ID",
    // Absent unless configured: signed either way, so replies cannot be redirected in transit.
    "Reply-To",
    // How the body is read: an altered Content-Type (another boundary or charset) changes what is shown.
    "MIME-Version",
    "Content-Type",
    // The list and its one-click unsubscribe (RFC 8058 §4 requires these two to be signed).
    "List-Id",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
];

/// The keys of `[dkim]`, read once: everything a copy's signatures need.
pub struct Signer {
    domain: String,
    keys: Vec<(String, Key)>,
}

enum Key {
    Rsa(RsaKeyPair),
    /// An RSA key AWS-LC does not sign with (under 2048 bits), signed with the `rsa` crate.
    SmallRsa(Box<rsa::RsaPrivateKey>),
    Ed25519(Ed25519KeyPair),
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let selectors: Vec<&str> = self.keys.iter().map(|(s, _)| s.as_str()).collect();
        write!(f, "Signer {{ domain: {:?}, selectors: {selectors:?} }}", self.domain)
    }
}

/// Reads the keys of `[dkim]`: `private_key` (RSA PEM or Ed25519 base64) and, when given,
/// `ed25519_key`. Errors name the key and the file, and say which formats are read.
pub fn load(d: &config::Dkim) -> anyhow::Result<Signer> {
    let mut keys = vec![(d.selector.clone(), read_key(&d.private_key, "private_key", true)?)];
    if let Some((selector, path)) = &d.ed25519 {
        keys.push((selector.clone(), read_key(path, "ed25519_key", false)?));
    }
    Ok(Signer { domain: d.domain.clone(), keys })
}

fn read_key(path: &Path, name: &str, rsa_too: bool) -> anyhow::Result<Key> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("[dkim] {name}: cannot read {}: {e}", path.display()))?;
    parse_key(&text, rsa_too).map_err(|e| {
        let formats = if rsa_too {
            "use an RSA key in PKCS#1 PEM (`openssl genrsa -traditional -out dkim.pem 2048`) or an Ed25519 key as \
             base64 of its 32 bytes"
        } else {
            "use an Ed25519 key as base64 of its 32 bytes"
        };
        anyhow::anyhow!("[dkim] {name}: {} is not a usable key ({e}); {formats}", path.display())
    })
}

/// An RSA key in PEM (PKCS#1 `RSA PRIVATE KEY` or PKCS#8 `PRIVATE KEY`), or an Ed25519 key as the
/// base64 of its 32-byte seed.
fn parse_key(text: &str, rsa_too: bool) -> Result<Key, String> {
    let text = text.trim();
    if rsa_too && text.contains("-----BEGIN") {
        let pkcs1 = text.contains("-----BEGIN RSA PRIVATE KEY-----");
        let b64: String = text.lines().filter(|l| !l.starts_with("-----")).map(str::trim).collect();
        let der = BASE64.decode(b64).map_err(|e| format!("the PEM is not base64: {e}"))?;
        let ring = if pkcs1 { RsaKeyPair::from_der(&der) } else { RsaKeyPair::from_pkcs8(&der) };
        return match ring {
            Ok(key) => Ok(Key::Rsa(key)),
            Err(e) if pkcs1 && e.to_string() == "TooSmall" => {
                use rsa::pkcs1::DecodeRsaPrivateKey;
                use rsa::traits::PublicKeyParts;
                let key = rsa::RsaPrivateKey::from_pkcs1_der(&der).map_err(|e| e.to_string())?;
                // Receivers ignore signatures of shorter keys (RFC 8301 §3.2), and one too short
                // for a SHA-256 DigestInfo could not sign at all.
                if key.size() * 8 < MIN_RSA_BITS {
                    return Err(format!(
                        "an RSA key of {} bits, and receivers ignore signatures of keys under {MIN_RSA_BITS}                          bits (RFC 8301); make one of 2048",
                        key.size() * 8
                    ));
                }
                Ok(Key::SmallRsa(Box::new(key)))
            }
            Err(e) => Err(format!("not an RSA private key: {e}")),
        };
    }
    let seed = BASE64.decode(text).map_err(|e| format!("not base64: {e}"))?;
    if seed.len() != 32 {
        return Err(format!("{} bytes, not the 32 of an Ed25519 key", seed.len()));
    }
    Ed25519KeyPair::from_seed_unchecked(&seed).map(Key::Ed25519).map_err(|e| e.to_string())
}

/// The shortest RSA key Gazette signs with, in bits.
const MIN_RSA_BITS: usize = 1024;

/// The DER `DigestInfo` prefix of a SHA-256 hash in a PKCS#1 v1.5 signature (RFC 8017 §9.2).
const SHA256_DIGEST_INFO: [u8; 19] =
    [0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20];

impl Signer {
    /// The `DKIM-Signature` header lines for `message` (CRLF line ends, headers and body), one per
    /// key, to be put on top of it.
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        let (head, body) = split(message);
        let body_hash = BASE64.encode(body_hash(body));
        let fields = fields(head);
        let mut signed = Vec::with_capacity(1024);
        for h in SIGNED_HEADERS {
            if let Some((_, field)) = fields.iter().rev().find(|f| f.0.eq_ignore_ascii_case(h)) {
                relaxed_header(field, &mut signed);
                signed.extend_from_slice(b"\r\n");
            }
        }
        let mut out = Vec::with_capacity(self.keys.len() * 600);
        for (selector, key) in &self.keys {
            let algorithm = if matches!(key, Key::Ed25519(_)) { "ed25519-sha256" } else { "rsa-sha256" };
            let header = format!(
                "DKIM-Signature: v=1; a={algorithm}; c=relaxed/relaxed; d={}; s={selector};\r\n h={};\r\n bh={body_hash};\r\n b=",
                self.domain,
                SIGNED_HEADERS.join(":"),
            );
            let mut data = signed.clone();
            relaxed_header(header.as_bytes(), &mut data);
            let signature = key.sign(&data);
            out.extend_from_slice(header.as_bytes());
            for (i, chunk) in BASE64.encode(signature).as_bytes().chunks(72).enumerate() {
                if i > 0 {
                    out.extend_from_slice(b"\r\n ");
                }
                out.extend_from_slice(chunk);
            }
            out.extend_from_slice(b"\r\n");
        }
        out
    }
}

impl Key {
    fn sign(&self, data: &[u8]) -> Vec<u8> {
        match self {
            Key::Rsa(key) => {
                let mut signature = vec![0; key.public_modulus_len()];
                key.sign(
                    &aws_lc_rs::signature::RSA_PKCS1_SHA256,
                    &aws_lc_rs::rand::SystemRandom::new(),
                    data,
                    &mut signature,
                )
                .expect("an RSA signature of a key AWS-LC read");
                signature
            }
            Key::SmallRsa(key) => {
                let digest_info = [&SHA256_DIGEST_INFO[..], aws_lc_rs::digest::digest(&SHA256, data).as_ref()].concat();
                key.sign(rsa::Pkcs1v15Sign::new_unprefixed(), &digest_info).expect("an RSA signature")
            }
            // RFC 8463 §3: Ed25519 signs the SHA-256 hash of the data (PureEdDSA over the hash).
            Key::Ed25519(key) => key.sign(aws_lc_rs::digest::digest(&SHA256, data).as_ref()).as_ref().to_vec(),
        }
    }
}

/// The header section (without the empty line) and the body.
fn split(message: &[u8]) -> (&[u8], &[u8]) {
    static END_OF_HEAD: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\r\n\r\n"));
    match END_OF_HEAD.find(message) {
        Some(at) => (&message[..at], &message[at + 4..]),
        None => (message, &[]),
    }
}

/// Each header field of `head`: its name and the whole field, continuation lines included, without the final CRLF.
fn fields(head: &[u8]) -> Vec<(&str, &[u8])> {
    let mut out: Vec<(&str, &[u8])> = Vec::new();
    let mut start = 0;
    let mut lines = head.split(|&b| b == b'\n').peekable();
    let mut at = 0;
    while let Some(line) = lines.next() {
        at += line.len() + 1;
        let continued = lines.peek().is_some_and(|next| next.starts_with(b" ") || next.starts_with(b"\t"));
        if !continued {
            let field = &head[start..(at - 1).min(head.len())];
            let field = field.strip_suffix(b"\r").unwrap_or(field);
            let name = field.split(|&b| b == b':').next().unwrap_or_default();
            out.push((std::str::from_utf8(name).unwrap_or_default().trim(), field));
            start = at;
        }
    }
    out
}

/// RFC 6376 §3.4.2: the field's name in lower case, unfolded, runs of whitespace as one space, no
/// whitespace at the ends of the value or around the colon.
fn relaxed_header(field: &[u8], out: &mut Vec<u8>) {
    let colon = field.iter().position(|&b| b == b':').unwrap_or(field.len());
    out.extend(field[..colon].iter().filter(|b| !b.is_ascii_whitespace()).map(u8::to_ascii_lowercase));
    out.push(b':');
    let value = field.get(colon + 1..).unwrap_or_default();
    let mut space = false;
    let mut started = false;
    for &b in value {
        match b {
            b'\r' | b'\n' => {}
            b' ' | b'\t' => space = true,
            _ => {
                if space && started {
                    out.push(b' ');
                }
                space = false;
                started = true;
                out.push(b);
            }
        }
    }
}

/// RFC 6376 §3.4.4: the SHA-256 of the body with whitespace at line ends dropped, runs of
/// whitespace as one space, and the empty lines at its end dropped (an empty body hashes as empty).
///
/// Lines that canonicalization leaves as they are (most of a quoted-printable body) are hashed
/// straight from `body`, each run of them in one update; only the others are copied.
pub fn body_hash(body: &[u8]) -> Vec<u8> {
    static CRLF: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\r\n"));
    static TWO_SPACES: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"  "));
    static SPACE_AT_END: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b" \r\n"));
    let mut hash = Context::new(&SHA256);
    if memchr::memchr(b'\t', body).is_none()
        && TWO_SPACES.find(body).is_none()
        && SPACE_AT_END.find(body).is_none()
        && !body.ends_with(b" ")
    {
        // No line changes (a quoted-printable body seldom has a line that does): all but the empty
        // lines at its end is hashed as it stands, in one update.
        let mut text = body;
        while let Some(shorter) = text.strip_suffix(b"\r\n") {
            text = shorter;
        }
        if !text.is_empty() {
            hash.update(text);
            hash.update(b"\r\n");
        }
        return hash.finish().as_ref().to_vec();
    }
    // Bytes of `body` still to be hashed as they stand, from `run.0` to `run.1`.
    let mut run = (0usize, 0usize);
    let mut empty_lines = 0usize;
    let mut line_buf = Vec::new();
    let mut at = 0;
    while at < body.len() {
        let (line, next, ended) = match CRLF.find(&body[at..]) {
            Some(n) => (&body[at..at + n], at + n + 2, true),
            None => (&body[at..], body.len(), false),
        };
        let plain = !line.ends_with(b" ")
            && !line.ends_with(b"\t")
            && memchr::memchr(b'\t', line).is_none()
            && TWO_SPACES.find(line).is_none();
        let canonical = if plain { line } else { relaxed_line(line, &mut line_buf) };
        if canonical.is_empty() {
            empty_lines += 1;
        } else if plain && ended && run.1 + 2 * empty_lines == at {
            // This line and the bare empty lines before it follow the run in `body`: it grows.
            run.1 = next;
            empty_lines = 0;
        } else {
            hash.update(&body[run.0..run.1]);
            for _ in 0..empty_lines {
                hash.update(b"\r\n");
            }
            empty_lines = 0;
            if plain && ended {
                run = (at, next);
            } else {
                hash.update(canonical);
                hash.update(b"\r\n");
                run = (next, next);
            }
        }
        at = next;
    }
    hash.update(&body[run.0..run.1]);
    hash.finish().as_ref().to_vec()
}

/// A line with its whitespace runs as one space and none at its end, into `buf`.
fn relaxed_line<'b>(line: &[u8], buf: &'b mut Vec<u8>) -> &'b [u8] {
    buf.clear();
    let mut space = false;
    for &b in line {
        if b == b' ' || b == b'\t' {
            space = true;
        } else {
            if space {
                buf.push(b' ');
            }
            space = false;
            buf.push(b);
        }
    }
    buf
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::signature::{ED25519, RSA_PKCS1_2048_8192_SHA256, UnparsedPublicKey};

    // Keys made for these tests only (`openssl genrsa -traditional`, `openssl pkcs8 -topk8`).
    const RSA_2048: &str = "-----BEGIN RSA PRIVATE KEY-----\n\
MIIEowIBAAKCAQEA7U3Fxmn6zpTKYq9Q1cgx7ku0vL1noOh0LkJ+TL2XSC1L186a\n\
cDYN4gqskaZQ/nyYbtRzB/Tr4q5e8/c3RbHW71NNPQ+gMMfy2np46/04oIApbJBt\n\
0Ywb9WGo13EWlVo/hDNHtDB5JGh+WCnt3kt3WgPgaURW+doJorna3+clIYS5WJZZ\n\
T1vgDN3Iwti+5xYvnyWp49xR0zAyZo2w53XvwXk3pN37WMp0YOQ9fzNhpCLMwHnx\n\
AfRixkKn7Qi7sKqM9yQ2twGwvVFgJt1UA5de+tFKbLfpfH05bOMb3XVzyfyUd2bF\n\
qPAtu1EhBdiUJ45w0Z4gStZoBVMRTl6IAcEkYwIDAQABAoIBAEVKptvreUVWFAyh\n\
1ZA/DzleWM2d3sMQ7U/OsbN1ztVQCKvg0569Yetlo4M6Fb9hoV8HYPlrTm+X6/j/\n\
8F9E8RZb9BtG00c7M1IRXfrGq4DOO4pMWAzOhSFvHU6fYnFE83QGR0M5vj3f1zim\n\
MaNt1NFvfVkvj9gQDy05aMxlYaW53DYv0T5VQZsUk9bsvNdx0ELX9YASoyxIcqTv\n\
h3He64z07PzRZY+dz7Y64rWArcdsauimpBuVAhaV4pQQf8+C5+SF1W10+oQFWRrF\n\
u0VKCxI2eGnoOfMuk5pYKy0fJOpMHZKkBDX4mOOfnuqmW10oTiv1KXfVyHbzXaI+\n\
gI5otI0CgYEA9pLAUwF2PXTu2PvpXTPPweSGXRdjVL/o8N5SsnvLLfoT0oBtYkl3\n\
pPnYx3n4zZlVMKldK/DUNu9iH/LD7uJUmzPyeJ5N3sgQD2yrMaDwFlp6JOBspS41\n\
Hz8sp3ftDn/Uf/kFqAC+D912yCF03RggeI8hDFe9PwVG5PjW6nwJS0cCgYEA9mBM\n\
whwt42PU+Mlvh1DLQ+UsY4G5OyllhFyEUxobEcdIXdJRAiP66/n54IOdb1AMr+9c\n\
OQ3flP/OXnDfkR8uIk3RANcL6W+I4joYJ4yAQajtotLwajgUyeu80MBjljZWV2lc\n\
q3dX6riffECM+KnpXDGCCsCnnuMPhDW+KIsV9AUCgYASIXpY4CukmzuQ4v0m6E9n\n\
j3k90SFxsubbB04HZ8jp6ZCZku34IzTUAbcp+9MKszKrcFi0iXHhVDrf5Ib5wtS7\n\
0NcMfX92WTmtGK2B6badvitrGMGEZ+BqGsgazFu3DDlA67u5vcw7+Gnqj2M7erGw\n\
i72/XZhB0Q6EebO77ED2swKBgEt4/IqJ71S1BEyiCFQ/X8UQsyRYXNHOwJZncPG0\n\
EY7EqVp0TvSE6RzYmr84EkZDE1/hxzKDGXafViyADzx5fLxtchT7y15bGGeUvEmB\n\
NNjoUsOKMrOXMmcYm+KmzNr7Ej/8urKcAIaav+BkNcsG4cGoONnqYm69x8cMX5Az\n\
6ymxAoGBAIH+dtKzIJ3v2jvjvqgV8IwBjw25TvqvL6e32b/47k/ACe2lfOX7ekCZ\n\
tUOnn8a23V5ORAevyGmescq7ZB7wi52NfaLjkoCFWHKtsttZX6NW9dQtcVRWEMnW\n\
wQXyrZowBmU2QKMPKH8crvTxx5puxQQ6omvfVK3qMJTFA3po5ef8\n\
-----END RSA PRIVATE KEY-----";
    const RSA_2048_PKCS8: &str = "-----BEGIN PRIVATE KEY-----\n\
MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQDtTcXGafrOlMpi\n\
r1DVyDHuS7S8vWeg6HQuQn5MvZdILUvXzppwNg3iCqyRplD+fJhu1HMH9Ovirl7z\n\
9zdFsdbvU009D6Awx/Laenjr/TiggClskG3RjBv1YajXcRaVWj+EM0e0MHkkaH5Y\n\
Ke3eS3daA+BpRFb52gmiudrf5yUhhLlYlllPW+AM3cjC2L7nFi+fJanj3FHTMDJm\n\
jbDnde/BeTek3ftYynRg5D1/M2GkIszAefEB9GLGQqftCLuwqoz3JDa3AbC9UWAm\n\
3VQDl1760Upst+l8fTls4xvddXPJ/JR3ZsWo8C27USEF2JQnjnDRniBK1mgFUxFO\n\
XogBwSRjAgMBAAECggEARUqm2+t5RVYUDKHVkD8POV5YzZ3ewxDtT86xs3XO1VAI\n\
q+DTnr1h62WjgzoVv2GhXwdg+WtOb5fr+P/wX0TxFlv0G0bTRzszUhFd+sargM47\n\
ikxYDM6FIW8dTp9icUTzdAZHQzm+Pd/XOKYxo23U0W99WS+P2BAPLTlozGVhpbnc\n\
Ni/RPlVBmxST1uy813HQQtf1gBKjLEhypO+Hcd7rjPTs/NFlj53PtjritYCtx2xq\n\
6KakG5UCFpXilBB/z4Ln5IXVbXT6hAVZGsW7RUoLEjZ4aeg58y6TmlgrLR8k6kwd\n\
kqQENfiY45+e6qZbXShOK/Upd9XIdvNdoj6Ajmi0jQKBgQD2ksBTAXY9dO7Y++ld\n\
M8/B5IZdF2NUv+jw3lKye8st+hPSgG1iSXek+djHefjNmVUwqV0r8NQ272If8sPu\n\
4lSbM/J4nk3eyBAPbKsxoPAWWnok4GylLjUfPyynd+0Of9R/+QWoAL4P3XbIIXTd\n\
GCB4jyEMV70/BUbk+NbqfAlLRwKBgQD2YEzCHC3jY9T4yW+HUMtD5Sxjgbk7KWWE\n\
XIRTGhsRx0hd0lECI/rr+fngg51vUAyv71w5Dd+U/85ecN+RHy4iTdEA1wvpb4ji\n\
OhgnjIBBqO2i0vBqOBTJ67zQwGOWNlZXaVyrd1fquJ98QIz4qelcMYIKwKee4w+E\n\
Nb4oixX0BQKBgBIheljgK6SbO5Di/SboT2ePeT3RIXGy5tsHTgdnyOnpkJmS7fgj\n\
NNQBtyn70wqzMqtwWLSJceFUOt/khvnC1LvQ1wx9f3ZZOa0YrYHptp2+K2sYwYRn\n\
4GoayBrMW7cMOUDru7m9zDv4aeqPYzt6sbCLvb9dmEHRDoR5s7vsQPazAoGAS3j8\n\
ionvVLUETKIIVD9fxRCzJFhc0c7Almdw8bQRjsSpWnRO9ITpHNiavzgSRkMTX+HH\n\
MoMZdp9WLIAPPHl8vG1yFPvLXlsYZ5S8SYE02OhSw4oys5cyZxib4qbM2vsSP/y6\n\
spwAhpq/4GQ1ywbhwag42epibr3HxwxfkDPrKbECgYEAgf520rMgne/aO+O+qBXw\n\
jAGPDblO+q8vp7fZv/juT8AJ7aV85ft6QJm1Q6efxrbdXk5EB6/IaZ6xyrtkHvCL\n\
nY19ouOSgIVYcq2y21lfo1b11C1xVFYQydbBBfKtmjAGZTZAow8ofxyu9PHHmm7F\n\
BDqia99UreowlMUDemjl5/w=\n\
-----END PRIVATE KEY-----";
    const RSA_512: &str = "-----BEGIN RSA PRIVATE KEY-----\n\
MIIBOQIBAAJBAPDG+2h96i2kLqDSXQU0POfkzwDwQFXN4xCk8uDF/S7YNBztC97s\n\
29GV3AwyMnokTCcOTee09xZJcfn970JIXfMCAwEAAQJAZjRgxaMlQ4h8zoFdQPdC\n\
n0DN6d0RwhpqN0d9XZJNfZMwDOd4hpub3wrIJHyi+hkj0X0+E2bODZbq2CbpEiVl\n\
gQIhAPlWcVYtBNQbjnlYavgReU1b7haiH/44S9emCBK/w4JBAiEA9zX7tdwgH4oE\n\
aVgIbCi/VU7gD6izky/TzUMmZHlUqzMCIFW4TUCmO4m8a4/2QNhGEaDx4PmxBTS+\n\
H/zknNPtT4bBAiBYdnzoiykDoEQL3nDFI5+0S1FqyRfZp9fHMCxg7/oYeQIgOVga\n\
suwn16qir9NwhR4K0mqdbrMo+zgFUEPb6KYt8wI=\n\
-----END RSA PRIVATE KEY-----";
    const RSA_1024: &str = "-----BEGIN RSA PRIVATE KEY-----\n\
MIICXAIBAAKBgQDENq5Vr/mnCO7zJo84623A95PnzqaMDh6D1mn8kOnsZ9pbIjQH\n\
S/cuF7AtKQbj2KI7mpGk2FPCLHkZDE8DQi91e218wC8H0K1nlt1cZQIitQfS+Iyx\n\
yv279XTTD3QyAqP7syhMZvOvpOp6rK3ogwsG5SCdBx2tGp9gu4LPGcjSVQIDAQAB\n\
AoGAAPO6+NN3xKW4cxmWzFHoIG2THCbWjAttfnpF3WHeoLUITDToR7jIpEKdKjru\n\
u6BLeTqQxln+XgzVMZfrsjpZ/JfB6Egqc14bgOfcamq2fBOTcMTC80pvLz8LcIOM\n\
y42OiZkv8TqGsPspBvklZIQWvBziT2C+KFbRnF3YJPP1w4ECQQD8tYRjmZQKUkPD\n\
g4pMPP6K7ROm8tPFMzpPKBDuTVr5mCWOcUF6yM9nBZmoxqf8S81uBnK1+DAeUiRu\n\
LDtn0H+RAkEAxsTRqUbvTOZmWYhJ8WcfSRWjyPjRozHOv4I+6vdCoFG/0vi4bqWj\n\
Lclmgs3DW+Dfm8sPtVgjpWYK1CwSzl/MhQJAbn8wFBzjDmBKIQMzRYKmCjj/jtA+\n\
qMttg48RWCGa1eghA9ehuf50MafROGskqLy8Zo+LOOX8pEVmiIXus8YHAQJAGoLD\n\
yAUbA7GzMvvXiOgNJy1ItBRjuZV6EtbnV2V1MHbW0+eyiadz9TZogse457c9e8UA\n\
qlpAHt5WUWgzde0XFQJBALuQzxPm+rZqgeNcrr2AK5TtLgBo7l2Hmj4jxW8B8TxF\n\
fqSO2DQfETJhtsiW+ulOKtNANbB2KGHbXcgAJ1vNRI0=\n\
-----END RSA PRIVATE KEY-----";
    const ED25519_SEED: &str = "L63T7amZiETuY4ykQJaC1fW1fWocnmc+IQqDNNjNo/U=";

    const MESSAGE: &[u8] = b"From: Signals <news@signals.example.org>\r\nTo: ada@example.org\r\n\
        Subject: Signals #3:\r\n  a folded\t subject \r\nDate: Mon, 17 Jul 2023 00:00:00 +0000\r\n\
        Message-ID: <a@signals.example.org>\r\nPrecedence: bulk\r\nList-Unsubscribe: <https://x.example/u>\r\n\
        List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\nMIME-Version: 1.0\r\n\
        Content-Type: text/plain; charset=utf-8\r\n\r\nHello  there \r\n\r\nunsubscribe: https://x.example/u\r\n\r\n\r\n";

    fn signer(keys: &[&str]) -> Signer {
        let keys = keys.iter().enumerate().map(|(i, k)| (format!("s{i}"), parse_key(k, true).unwrap())).collect();
        Signer { domain: "signals.example.org".into(), keys }
    }

    /// An independent check of `Signer::sign`'s output, for `signer`'s keys: each signature's body hash
    /// and signature, recomputed from the message as it arrives (RFC 6376 §6.1.3).
    fn verify(signer: &Signer, message: &[u8]) -> Result<usize, String> {
        let (head, body) = split(message);
        let fields = fields(head);
        let signatures: Vec<&[u8]> =
            fields.iter().filter(|f| f.0.eq_ignore_ascii_case("DKIM-Signature")).map(|f| f.1).collect();
        for (field, (selector, key)) in signatures.iter().zip(&signer.keys) {
            let unfolded: String = String::from_utf8(field.to_vec()).unwrap().split_whitespace().collect();
            let value = unfolded.split_once(':').unwrap().1;
            let tag = |name: &str| {
                value.split(';').find_map(|t| t.split_once('=').filter(|(n, _)| *n == name).map(|(_, v)| v.to_string()))
            };
            assert_eq!(tag("s").as_deref(), Some(selector.as_str()));
            if tag("bh").unwrap() != BASE64.encode(body_hash(body)) {
                return Err("the body hash differs".into());
            }
            let mut data = Vec::new();
            for h in tag("h").unwrap().split(':') {
                if let Some((_, f)) = fields.iter().rev().find(|f| f.0.eq_ignore_ascii_case(h)) {
                    relaxed_header(f, &mut data);
                    data.extend_from_slice(b"\r\n");
                }
            }
            let b_at = field.windows(3).rposition(|w| w[1..] == *b"b=" && (w[0] == b' ' || w[0] == b';')).unwrap();
            relaxed_header(&field[..b_at + 3], &mut data);
            let signature = BASE64.decode(tag("b").unwrap()).unwrap();
            let ok = match key {
                Key::Rsa(k) => {
                    use aws_lc_rs::signature::KeyPair;
                    UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, k.public_key().as_ref())
                        .verify(&data, &signature)
                        .is_ok()
                }
                Key::SmallRsa(k) => {
                    let digest_info =
                        [&SHA256_DIGEST_INFO[..], aws_lc_rs::digest::digest(&SHA256, &data).as_ref()].concat();
                    let public = rsa::RsaPublicKey::from(k.as_ref());
                    public.verify(rsa::Pkcs1v15Sign::new_unprefixed(), &digest_info, &signature).is_ok()
                }
                Key::Ed25519(k) => {
                    use aws_lc_rs::signature::KeyPair;
                    UnparsedPublicKey::new(&ED25519, k.public_key().as_ref())
                        .verify(aws_lc_rs::digest::digest(&SHA256, &data).as_ref(), &signature)
                        .is_ok()
                }
            };
            if !ok {
                return Err(format!("the signature of {selector} does not verify"));
            }
        }
        Ok(signatures.len())
    }

    fn signed(signer: &Signer, message: &[u8]) -> Vec<u8> {
        [signer.sign(message), message.to_vec()].concat()
    }

    #[test]
    fn each_key_signs_and_a_changed_body_or_signed_header_fails() {
        for keys in [&[RSA_2048][..], &[ED25519_SEED], &[RSA_2048, ED25519_SEED], &[RSA_1024], &[RSA_2048_PKCS8]] {
            let s = signer(keys);
            let message = signed(&s, MESSAGE);
            assert_eq!(verify(&s, &message), Ok(keys.len()), "{keys:?}");
            let text = String::from_utf8(message.clone()).unwrap();
            assert!(text.lines().all(|l| l.len() <= 998));
            // Whitespace a relay may change in transit under relaxed canonicalization: still verifies.
            let rewhitespaced =
                text.replace("Hello  there \r\n", "Hello there\r\n").replace("Subject: Signals", "Subject:  Signals");
            assert_eq!(verify(&s, rewhitespaced.as_bytes()), Ok(keys.len()));
            let tampered = text.replace("https://x.example/u\r\n\r\n", "https://evil.example/u\r\n\r\n");
            assert_eq!(verify(&s, tampered.as_bytes()), Err("the body hash differs".into()), "{keys:?}");
            let tampered = text.replace("Subject: Signals #3", "Subject: Signals #4");
            assert!(verify(&s, tampered.as_bytes()).unwrap_err().contains("does not verify"), "{keys:?}");
            // An unsigned header may change.
            assert!(verify(&s, text.replace("Precedence: bulk", "Precedence: list").as_bytes()).is_ok());
        }
    }

    #[test]
    fn the_size_budget_counts_at_least_what_the_largest_signatures_take() {
        use aws_lc_rs::rsa::KeySize;
        let rsa = RsaKeyPair::generate(KeySize::Rsa4096).unwrap();
        let ed25519 = Ed25519KeyPair::generate().unwrap();
        let (selector, domain) = ("a-rather-long-selector-2026", "mail.signals.example.org");
        let signer = Signer {
            domain: domain.into(),
            keys: vec![(selector.into(), Key::Rsa(rsa)), (selector.into(), Key::Ed25519(ed25519))],
        };
        let headers = signer.sign(MESSAGE).len();
        let config = config::Dkim {
            domain: domain.into(),
            selector: selector.into(),
            private_key: "rsa.pem".into(),
            ed25519: Some((selector.into(), "ed25519.key".into())),
        };
        let counted = config.signature_bytes();
        // Counted at least whole, and not much more: the bound is for 4,096-bit RSA, the key used here.
        assert!(headers <= counted && counted - headers < 100, "signed {headers} bytes, counted {counted}");
    }

    /// §3.4.4 and §3.4.5 read literally, a line at a time: what `body_hash` must agree with.
    fn body_hash_line_by_line(body: &[u8]) -> Vec<u8> {
        let text = body.strip_suffix(b"\r\n").unwrap_or(body);
        let mut lines: Vec<Vec<u8>> = Vec::new();
        let mut rest = text;
        loop {
            let (line, next) = match rest.windows(2).position(|w| w == b"\r\n") {
                Some(at) => (&rest[..at], Some(&rest[at + 2..])),
                None => (rest, None),
            };
            let words: Vec<&[u8]> = line.split(|b| *b == b' ' || *b == b'\t').collect();
            let mut canonical = Vec::new();
            for (i, w) in words.iter().enumerate() {
                // Each run of whitespace before a word is one space; after the last word, none.
                if !w.is_empty() && i > 0 {
                    canonical.push(b' ');
                }
                canonical.extend_from_slice(w);
            }
            lines.push(canonical);
            match next {
                Some(n) => rest = n,
                None => break,
            }
        }
        while lines.last().is_some_and(|l| l.is_empty()) {
            lines.pop();
        }
        let mut all = Vec::new();
        for l in lines {
            all.extend_from_slice(&l);
            all.extend_from_slice(b"\r\n");
        }
        aws_lc_rs::digest::digest(&SHA256, &all).as_ref().to_vec()
    }

    #[test]
    fn runs_of_plain_lines_hash_as_the_line_by_line_reading_does() {
        let pieces: [&[u8]; 8] = [b"word", b" ", b"  ", b"\t", b"\r\n", b"\r\n\r\n", b"=20", b"\r"];
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for n in 0..3000 {
            let mut body = Vec::new();
            for _ in 0..(n % 40) {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                body.extend_from_slice(pieces[(seed % pieces.len() as u64) as usize]);
            }
            assert_eq!(body_hash(&body), body_hash_line_by_line(&body), "{:?}", String::from_utf8_lossy(&body));
        }
    }

    #[test]
    fn the_body_is_canonicalized_as_rfc_6376_shows() {
        // RFC 6376 §3.4.6's example body, and the empty body (errata 3192: relaxed hashes nothing).
        let hex = |b: &[u8]| BASE64.encode(b);
        assert_eq!(
            hex(&body_hash(b" C \r\nD \t E\r\n\r\n\r\n")),
            hex(aws_lc_rs::digest::digest(&SHA256, b" C\r\nD E\r\n").as_ref())
        );
        assert_eq!(hex(&body_hash(b"")), hex(aws_lc_rs::digest::digest(&SHA256, b"").as_ref()));
        assert_eq!(hex(&body_hash(b"\r\n\r\n")), hex(aws_lc_rs::digest::digest(&SHA256, b"").as_ref()));
        assert_eq!(
            hex(&body_hash(b"no line end")),
            hex(aws_lc_rs::digest::digest(&SHA256, b"no line end\r\n").as_ref())
        );
        let mut h = Vec::new();
        relaxed_header(b"SubJect : A  \r\n\t folded  one \t", &mut h);
        assert_eq!(h, b"subject:A folded one");
    }

    #[test]
    fn keys_that_cannot_sign_are_refused_with_the_reason() {
        assert!(parse_key("-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----", true).is_err());
        assert!(parse_key("bm90IGEga2V5", true).err().unwrap().contains("not the 32 of an Ed25519 key"));
        assert!(parse_key(RSA_2048, false).is_err(), "ed25519_key reads only an Ed25519 key");
        assert!(parse_key("not a key", true).err().unwrap().contains("base64"));
        let short = parse_key(RSA_512, true).err().unwrap();
        assert!(short.contains("an RSA key of 512 bits") && short.contains("RFC 8301"), "{short}");
    }
}
