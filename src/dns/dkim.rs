//! DKIM (RFC 6376) at `selector._domainkey.domain` for each key of `[dkim]`: one record, that
//! parses, not revoked, RSA of at least 1024 bits, not in test mode (`t=y`), and holding the public
//! half of the configured private key, proved by signing a message with Gazette's own signer and
//! verifying it with `mail-auth` as a receiver would.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use mail_auth::common::parse::TxtRecordParser;
use mail_auth::common::verify::DomainKey;
use mail_auth::{AuthenticatedMessage, DkimResult};

use super::{Dns, DnsReport, Domains, Level, txt_record};
use crate::config::{Config, Dkim};
use crate::deliver::dkim as signing;

/// The `t=y` flag of a key record (RFC 6376 §3.6.1), as `mail-auth` keeps it in `DomainKey::f`.
const TESTING_FLAG: u64 = 0x10;

/// What DMARC needs to know of the signature: the domain it is made for (`d=`).
pub struct Signing {
    pub domain: String,
}

/// One key of `[dkim]`: its selector, file and key name in publish.toml.
struct KeyFile<'a> {
    selector: &'a str,
    path: &'a std::path::Path,
    key: &'static str,
}

pub async fn check(dns: &Dns, config: &Config, domains: &Domains, report: &mut DnsReport) -> Option<Signing> {
    let Some(d) = &config.dkim else {
        report.add(
            Level::Refused,
            "DKIM",
            format!(
                "no [dkim] in publish.toml: the mail is not signed, and Gmail, Yahoo and Outlook.com refuse bulk mail \
                 without a DKIM signature. Make a key (`openssl genrsa -traditional -out dkim.pem 2048`), add [dkim] with \
                 domain = \"{}\", selector = \"gazette\" and private_key = \"dkim.pem\", and run `gazette check --dns` again for \
                 the record to publish",
                domains.from
            ),
            vec![],
        );
        return None;
    };
    let signer = match signing::load(d) {
        Ok(signer) => signer,
        Err(e) => {
            report.add(Level::Refused, "DKIM", format!("{e:#}"), vec![]);
            return Some(Signing { domain: d.domain.to_ascii_lowercase() });
        }
    };
    let signed = sample(&signer, domains);
    let mut keys = vec![KeyFile { selector: &d.selector, path: &d.private_key, key: "private_key" }];
    if let Some((selector, path)) = &d.ed25519 {
        keys.push(KeyFile { selector, path, key: "ed25519_key" });
    }
    for key in keys {
        check_key(dns, d, &key, &signed, report).await;
    }
    Some(Signing { domain: d.domain.to_ascii_lowercase() })
}

/// A short message signed by the signer a send uses, with every key of `[dkim]`.
fn sample(signer: &signing::Signer, domains: &Domains) -> Vec<u8> {
    let message = format!(
        "From: <newsletter@{from}>\r\nTo: <reader@example.org>\r\nSubject: check --dns\r\n\
         Date: Mon, 24 Jul 2023 08:00:00 +0000\r\nMessage-ID: <check-dns@{from}>\r\nMIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\r\nA message signed to test the published key.\r\n",
        from = domains.from
    );
    let mut signed = signer.sign(message.as_bytes());
    signed.extend_from_slice(message.as_bytes());
    signed
}

