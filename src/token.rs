//! Signed links for unsubscribing, confirming, a reader's preferences and a change of address: `<id>.<hex HMAC-SHA256>` over the subscriber's id
//! and the link's purpose; and the bounce token of a VERP envelope sender, which names an issue's
//! delivery to one subscriber (`bounce_token`). Pure functions; where the key comes from
//! (`GAZETTE_SECRET` or the database) is the store's business (`Store::token_key`).

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::issue_id::IssueId;

type HmacSha256 = Hmac<Sha256>;

/// The length of the MAC in bytes (the full SHA-256 output), hex-encoded in the token.
const MAC_LEN: usize = 32;

/// What a token may be used for. A token made for one purpose never verifies for the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Unsubscribe,
    Confirm,
    /// The envelope sender of one delivery: failure notices come back to it (`bounce_token`).
    Bounce,
    /// The reader's preferences page (themes, pause, address, unsubscribe), linked from every email.
    Preferences,
    /// The link mailed to a new address, which moves the subscription there (`address_token`).
    ChangeAddress,
}

impl Purpose {
    fn label(self) -> &'static [u8] {
        match self {
            Purpose::Unsubscribe => b"unsubscribe",
            Purpose::Confirm => b"confirm",
            Purpose::Bounce => b"bounce",
            Purpose::Preferences => b"preferences",
            Purpose::ChangeAddress => b"change-address",
        }
    }
}

/// The secret tokens are signed with. Its `Debug` never shows the bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenKey(Vec<u8>);

impl TokenKey {
    /// The shortest secret accepted, in bytes: shorter ones could be guessed offline from one link.
    pub const MIN_LEN: usize = 16;

    /// A key from secret bytes (`GAZETTE_SECRET`, or the random secret kept in the database).
    pub fn from_secret(secret: impl Into<Vec<u8>>) -> Result<TokenKey, ShortSecret> {
        let secret = secret.into();
        if secret.len() < Self::MIN_LEN {
            return Err(ShortSecret { length: secret.len() });
        }
        Ok(TokenKey(secret))
    }

    fn mac(&self, subscriber_id: i64, purpose: Purpose) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.0).expect("HMAC takes keys of any length");
        // Domain separation: a versioned prefix, the purpose, then the id, with separators that
        // cannot occur inside the fields.
        mac.update(b"gazette-token-v1\0");
        mac.update(purpose.label());
        mac.update(b"\0");
        mac.update(subscriber_id.to_string().as_bytes());
        mac
    }

    /// The MAC of a bounce token: the subscriber, then the issue.
    fn bounce_mac(&self, subscriber_id: i64, issue_id: &IssueId) -> HmacSha256 {
        let mut mac = self.mac(subscriber_id, Purpose::Bounce);
        mac.update(b"\0");
        mac.update(issue_id.as_str().as_bytes());
        mac
    }

    /// The MAC of an address token: the subscriber, then the request, then the new address's key.
    fn address_mac(&self, subscriber_id: i64, change_id: i64, new_address_key: &str) -> HmacSha256 {
        let mut mac = self.mac(subscriber_id, Purpose::ChangeAddress);
        mac.update(b"\0");
        mac.update(change_id.to_string().as_bytes());
        mac.update(b"\0");
        mac.update(new_address_key.as_bytes());
        mac
    }
}

/// A secret too short to sign with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the secret is {length} bytes long; use at least {} random characters (for example `openssl rand -hex 32`)",
    TokenKey::MIN_LEN
)]
pub struct ShortSecret {
    pub length: usize,
}

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKey(..)")
    }
}

/// A URL-safe token (`[0-9a-f.-]` only) naming `subscriber_id`, valid only for `purpose`.
pub fn sign_token(key: &TokenKey, subscriber_id: i64, purpose: Purpose) -> String {
    let tag = key.mac(subscriber_id, purpose).finalize().into_bytes();
    format!("{subscriber_id}.{}", hex::encode(tag))
}

