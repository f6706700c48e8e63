//! Asymmetric webhook signatures: Standard Webhooks `v1a` (ed25519) over the same content as
//! `v1`, `{webhook-id}.{webhook-timestamp}.{body}`, and the public keys a receiver verifies them
//! with, published as JWKs (RFC 8037) named by their RFC 7638 thumbprint.
//!
//! Keys are written as Standard Webhooks does: `whsk_` + base64 of the 64-byte libsodium key
//! pair (seed, then public key) for the private key, `whpk_` + base64 of the 32-byte public key.
//! The crypto is aws-lc-rs: the library that already serves TLS to every binary, so ed25519
//! adds no second implementation to the Lambda bootstraps.

use crate::clock::Timestamp;
use aws_lc_rs::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::sync::Arc;

const SEED_LEN: usize = 32;
const PUBLIC_LEN: usize = 32;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("not a whsk_ key: base64 of a 64-byte ed25519 key pair")]
    BadPrivateKey,
    #[error("not a whpk_ key: base64 of a 32-byte ed25519 public key")]
    BadPublicKey,
    #[error("the system's random source failed")]
    NoRandomness,
}

/// An ed25519 key pair as an endpoint keeps it; the private half is never shown.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SigningKey {
    /// `whsk_…`
    pub private: String,
    /// `whpk_…`
    pub public: String,
    /// The RFC 7638 thumbprint of its JWK: the `kid` receivers look it up by.
    pub kid: String,
    #[serde(with = "crate::clock::rfc3339_serde")]
    pub created_at: Timestamp,
    /// Set when a newer key replaced it: it still signs until then.
    #[serde(default, with = "crate::clock::optional_rfc3339_serde")]
    pub expires_at: Option<Timestamp>,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("public", &self.public)
            .field("created_at", &self.created_at)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// A fresh key pair.
    pub fn generate(now: Timestamp) -> Result<Self, KeyError> {
        let mut seed = [0u8; SEED_LEN];
        getrandom::fill(&mut seed).map_err(|_| KeyError::NoRandomness)?;
        Self::from_seed(&seed, now)
    }

    fn from_seed(seed: &[u8; SEED_LEN], now: Timestamp) -> Result<Self, KeyError> {
        let pair = Ed25519KeyPair::from_seed_unchecked(seed).map_err(|_| KeyError::BadPrivateKey)?;
        let public = pair.public_key().as_ref().to_vec();
        let mut both = seed.to_vec();
        both.extend_from_slice(&public);
        Ok(Self {
            private: format!("whsk_{}", STANDARD.encode(both)),
            public: format!("whpk_{}", STANDARD.encode(&public)),
            kid: thumbprint(&public),
            created_at: now,
            expires_at: None,
        })
    }

    /// A key from its `whsk_` form (the seed and public key must agree).
    pub fn from_private(private: &str, now: Timestamp) -> Result<Self, KeyError> {
        let (seed, public) = pair_of(private)?;
        let key = Self::from_seed(&seed, now)?;
        if key.public != format!("whpk_{}", STANDARD.encode(public)) {
            return Err(KeyError::BadPrivateKey);
        }
        Ok(key)
    }

    /// Whether it still signs at `now`.
    pub fn active(&self, now: Timestamp) -> bool {
        self.expires_at.is_none_or(|t| t > now)
    }

    /// The public key as a JWK (RFC 8037).
    pub fn jwk(&self) -> Result<serde_json::Value, KeyError> {
        jwk(&self.kid, &self.public)
    }

    /// What a store publishes of it.
    pub fn published(&self) -> PublishedKey {
        PublishedKey {
            kid: self.kid.clone(),
            public: self.public.clone(),
            expires_at: self.expires_at,
        }
    }

    /// One `v1a,<base64>` signature of `{id}.{timestamp}.{body}`.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> Result<String, KeyError> {
        let pair = key_pair(&self.private)?;
        let mut content = Vec::with_capacity(id.len() + body.len() + 24);
        content.extend_from_slice(id.as_bytes());
        content.push(b'.');
        content.extend_from_slice(timestamp.to_string().as_bytes());
        content.push(b'.');
        content.extend_from_slice(body);
        Ok(format!("v1a,{}", STANDARD.encode(pair.sign(&content).as_ref())))
    }
}

/// Key pairs ready to sign, by their `whsk_` text. Making one from its seed derives the public
/// key (a scalar multiplication), and endpoints are read afresh for every batch, so the pairs are
/// kept here instead. Keyed by the private key itself: an entry can never be stale, so it delays
/// and reorders nothing; a rotated-out key's entry only lingers until pushed out. At most
/// [`KEY_PAIRS_MAX`], the least recently used pushed out first; a short list searched in order
/// (comparing a few hundred keys costs far less than the signature it serves).
static KEY_PAIRS: Mutex<Vec<(String, Arc<Ed25519KeyPair>)>> = Mutex::new(Vec::new());
const KEY_PAIRS_MAX: usize = 256;

