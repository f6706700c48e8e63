//! Access to the merchant portal without the API key: signed, short-lived tokens.
//!
//! A merchant exchanges its API key for a **link** (valid minutes) that it may hand to a
//! colleague; opening it gives a **session** (valid hours) kept in an `HttpOnly` cookie. Both are
//! `v1.{merchant}.{kind}.{expires}.{nonce}.{mac}`, the MAC an HMAC-SHA256 of everything before
//! it under the merchant's portal secret (random, stored in the merchant's record, never shown).
//! So a token names its merchant, cannot be changed without the secret, and every token of a
//! merchant ends when its secret is dropped (an API key rotation, a revocation). Forms carry a CSRF token derived from the session's
//! nonce under the same secret: valid for that session only.

use crate::clock::Timestamp;
use crate::ids::MerchantId;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// How long a portal link may be opened.
pub const LINK_LIFETIME: chrono::Duration = chrono::Duration::minutes(15);
/// How long a portal session lasts once its link was opened.
pub const SESSION_LIFETIME: chrono::Duration = chrono::Duration::hours(4);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenKind {
    Link,
    Session,
}

impl TokenKind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Link => "link",
            Self::Session => "session",
        }
    }
}

/// Why a token is refused. One message for people whatever the cause: a guesser learns nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token is not one this portal made")]
    Malformed,
    #[error("the token's signature does not match")]
    Forged,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not of the kind asked for")]
    WrongKind,
    #[error("no random bytes for a token")]
    NoRandomness,
    #[error("the portal secret cannot key an HMAC")]
    BadSecret,
}

/// A token as read, before its MAC is checked: says which merchant's secret checks it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unverified {
    pub merchant_id: MerchantId,
    kind: TokenKind,
    expires: i64,
    nonce: String,
    signed: String,
    mac: Vec<u8>,
}

/// A verified session: whose, and the nonce its CSRF token derives from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session {
    pub merchant_id: MerchantId,
    pub expires_at: i64,
    nonce: String,
}

/// A fresh portal secret for a merchant.
pub fn generate_secret() -> Result<String, TokenError> {
    random_text(32)
}

/// A fresh nonce: ties a sign-in page to the browser that opened it, and names a form so that
/// posting it again (a reload) does its work once.
pub fn nonce() -> Result<String, TokenError> {
    random_text(16)
}

fn random_text(bytes: usize) -> Result<String, TokenError> {
    let mut buffer = vec![0u8; bytes];
    getrandom::fill(&mut buffer).map_err(|_| TokenError::NoRandomness)?;
    Ok(URL_SAFE_NO_PAD.encode(buffer))
}

fn mac(secret: &str, message: &str) -> Result<Hmac<Sha256>, TokenError> {
    // HMAC takes keys of every length: this error is never seen in practice.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).map_err(|_| TokenError::BadSecret)?;
    mac.update(message.as_bytes());
    Ok(mac)
}

/// A token of `kind` for the merchant, ending at `expires_at`.
pub fn issue(
    secret: &str,
    merchant: &MerchantId,
    kind: TokenKind,
    expires_at: Timestamp,
) -> Result<String, TokenError> {
    let nonce = random_text(16)?;
    let signed = format!("v1.{merchant}.{}.{}.{nonce}", kind.as_str(), expires_at.timestamp());
    let tag = URL_SAFE_NO_PAD.encode(mac(secret, &signed)?.finalize().into_bytes());
    Ok(format!("{signed}.{tag}"))
}

/// Reads a token's parts (merchant ids and nonces hold no dots).
pub fn read(token: &str) -> Result<Unverified, TokenError> {
    let parts: Vec<&str> = token.split('.').collect();
    let [version, merchant, kind, expires, nonce, tag] = parts[..] else {
        return Err(TokenError::Malformed);
    };
    if version != "v1" || token.len() > 512 {
        return Err(TokenError::Malformed);
    }
    let kind = match kind {
        "link" => TokenKind::Link,
        "session" => TokenKind::Session,
        _ => return Err(TokenError::Malformed),
    };
    Ok(Unverified {
        merchant_id: MerchantId::parse(merchant).ok_or(TokenError::Malformed)?,
        kind,
        expires: expires.parse().map_err(|_| TokenError::Malformed)?,
        nonce: nonce.to_owned(),
        signed: token[..token.len() - tag.len() - 1].to_owned(),
        mac: URL_SAFE_NO_PAD.decode(tag).map_err(|_| TokenError::Malformed)?,
    })
}