async fn check_key(dns: &Dns, d: &Dkim, key: &KeyFile<'_>, signed: &[u8], report: &mut DnsReport) {
    let name = format!("{}._domainkey.{}", key.selector, d.domain);
    let public = match public_record(key.path) {
        Ok(public) => public,
        Err(why) => {
            report.add(Level::Refused, "DKIM", format!("[dkim] {}: {}: {why}", key.key, key.path.display()), vec![]);
            return;
        }
    };
    let publish = vec![txt_record(&name, &public.record)];
    let records = match dns.txt(&name).await {
        Ok(records) => records,
        Err(e) => {
            report.add(Level::Refused, "DKIM", e.to_string(), vec![]);
            return;
        }
    };
    let text = match records.as_slice() {
        [] => {
            let why = format!(
                "{name} has no DKIM record: receivers cannot check the signature, and treat the mail as unsigned"
            );
            report.add(Level::Refused, "DKIM", why, publish);
            return;
        }
        [one] => one,
        many => {
            let why = format!("{name} has {} TXT records: receivers pick one, so keep only the key's", many.len());
            report.add(Level::Refused, "DKIM", why, publish);
            return;
        }
    };
    let record = match DomainKey::parse(text.as_bytes()) {
        Ok(record) => record,
        Err(e) => {
            let why = format!("{name}: `{}` is not a usable DKIM key ({e})", shortened(text));
            report.add(Level::Refused, "DKIM", why, publish);
            return;
        }
    };
    if public.rsa && record.p.public_key_bits() < 1024 {
        let why = format!(
            "{name}: the published key is RSA of {} bits, and receivers ignore signatures of keys under 1024 bits (RFC 8301)",
            record.p.public_key_bits()
        );
        report.add(Level::Refused, "DKIM", why, publish);
        return;
    }
    if !verifies(dns, signed, key.selector, &d.domain).await {
        let why = format!(
            "{name}: the published key is not the public half of [dkim] {} ({}): every signature fails",
            key.key,
            key.path.display()
        );
        report.add(Level::Refused, "DKIM", why, publish);
        return;
    }
    if record.f & TESTING_FLAG != 0 {
        let why =
            format!("{name}: t=y marks the key as a test, and receivers may treat signed mail as unsigned: remove t=y");
        report.add(Level::Warning, "DKIM", why, publish);
        return;
    }
    report.add(Level::Ok, "DKIM", format!("{name}: {}, matches [dkim] {}", public.kind, key.key), vec![]);
}

/// Whether `mail-auth` verifies the sample's signature of `selector` against the published key.
async fn verifies(dns: &Dns, signed: &[u8], selector: &str, domain: &str) -> bool {
    let Some(message) = AuthenticatedMessage::parse(signed) else { return false };
    let outputs = dns.authenticator().verify_dkim(&message).await;
    outputs.iter().any(|o| {
        o.signature().is_some_and(|s| s.s.eq_ignore_ascii_case(selector) && s.d.eq_ignore_ascii_case(domain))
            && *o.result() == DkimResult::Pass
    })
}

fn shortened(text: &str) -> String {
    if text.len() > 60 { format!("{}...", text.chars().take(60).collect::<String>()) } else { text.to_string() }
}

/// The record a key's public half is published as.
pub(super) struct PublicKey {
    pub(super) record: String,
    /// `RSA, 2048 bits` or `Ed25519`.
    kind: String,
    rsa: bool,
}

/// The DKIM record of the private key in `path` (RSA PEM, PKCS#1 or PKCS#8, or an Ed25519 seed
/// as base64): `v=DKIM1; k=rsa; p=<SubjectPublicKeyInfo>` or `v=DKIM1; k=ed25519; p=<32 bytes>`
/// (RFC 6376 §3.6.1, RFC 8463 §4.2).
pub(super) fn public_record(path: &std::path::Path) -> Result<PublicKey, String> {
    use rsa::pkcs1::DecodeRsaPrivateKey;
    use rsa::pkcs8::{DecodePrivateKey, EncodePublicKey};
    use rsa::traits::PublicKeyParts;
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read it: {e}"))?;
    let text = text.trim();
    if text.contains("-----BEGIN") {
        let b64: String = text.lines().filter(|l| !l.starts_with("-----")).map(str::trim).collect();
        let der = BASE64.decode(b64).map_err(|e| format!("the PEM is not base64: {e}"))?;
        let key = rsa::RsaPrivateKey::from_pkcs1_der(&der)
            .or_else(|_| rsa::RsaPrivateKey::from_pkcs8_der(&der))
            .map_err(|e| format!("not an RSA private key: {e}"))?;
        let public = key.to_public_key().to_public_key_der().map_err(|e| e.to_string())?;
        return Ok(PublicKey {
            record: format!("v=DKIM1; k=rsa; p={}", BASE64.encode(public.as_bytes())),
            kind: format!("RSA, {} bits", key.size() * 8),
            rsa: true,
        });
    }
    let seed = BASE64.decode(text).map_err(|e| format!("not base64: {e}"))?;
    let pair = aws_lc_rs::signature::Ed25519KeyPair::from_seed_unchecked(&seed)
        .map_err(|e| format!("not an Ed25519 key: {e}"))?;
    use aws_lc_rs::signature::KeyPair;
    Ok(PublicKey {
        record: format!("v=DKIM1; k=ed25519; p={}", BASE64.encode(pair.public_key().as_ref())),
        kind: "Ed25519".into(),
        rsa: false,
    })
}