fn key_pair(private: &str) -> Result<Arc<Ed25519KeyPair>, KeyError> {
    if let Some(pair) = kept_pair(private) {
        return Ok(pair);
    }
    let (seed, _) = pair_of(private)?;
    let pair = Arc::new(Ed25519KeyPair::from_seed_unchecked(&seed).map_err(|_| KeyError::BadPrivateKey)?);
    let mut pairs = KEY_PAIRS.lock();
    // Another caller may have made it meanwhile: one entry per key.
    if !pairs.iter().any(|(k, _)| k == private) {
        if pairs.len() >= KEY_PAIRS_MAX {
            pairs.remove(0);
        }
        pairs.push((private.to_owned(), pair.clone()));
    }
    Ok(pair)
}

/// The kept pair of `private`, moved to the end (the most recently used).
fn kept_pair(private: &str) -> Option<Arc<Ed25519KeyPair>> {
    let mut pairs = KEY_PAIRS.lock();
    let at = pairs.iter().position(|(k, _)| k == private)?;
    let entry = pairs.remove(at);
    let pair = entry.1.clone();
    pairs.push(entry);
    Some(pair)
}

/// A public key as stores publish it for `/.well-known/webhook-keys`: its `kid`, its `whpk_`
/// form and when it stops signing. Nothing says whose key it is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishedKey {
    pub kid: String,
    pub public: String,
    #[serde(default, with = "crate::clock::optional_rfc3339_serde")]
    pub expires_at: Option<Timestamp>,
}

impl PublishedKey {
    /// Whether it still signs at `now` (so receivers must still accept it).
    pub fn active(&self, now: Timestamp) -> bool {
        self.expires_at.is_none_or(|t| t > now)
    }

    pub fn jwk(&self) -> Result<serde_json::Value, KeyError> {
        jwk(&self.kid, &self.public)
    }
}

fn jwk(kid: &str, public: &str) -> Result<serde_json::Value, KeyError> {
    let public = public_bytes(public)?;
    Ok(serde_json::json!({
        "kty": "OKP",
        "crv": "Ed25519",
        "x": URL_SAFE_NO_PAD.encode(public),
        "kid": kid,
        "use": "sig",
        "alg": "EdDSA",
    }))
}

fn pair_of(private: &str) -> Result<([u8; SEED_LEN], [u8; PUBLIC_LEN]), KeyError> {
    let raw = STANDARD
        .decode(private.strip_prefix("whsk_").ok_or(KeyError::BadPrivateKey)?)
        .map_err(|_| KeyError::BadPrivateKey)?;
    if raw.len() != SEED_LEN + PUBLIC_LEN {
        return Err(KeyError::BadPrivateKey);
    }
    let mut seed = [0u8; SEED_LEN];
    let mut public = [0u8; PUBLIC_LEN];
    seed.copy_from_slice(&raw[..SEED_LEN]);
    public.copy_from_slice(&raw[SEED_LEN..]);
    Ok((seed, public))
}

fn public_bytes(public: &str) -> Result<Vec<u8>, KeyError> {
    let raw = STANDARD
        .decode(public.strip_prefix("whpk_").ok_or(KeyError::BadPublicKey)?)
        .map_err(|_| KeyError::BadPublicKey)?;
    if raw.len() != PUBLIC_LEN {
        return Err(KeyError::BadPublicKey);
    }
    Ok(raw)
}

/// RFC 7638: base64url(SHA-256 of the JWK's required members in lexical order, no spaces).
fn thumbprint(public: &[u8]) -> String {
    let canonical = format!(
        r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#,
        URL_SAFE_NO_PAD.encode(public)
    );
    URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
}