/// The subscriber id a token names, if `key` signed it for `purpose`. The MAC comparison is
/// constant time; anything malformed (truncated, re-encoded id, wrong length) is `None`.
pub fn verify_token(key: &TokenKey, token: &str, purpose: Purpose) -> Option<i64> {
    let (id_text, tag_hex) = token.split_once('.')?;
    let id: i64 = id_text.parse().ok()?;
    // Only the canonical spelling of the id: "+7" or "007" would otherwise name the same subscriber.
    if id.to_string() != id_text || tag_hex.len() != MAC_LEN * 2 {
        return None;
    }
    let tag = hex::decode(tag_hex).ok()?;
    key.mac(id, purpose).verify_slice(&tag).ok()?;
    Some(id)
}

/// The token of the link that moves subscriber `subscriber_id` to a new address: `<subscriber>.<request>.<MAC>`,
/// the MAC over both ids and the new address's key (`SubscriberEmail::key`), so that a link made
/// for one address never moves the subscription to another.
pub fn address_token(key: &TokenKey, subscriber_id: i64, change_id: i64, new_address_key: &str) -> String {
    let tag = key.address_mac(subscriber_id, change_id, new_address_key).finalize().into_bytes();
    format!("{subscriber_id}.{change_id}.{}", hex::encode(tag))
}

/// The (subscriber, request) ids an address token names, unchecked: where to find the new address
/// to check it with (`verify_address_token`). `None` when it is not of that shape.
pub fn address_token_ids(token: &str) -> Option<(i64, i64)> {
    let (ids, tag_hex) = token.rsplit_once('.')?;
    let (id_text, change_text) = ids.split_once('.')?;
    let (id, change): (i64, i64) = (id_text.parse().ok()?, change_text.parse().ok()?);
    // Only the canonical spellings, and a whole MAC.
    if id.to_string() != id_text || change.to_string() != change_text || tag_hex.len() != MAC_LEN * 2 {
        return None;
    }
    Some((id, change))
}

/// Whether `key` made `token` for this subscriber's request to move to `new_address_key`. The
/// comparison is constant time.
pub fn verify_address_token(key: &TokenKey, token: &str, new_address_key: &str) -> Option<(i64, i64)> {
    let (id, change) = address_token_ids(token)?;
    let tag = hex::decode(token.rsplit_once('.')?.1).ok()?;
    key.address_mac(id, change, new_address_key).verify_slice(&tag).ok()?;
    Some((id, change))
}

/// Bytes of the MAC kept in a bounce token (80 bits): the token goes into the local part of an
/// address, which RFC 5321 §4.5.3.1.1 limits to 64 octets, and a forger has to guess it online,
/// one message at a time.
const BOUNCE_MAC_LEN: usize = 10;

/// The token of a VERP envelope sender (`bounces+<token>@domain`): `<subscriber>.<issue>.<MAC>`,
/// lower-case letters, digits, dots and hyphens only, so that it survives any mail server's
/// handling of the local part. `issue_id` is an issue's id such as `2023-07-17`.
pub fn bounce_token(key: &TokenKey, subscriber_id: i64, issue_id: &IssueId) -> String {
    let tag = key.bounce_mac(subscriber_id, issue_id).finalize().into_bytes();
    format!("{subscriber_id}.{issue_id}.{}", hex::encode(&tag[..BOUNCE_MAC_LEN]))
}