impl Unverified {
    /// Checks the MAC under the merchant's secret (in constant time), then kind and expiry.
    pub fn verify(self, secret: &str, kind: TokenKind, now: Timestamp) -> Result<Session, TokenError> {
        mac(secret, &self.signed)?
            .verify_slice(&self.mac)
            .map_err(|_| TokenError::Forged)?;
        if self.kind != kind {
            return Err(TokenError::WrongKind);
        }
        if now.timestamp() >= self.expires {
            return Err(TokenError::Expired);
        }
        Ok(Session {
            merchant_id: self.merchant_id,
            expires_at: self.expires,
            nonce: self.nonce,
        })
    }
}

impl Session {
    /// The CSRF token of this session's forms.
    pub fn csrf_token(&self, secret: &str) -> Result<String, TokenError> {
        let tag = mac(secret, &format!("csrf.{}", self.nonce))?.finalize().into_bytes();
        Ok(URL_SAFE_NO_PAD.encode(tag))
    }

    /// Whether a form's token is this session's (constant time).
    pub fn csrf_matches(&self, secret: &str, given: &str) -> bool {
        let Ok(given) = URL_SAFE_NO_PAD.decode(given) else {
            return false;
        };
        mac(secret, &format!("csrf.{}", self.nonce)).is_ok_and(|m| m.verify_slice(&given).is_ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock;

    fn merchant() -> MerchantId {
        MerchantId::generate()
    }

    #[test]
    fn a_link_opens_once_checked_and_until_it_expires() {
        let (secret, m, now) = (generate_secret().unwrap(), merchant(), clock::now());
        let link = issue(&secret, &m, TokenKind::Link, now + LINK_LIFETIME).unwrap();
        let read_back = read(&link).unwrap();
        assert_eq!(read_back.merchant_id, m);
        let session = read_back.clone().verify(&secret, TokenKind::Link, now).unwrap();
        assert_eq!(session.merchant_id, m);
        assert_eq!(
            read_back.clone().verify(&secret, TokenKind::Link, now + LINK_LIFETIME),
            Err(TokenError::Expired)
        );
        assert_eq!(
            read_back.verify(&secret, TokenKind::Session, now),
            Err(TokenError::WrongKind),
            "a link is no session"
        );
    }

    #[test]
    fn a_changed_token_or_another_secret_is_refused() {
        let (secret, m, now) = (generate_secret().unwrap(), merchant(), clock::now());
        let session = issue(&secret, &m, TokenKind::Session, now + SESSION_LIFETIME).unwrap();
        let other = generate_secret().unwrap();
        assert_eq!(
            read(&session).unwrap().verify(&other, TokenKind::Session, now),
            Err(TokenError::Forged)
        );
        // A later expiry, or another merchant, without the secret.
        let later = session.replacen(
            &(now + SESSION_LIFETIME).timestamp().to_string(),
            &(now + chrono::Duration::days(365)).timestamp().to_string(),
            1,
        );
        assert_eq!(
            read(&later).unwrap().verify(&secret, TokenKind::Session, now),
            Err(TokenError::Forged)
        );
        let someone_else = session.replacen(m.as_str(), merchant().as_str(), 1);
        assert_eq!(
            read(&someone_else).unwrap().verify(&secret, TokenKind::Session, now),
            Err(TokenError::Forged)
        );
        for junk in [
            "",
            "v1",
            "v2.a.b.c.d.e",
            "v1.mer_x.link.notanumber.n.t",
            "v1.mer_x.admin.1.n.t",
            &"x".repeat(600),
        ] {
            assert!(read(junk).is_err(), "{junk}");
        }
    }

    #[test]
    fn a_csrf_token_belongs_to_its_session() {
        let (secret, m, now) = (generate_secret().unwrap(), merchant(), clock::now());
        let open = |t: &str| read(t).unwrap().verify(&secret, TokenKind::Session, now).unwrap();
        let first = open(&issue(&secret, &m, TokenKind::Session, now + SESSION_LIFETIME).unwrap());
        let second = open(&issue(&secret, &m, TokenKind::Session, now + SESSION_LIFETIME).unwrap());
        let token = first.csrf_token(&secret).unwrap();
        assert!(first.csrf_matches(&secret, &token));
        assert!(!second.csrf_matches(&secret, &token), "another session's token");
        assert!(!first.csrf_matches(&secret, ""));
        assert!(!first.csrf_matches(&secret, "not base64!"));
    }
}