/// Checks a `webhook-signature` header's `v1a` signatures against a `whpk_` public key.
pub fn verify_v1a(
    public: &str,
    id: &str,
    timestamp: &str,
    header: &str,
    body: &[u8],
) -> Result<(), crate::signature::SignatureError> {
    use crate::signature::SignatureError;
    let key = public_bytes(public).map_err(|_| SignatureError::BadSecret)?;
    let content = [id.as_bytes(), b".", timestamp.trim().as_bytes(), b".", body].concat();
    let verifier = UnparsedPublicKey::new(&ED25519, key);
    let candidates: Vec<Vec<u8>> = header
        .split_whitespace()
        .filter_map(|sig| sig.strip_prefix("v1a,"))
        .filter_map(|b64| STANDARD.decode(b64).ok())
        .collect();
    if candidates.is_empty() {
        return Err(SignatureError::Malformed);
    }
    if candidates.iter().any(|sig| verifier.verify(&content, sig).is_ok()) {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signature::SignatureError;

    // The key pair and signature of Standard Webhooks' asymmetric reference (svix-server's
    // `test_asymmetric_key_signing`).
    const SECRET: &str =
        "whsk_6Xb/dCcHpPea21PS1N9VY/NZW723CEc77N4rJCubMbfVKIDij2HKpMKkioLlX0dRqSKJp4AJ6p9lMicMFs6Kvg==";
    const PUBLIC: &str = "whpk_1SiA4o9hyqTCpIqC5V9HUakiiaeACeqfZTInDBbOir4=";
    const ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const TS: i64 = 1_614_265_330;
    const BODY: &[u8] = br#"{"test": 2432232314}"#;
    const SIGNATURE: &str =
        "v1a,hnO3f9T8Ytu9HwrXslvumlUpqtNVqkhqw/enGzPCXe5BdqzCInXqYXFymVJaA7AZdpXwVLPo3mNl8EM+m7TBAg==";

    #[test]
    fn the_reference_key_signs_the_reference_signature() {
        let key = SigningKey::from_private(SECRET, crate::clock::now()).unwrap();
        assert_eq!(key.public, PUBLIC);
        assert_eq!(key.sign(ID, TS, BODY).unwrap(), SIGNATURE);
        assert_eq!(verify_v1a(PUBLIC, ID, &TS.to_string(), SIGNATURE, BODY), Ok(()));
    }

    #[test]
    fn the_kid_is_the_rfc_7638_thumbprint_and_the_jwk_shows_no_private_part() {
        let key = SigningKey::from_private(SECRET, crate::clock::now()).unwrap();
        let jwk = key.jwk().unwrap();
        assert_eq!(jwk["kty"], "OKP");
        assert_eq!(jwk["crv"], "Ed25519");
        assert_eq!(jwk["x"], "1SiA4o9hyqTCpIqC5V9HUakiiaeACeqfZTInDBbOir4");
        assert_eq!(jwk["kid"], key.kid.as_str());
        assert!(jwk.get("d").is_none());
        // SHA-256 of {"crv":"Ed25519","kty":"OKP","x":"1SiA…Oir4"}, base64url.
        let canonical = r#"{"crv":"Ed25519","kty":"OKP","x":"1SiA4o9hyqTCpIqC5V9HUakiiaeACeqfZTInDBbOir4"}"#;
        assert_eq!(key.kid, URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes())));
        assert!(!format!("{key:?}").contains("whsk_"), "the private key is never logged");
    }

    #[test]
    fn a_generated_key_signs_what_it_verifies_and_nothing_else() {
        let key = SigningKey::generate(crate::clock::now()).unwrap();
        let other = SigningKey::generate(crate::clock::now()).unwrap();
        assert_ne!(key.kid, other.kid);
        let header = format!(
            "{} {}",
            key.sign(ID, TS, BODY).unwrap(),
            other.sign(ID, TS, BODY).unwrap()
        );
        assert_eq!(verify_v1a(&key.public, ID, &TS.to_string(), &header, BODY), Ok(()));
        assert_eq!(
            verify_v1a(&key.public, ID, &TS.to_string(), &header, b"{}"),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_v1a(&key.public, ID, &TS.to_string(), "v1,abc", BODY),
            Err(SignatureError::Malformed)
        );
    }

    /// The kept key pairs: each key, signing again and in turn with others, signs as itself.
    #[test]
    fn kept_key_pairs_sign_as_their_own_key() {
        let now = crate::clock::now();
        let keys: Vec<SigningKey> = (0..3).map(|_| SigningKey::generate(now).unwrap()).collect();
        for round in 0..3 {
            for key in &keys {
                let signature = key.sign(ID, TS + round, BODY).unwrap();
                let ts = (TS + round).to_string();
                assert_eq!(verify_v1a(&key.public, ID, &ts, &signature, BODY), Ok(()));
                for other in keys.iter().filter(|k| k.kid != key.kid) {
                    assert_eq!(
                        verify_v1a(&other.public, ID, &ts, &signature, BODY),
                        Err(SignatureError::Mismatch)
                    );
                }
            }
        }
    }

    #[test]
    fn malformed_keys_are_refused() {
        let now = crate::clock::now();
        for bad in [
            "",
            "whsk_",
            "whsk_AAAA",
            &SECRET[..SECRET.len() - 4],
            "whpk_1SiA4o9hyqTCpIqC5V9HUakiiaeACeqfZTInDBbOir4=",
        ] {
            assert_eq!(
                SigningKey::from_private(bad, now).err(),
                Some(KeyError::BadPrivateKey),
                "{bad}"
            );
        }
        // A pair whose public half does not belong to its seed.
        let mut mismatched = STANDARD.decode(&SECRET[5..]).unwrap();
        mismatched[40] ^= 1;
        let mismatched = format!("whsk_{}", STANDARD.encode(mismatched));
        assert_eq!(
            SigningKey::from_private(&mismatched, now).err(),
            Some(KeyError::BadPrivateKey)
        );
    }
}