/// The (subscriber, issue) a bounce token names, if `key` made it. Case is ignored: a few mail
/// servers change the case of the local part they return mail to. A token whose issue part is not
/// an issue's id is not one of ours.
pub fn verify_bounce_token(key: &TokenKey, token: &str) -> Option<(i64, IssueId)> {
    let token = token.to_ascii_lowercase();
    let (id_text, rest) = token.split_once('.')?;
    let (issue_id, tag_hex) = rest.rsplit_once('.')?;
    let id: i64 = id_text.parse().ok()?;
    if id.to_string() != id_text || tag_hex.len() != BOUNCE_MAC_LEN * 2 {
        return None;
    }
    let issue_id: IssueId = issue_id.parse().ok()?;
    let tag = hex::decode(tag_hex).ok()?;
    key.bounce_mac(id, &issue_id).verify_truncated_left(&tag).ok()?;
    Some((id, issue_id))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> TokenKey {
        TokenKey::from_secret(s.as_bytes().to_vec()).unwrap()
    }

    #[test]
    fn the_preview_token_has_a_real_tokens_shape_and_names_nobody() {
        let k = key("a secret of sufficient length");
        let preview = crate::urls::PREVIEW_TOKEN;
        let real = sign_token(&k, 7, Purpose::Unsubscribe);
        assert_eq!(preview.len(), real.len());
        assert_eq!(preview.split_once('.').unwrap().1.len(), real.split_once('.').unwrap().1.len());
        assert!(preview.bytes().all(|b| b == b'.' || b.is_ascii_hexdigit()));
        assert_eq!(verify_token(&k, preview, Purpose::Unsubscribe), None);
    }

    #[test]
    fn round_trip_for_each_purpose() {
        let k = key("a secret of sufficient length");
        for id in [1, 42, i64::MAX] {
            for p in [Purpose::Unsubscribe, Purpose::Confirm, Purpose::Preferences] {
                let t = sign_token(&k, id, p);
                assert!(t.chars().all(|c| c.is_ascii_hexdigit() || c == '.' || c == '-'), "{t}");
                assert_eq!(verify_token(&k, &t, p), Some(id));
            }
        }
    }

    #[test]
    fn a_token_is_stable_and_depends_on_id_purpose_and_key() {
        let k = key("a secret of sufficient length");
        let t = sign_token(&k, 7, Purpose::Unsubscribe);
        assert_eq!(t, sign_token(&k, 7, Purpose::Unsubscribe));
        assert_eq!(t.len(), "7.".len() + 64);
        assert_ne!(t, sign_token(&k, 8, Purpose::Unsubscribe));
        assert_ne!(t, sign_token(&k, 7, Purpose::Confirm));
        assert_ne!(t, sign_token(&key("another secret, also long"), 7, Purpose::Unsubscribe));
    }

    #[test]
    fn forgeries_are_refused() {
        let k = key("a secret of sufficient length");
        let t = sign_token(&k, 7, Purpose::Unsubscribe);
        let (_, tag) = t.split_once('.').unwrap();
        // Changed id, same MAC.
        assert_eq!(verify_token(&k, &format!("8.{tag}"), Purpose::Unsubscribe), None);
        // Same id, non-canonical spellings.
        assert_eq!(verify_token(&k, &format!("07.{tag}"), Purpose::Unsubscribe), None);
        assert_eq!(verify_token(&k, &format!("+7.{tag}"), Purpose::Unsubscribe), None);
        // Changed purpose.
        assert_eq!(verify_token(&k, &t, Purpose::Confirm), None);
        let c = sign_token(&k, 7, Purpose::Confirm);
        assert_eq!(verify_token(&k, &c, Purpose::Unsubscribe), None);
        // Truncated, by one character and by half.
        assert_eq!(verify_token(&k, &t[..t.len() - 1], Purpose::Unsubscribe), None);
        assert_eq!(verify_token(&k, &t[..t.len() - 32], Purpose::Unsubscribe), None);
        assert_eq!(verify_token(&k, "7.", Purpose::Unsubscribe), None);
        assert_eq!(verify_token(&k, "7", Purpose::Unsubscribe), None);
        assert_eq!(verify_token(&k, "", Purpose::Unsubscribe), None);
        // One flipped hex digit.
        let mut flipped = t.clone().into_bytes();
        let last = flipped.len() - 1;
        flipped[last] = if flipped[last] == b'0' { b'1' } else { b'0' };
        assert_eq!(verify_token(&k, std::str::from_utf8(&flipped).unwrap(), Purpose::Unsubscribe), None);
        // Wrong key.
        assert_eq!(verify_token(&key("another secret, also long"), &t, Purpose::Unsubscribe), None);
    }

    #[test]
    fn bounce_tokens_name_the_subscriber_and_the_issue_and_fit_an_address() {
        let k = key("a secret of sufficient length");
        let week: IssueId = "2023-07-17".parse().unwrap();
        let t = bounce_token(&k, 4711, &week);
        assert_eq!(verify_bounce_token(&k, &t), Some((4711, week.clone())));
        assert_eq!(verify_bounce_token(&k, &t.to_ascii_uppercase()), Some((4711, week.clone())), "case is ignored");
        assert!(t.bytes().all(|b| b.is_ascii_digit() || b.is_ascii_lowercase() || b == b'.' || b == b'-'), "{t}");
        assert!(format!("bounces+{}", bounce_token(&k, 9_999_999, &week)).len() <= 64);
        // Another issue, subscriber or key; the unsubscribe MAC; a cut or flipped tag: refused.
        let (_, tag) = t.rsplit_once('.').unwrap();
        assert_eq!(verify_bounce_token(&k, &format!("4711.2023-07-24.{tag}")), None);
        assert_eq!(verify_bounce_token(&k, &format!("4712.2023-07-17.{tag}")), None);
        assert_eq!(verify_bounce_token(&key("another secret, also long"), &t), None);
        let unsubscribe = sign_token(&k, 4711, Purpose::Unsubscribe);
        let (_, long_tag) = unsubscribe.split_once('.').unwrap();
        assert_eq!(verify_bounce_token(&k, &format!("4711.2023-07-17.{}", &long_tag[..20])), None);
        assert_eq!(verify_bounce_token(&k, &t[..t.len() - 1]), None);
        let flipped = format!("{}{}", &t[..t.len() - 1], if t.ends_with('0') { '1' } else { '0' });
        assert_eq!(verify_bounce_token(&k, &flipped), None);
        assert_eq!(verify_bounce_token(&k, "4711.2023-07-17"), None);
        assert_eq!(verify_bounce_token(&k, ""), None);
        // An issue part that is not an issue's id is not ours.
        assert_eq!(verify_bounce_token(&k, &format!("4711.2023-7-17.{tag}")), None);
        assert_eq!(verify_bounce_token(&k, &format!("4711..{tag}")), None);
    }

    #[test]
    fn address_tokens_bind_the_subscriber_the_request_and_the_new_address() {
        let k = key("a secret of sufficient length");
        let t = address_token(&k, 7, 42, "new@example.org");
        assert!(t.starts_with("7.42.") && t.bytes().all(|b| b == b'.' || b.is_ascii_hexdigit()), "{t}");
        assert_eq!(address_token_ids(&t), Some((7, 42)));
        assert_eq!(verify_address_token(&k, &t, "new@example.org"), Some((7, 42)));
        assert_eq!(verify_address_token(&k, &t, "other@example.org"), None, "another address");
        assert_eq!(verify_address_token(&key("another secret, also long"), &t, "new@example.org"), None);
        let (_, tag) = t.rsplit_once('.').unwrap();
        for forged in [format!("8.42.{tag}"), format!("7.43.{tag}"), format!("07.42.{tag}"), format!("7.+42.{tag}")] {
            assert_eq!(verify_address_token(&k, &forged, "new@example.org"), None, "{forged}");
        }
        assert_eq!(verify_address_token(&k, &t[..t.len() - 1], "new@example.org"), None);
        // Neither the preferences token nor another purpose's MAC passes for it.
        let prefs = sign_token(&k, 7, Purpose::Preferences);
        assert_eq!(address_token_ids(&prefs), None);
        let (_, long) = prefs.split_once('.').unwrap();
        assert_eq!(verify_address_token(&k, &format!("7.42.{long}"), "new@example.org"), None);
        assert_eq!(verify_token(&k, &t, Purpose::ChangeAddress), None);
        for junk in ["", ".", "7..", "7.42.", "a.b.c", "7.42.zz"] {
            assert_eq!(verify_address_token(&k, junk, "new@example.org"), None, "{junk:?}");
        }
    }

    #[test]
    fn short_secrets_are_refused_and_debug_hides_the_key() {
        assert_eq!(
            TokenKey::from_secret(b"short".to_vec()).unwrap_err().to_string(),
            "the secret is 5 bytes long; use at least 16 random characters (for example `openssl rand -hex 32`)"
        );
        assert_eq!(TokenKey::from_secret(b"short".to_vec()).unwrap_err(), ShortSecret { length: 5 });
        assert_eq!(format!("{:?}", key("a secret of sufficient length")), "TokenKey(..)");
    }
}
