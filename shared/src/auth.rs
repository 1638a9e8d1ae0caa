//! Keys and signed tokens: write and admin keys stored as hashes and compared in constant time, per-user inbox tokens, unsubscribe tokens.
//!
//! Nothing here keeps, logs or prints a plain key or the signing secret.

use std::fmt;
use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::{Choice, ConstantTimeEq};

type HmacSha256 = Hmac<Sha256>;

const HASH_PREFIX: &str = "sha256:";
const INBOX_PREFIX: &str = "inbox:";
const UNSUBSCRIBE_PREFIX: &str = "unsub:";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// May send events (`/v1/track`, `/v1/identify`, `/v1/batch`).
    Write,
    /// May do everything, writing included.
    Admin,
}

impl Role {
    /// Whether a caller holding `self` may do what needs `needed`: admin grants write too.
    pub fn grants(self, needed: Role) -> bool {
        matches!(
            (self, needed),
            (Role::Admin, _) | (Role::Write, Role::Write)
        )
    }
}

/// A key as stored: the SHA-256 of the key. Equality is constant time, and `Debug` shows only a
/// prefix of the hash.
#[derive(Clone)]
pub struct KeyHash([u8; 32]);

impl KeyHash {
    /// The hash of a plain key.
    pub fn of(plain: &str) -> Self {
        KeyHash(Sha256::digest(plain.as_bytes()).into())
    }

    /// From 64 hex digits (either case), as `sha256sum` prints them.
    pub fn from_hex(s: &str) -> Result<Self, AuthError> {
        decode_hash(s).map(KeyHash).map_err(AuthError::InvalidHash)
    }

    /// 64 lowercase hex digits.
    pub fn to_hex(&self) -> String {
        hex(&self.0)
    }
}

impl ConstantTimeEq for KeyHash {
    fn ct_eq(&self, other: &Self) -> Choice {
        self.0[..].ct_eq(&other.0[..])
    }
}

impl PartialEq for KeyHash {
    fn eq(&self, other: &Self) -> bool {
        self.ct_eq(other).into()
    }
}

impl Eq for KeyHash {}

impl fmt::Debug for KeyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hex = self.to_hex();
        write!(f, "KeyHash(sha256:{}…)", hex.get(..8).unwrap_or_default())
    }
}

/// The write and admin keys the server accepts.
#[derive(Clone, Default)]
pub struct Keys {
    write: Vec<KeyHash>,
    admin: Vec<KeyHash>,
}

impl fmt::Debug for Keys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keys")
            .field("write", &self.write.len())
            .field("admin", &self.admin.len())
            .finish()
    }
}

impl Keys {
    pub fn new(write: Vec<KeyHash>, admin: Vec<KeyHash>) -> Self {
        Keys { write, admin }
    }

    /// From comma-separated hashes or plain keys: entries prefixed "sha256:" are hashes, others
    /// plain keys hashed at load. Blank entries are skipped and spaces around entries ignored.
    pub fn parse(write: &str, admin: &str) -> Result<Self, AuthError> {
        Ok(Keys {
            write: parse_list("write", write)?,
            admin: parse_list("admin", admin)?,
        })
    }

    /// Which role (if any) an Authorization header value grants: "Basic base64(key:)" (Segment's
    /// convention: key as user name, empty password) or "Bearer key". The presented key's hash is
    /// compared in constant time with every stored key, with no early exit. An admin key yields
    /// [`Role::Admin`], which [grants](Role::grants) write too.
    pub fn role(&self, authorization: Option<&str>) -> Option<Role> {
        let key = presented_key(authorization?)?;
        self.role_of_key(&key)
    }

    /// The role of a key presented as it is (a `writeKey` in an event's body, as Segment's
    /// browser library sends it).
    pub fn role_of_key(&self, key: &str) -> Option<Role> {
        let presented = KeyHash::of(key);
        let mut write = Choice::from(0);
        for stored in &self.write {
            write |= presented.ct_eq(stored);
        }
        let mut admin = Choice::from(0);
        for stored in &self.admin {
            admin |= presented.ct_eq(stored);
        }
        if bool::from(admin) {
            Some(Role::Admin)
        } else if bool::from(write) {
            Some(Role::Write)
        } else {
            None
        }
    }
}

fn parse_list(list: &'static str, entries: &str) -> Result<Vec<KeyHash>, AuthError> {
    entries
        .split(',')
        .enumerate()
        .map(|(i, entry)| (i + 1, entry.trim()))
        .filter(|(_, entry)| !entry.is_empty())
        .map(|(position, entry)| match entry.strip_prefix(HASH_PREFIX) {
            Some(hex) => decode_hash(hex)
                .map(KeyHash)
                .map_err(|reason| AuthError::InvalidEntry {
                    list,
                    position,
                    reason,
                }),
            None => Ok(KeyHash::of(entry)),
        })
        .collect()
}

/// The key in an Authorization header value, if it has one.
fn presented_key(authorization: &str) -> Option<String> {
    let (scheme, credentials) = authorization.trim().split_once(char::is_whitespace)?;
    let credentials = credentials.trim();
    let key = if scheme.eq_ignore_ascii_case("basic") {
        let decoded = STANDARD
            .decode(credentials)
            .or_else(|_| STANDARD_NO_PAD.decode(credentials))
            .ok()?;
        let user_pass = String::from_utf8(decoded).ok()?;
        match user_pass.split_once(':') {
            // Some clients put the key in the password instead.
            Some(("", password)) => password.to_string(),
            Some((user, _)) => user.to_string(),
            None => user_pass,
        }
    } else if scheme.eq_ignore_ascii_case("bearer") {
        credentials.to_string()
    } else {
        return None;
    };
    (!key.is_empty()).then_some(key)
}

fn decode_hash(s: &str) -> Result<[u8; 32], &'static str> {
    let digits = s.as_bytes();
    if digits.len() != 64 {
        return Err("a key hash is 64 hex digits (a SHA-256)");
    }
    let mut hash = [0u8; 32];
    for (byte, pair) in hash.iter_mut().zip(digits.chunks_exact(2)) {
        match (nibble(pair[0]), nibble(pair[1])) {
            (Some(high), Some(low)) => *byte = (high << 4) | low,
            _ => return Err("a key hash has only hex digits 0-9 and a-f"),
        }
    }
    Ok(hash)
}

fn nibble(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(char::from(DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    out
}

/// HMAC-SHA256 tokens under a server-side secret.
#[derive(Clone)]
pub struct Signer {
    secret: Vec<u8>,
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Signer { secret: <redacted> }")
    }
}

impl Signer {
    pub fn new(secret: impl Into<Vec<u8>>) -> Self {
        Signer {
            secret: secret.into(),
        }
    }

    fn mac(&self, message: &[u8]) -> HmacSha256 {
        // HMAC takes a key of any length, so this cannot fail.
        let mut mac = HmacSha256::new_from_slice(&self.secret)
            .expect("HMAC-SHA256 accepts a key of any length");
        mac.update(message);
        mac
    }

    /// Token an app's backend mints for its user's inbox: base64url (no padding) of
    /// HMAC-SHA256(secret, "inbox:" + user_id).
    pub fn inbox_token(&self, user_id: &str) -> String {
        let tag = self.mac(inbox_message(user_id).as_bytes()).finalize();
        URL_SAFE_NO_PAD.encode(tag.into_bytes())
    }

    /// Whether `token` is `user_id`'s inbox token (compared in constant time).
    pub fn verify_inbox_token(&self, user_id: &str, token: &str) -> bool {
        let Ok(tag) = URL_SAFE_NO_PAD.decode(token) else {
            return false;
        };
        self.mac(inbox_message(user_id).as_bytes())
            .verify_slice(&tag)
            .is_ok()
    }

    /// Unsubscribe token binding user, channel and journey. The payload is
    /// `unsub:["user","channel","journey"]` (a JSON array, so ids with `:` or `"` stay
    /// unambiguous); the token is base64url(payload) + "." + base64url(HMAC(secret, payload)),
    /// both without padding.
    pub fn unsubscribe_token(&self, user_id: &str, channel: &str, journey: &str) -> String {
        self.sign_unsubscribe(&serde_json::json!([user_id, channel, journey]))
    }

    /// An unsubscribe token that also binds a subscription topic (a topic journey's email):
    /// `unsub:["user","channel","journey","topic"]`. It unsubscribes from the topic; its
    /// channel is what "unsubscribe from all email" on the link's page may stop.
    pub fn topic_unsubscribe_token(
        &self,
        user_id: &str,
        channel: &str,
        journey: &str,
        topic: &str,
    ) -> String {
        self.sign_unsubscribe(&serde_json::json!([user_id, channel, journey, topic]))
    }

    fn sign_unsubscribe(&self, ids: &serde_json::Value) -> String {
        let payload = format!("{UNSUBSCRIBE_PREFIX}{ids}");
        let tag = self.mac(payload.as_bytes()).finalize();
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(payload),
            URL_SAFE_NO_PAD.encode(tag.into_bytes())
        )
    }

    /// What a valid, unforged unsubscribe token binds; a token made before topics (three ids)
    /// binds none.
    pub fn verify_unsubscribe_token(&self, token: &str) -> Option<UnsubscribeToken> {
        let (payload, tag) = token.split_once('.')?;
        let payload = URL_SAFE_NO_PAD.decode(payload).ok()?;
        let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
        self.mac(&payload).verify_slice(&tag).ok()?;
        let ids = payload.strip_prefix(UNSUBSCRIBE_PREFIX.as_bytes())?;
        let ids: Vec<String> = serde_json::from_slice(ids).ok()?;
        let mut ids = ids.into_iter();
        let (user, channel, journey) = (ids.next()?, ids.next()?, ids.next()?);
        let topic = ids.next();
        if ids.next().is_some() {
            return None;
        }
        Some(UnsubscribeToken {
            user,
            channel,
            journey,
            topic,
        })
    }
}

/// What an unsubscribe link's token binds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsubscribeToken {
    pub user: String,
    pub channel: String,
    pub journey: String,
    /// The journey's subscription topic: the link unsubscribes from it alone.
    pub topic: Option<String>,
}

impl UnsubscribeToken {
    /// The (user, channel, journey) of the token, as tokens before topics bound them.
    pub fn ids(&self) -> (String, String, String) {
        (
            self.user.clone(),
            self.channel.clone(),
            self.journey.clone(),
        )
    }
}

fn inbox_message(user_id: &str) -> String {
    format!("{INBOX_PREFIX}{user_id}")
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// A hash given to [`KeyHash::from_hex`] is malformed.
    #[error("invalid key hash: {0}")]
    InvalidHash(&'static str),
    /// A `sha256:` entry of a key list is malformed (`position` counts entries from 1).
    #[error("{list} keys, entry {position}: invalid key hash: {reason}")]
    InvalidEntry {
        list: &'static str,
        position: usize,
        reason: &'static str,
    },
}

/// Generates a fresh random key (for `waymark dev`): `prefix` (by convention `"wk_"`) then 32
/// bytes from /dev/urandom, hex-encoded. If /dev/urandom is unreadable it falls back to hashing
/// the time, the process id and a counter, which is guessable, and warns.
pub fn generate_key(prefix: &str) -> String {
    let mut bytes = [0u8; 32];
    let random = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes));
    if let Err(e) = random {
        tracing::warn!(error = %e, "/dev/urandom is unreadable; deriving a key from the time and process id");
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let mut hasher = Sha256::new();
        hasher.update(nanos.to_le_bytes());
        hasher.update(std::process::id().to_le_bytes());
        hasher.update(COUNTER.fetch_add(1, Ordering::Relaxed).to_le_bytes());
        bytes = hasher.finalize().into();
    }
    format!("{prefix}{}", hex(&bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(user_pass: &str) -> String {
        format!("Basic {}", STANDARD.encode(user_pass))
    }

    fn keys() -> Keys {
        Keys::parse("w1, w2", "a1").expect("valid keys")
    }

    #[test]
    fn roles_from_authorization_headers() {
        let cases: Vec<(&str, Option<String>, Option<Role>)> = vec![
            ("basic write", Some(basic("w1:")), Some(Role::Write)),
            ("basic second write", Some(basic("w2:")), Some(Role::Write)),
            ("basic admin", Some(basic("a1:")), Some(Role::Admin)),
            (
                "basic password ignored",
                Some(basic("w1:whatever")),
                Some(Role::Write),
            ),
            ("basic no colon", Some(basic("w1")), Some(Role::Write)),
            (
                "basic key as password",
                Some(basic(":w1")),
                Some(Role::Write),
            ),
            (
                "basic unpadded",
                Some(format!("Basic {}", STANDARD_NO_PAD.encode("w1:"))),
                Some(Role::Write),
            ),
            (
                "basic lowercase scheme",
                Some(format!("basic {}", STANDARD.encode("w1:"))),
                Some(Role::Write),
            ),
            ("bearer write", Some("Bearer w1".into()), Some(Role::Write)),
            ("bearer admin", Some("Bearer a1".into()), Some(Role::Admin)),
            (
                "bearer lowercase, extra spaces",
                Some("  bearer   w2  ".into()),
                Some(Role::Write),
            ),
            ("basic wrong key", Some(basic("nope:")), None),
            ("bearer wrong key", Some("Bearer nope".into()), None),
            (
                "bearer base64 of key",
                Some(format!("Bearer {}", STANDARD.encode("w1:"))),
                None,
            ),
            ("basic raw key", Some("Basic w1".into()), None),
            ("missing", None, None),
            ("empty", Some(String::new()), None),
            ("scheme only", Some("Basic".into()), None),
            ("basic empty", Some("Basic ".into()), None),
            (
                "basic malformed base64",
                Some("Basic !!!not-base64".into()),
                None,
            ),
            ("basic empty user and password", Some(basic(":")), None),
            (
                "basic invalid UTF-8",
                Some(format!("Basic {}", STANDARD.encode([0xff, 0xfe, b':']))),
                None,
            ),
            ("bearer empty", Some("Bearer  ".into()), None),
            ("other scheme", Some("Token w1".into()), None),
            ("no scheme", Some("w1".into()), None),
            ("blank entry is no key", Some("Bearer ,".into()), None),
        ];
        let keys = keys();
        for (name, header, role) in cases {
            assert_eq!(keys.role(header.as_deref()), role, "{name}");
        }
    }

    #[test]
    fn admin_grants_write() {
        let role = keys().role(Some("Bearer a1")).expect("admin key");
        assert_eq!(role, Role::Admin);
        assert!(role.grants(Role::Write));
        assert!(role.grants(Role::Admin));
        assert!(Role::Write.grants(Role::Write));
        assert!(!Role::Write.grants(Role::Admin));
    }

    #[test]
    fn a_key_in_both_lists_is_admin() {
        let keys = Keys::parse("k", "k").expect("valid");
        assert_eq!(keys.role(Some("Bearer k")), Some(Role::Admin));
    }

    #[test]
    fn hashed_entries_are_accepted() {
        let write = format!("sha256:{}", KeyHash::of("w1").to_hex());
        let admin = format!("sha256:{}", KeyHash::of("a1").to_hex().to_uppercase());
        let keys = Keys::parse(&write, &admin).expect("valid");
        assert_eq!(keys.role(Some("Bearer w1")), Some(Role::Write));
        assert_eq!(keys.role(Some(&basic("a1:"))), Some(Role::Admin));
        // The hash itself is not a key.
        assert_eq!(keys.role(Some(&format!("Bearer {write}"))), None);
        assert_eq!(
            Keys::new(vec![KeyHash::of("w1")], vec![]).role(Some("Bearer w1")),
            Some(Role::Write)
        );
    }

    #[test]
    fn no_keys_grant_nothing() {
        let keys = Keys::parse("", " , ").expect("empty lists are fine");
        assert_eq!(keys.role(Some("Bearer ")), None);
        assert_eq!(keys.role(Some("Bearer x")), None);
        assert_eq!(Keys::default().role(Some(&basic("x:"))), None);
    }

    #[test]
    fn malformed_hash_entries_are_errors() {
        let short = Keys::parse("ok, sha256:abcd", "").expect_err("too short");
        assert!(
            matches!(
                short,
                AuthError::InvalidEntry {
                    list: "write",
                    position: 2,
                    ..
                }
            ),
            "{short:?}"
        );
        let not_hex = format!("sha256:{}", "g".repeat(64));
        let err = Keys::parse("", &not_hex).expect_err("not hex");
        assert!(
            matches!(
                err,
                AuthError::InvalidEntry {
                    list: "admin",
                    position: 1,
                    ..
                }
            ),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            "admin keys, entry 1: invalid key hash: a key hash has only hex digits 0-9 and a-f"
        );
    }

    #[test]
    fn key_hash_hex() {
        // SHA-256("abc"), FIPS 180-2.
        let abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert_eq!(KeyHash::of("abc").to_hex(), abc);
        assert_eq!(KeyHash::from_hex(abc).expect("valid"), KeyHash::of("abc"));
        assert_eq!(
            KeyHash::from_hex(&abc.to_uppercase()).expect("valid"),
            KeyHash::of("abc")
        );
        assert_ne!(KeyHash::of("abc"), KeyHash::of("abd"));
        for bad in [
            "",
            "abc",
            &abc[..63],
            &format!("{abc}0"),
            &format!("é{}", &abc[2..]),
        ] {
            assert!(
                matches!(KeyHash::from_hex(bad), Err(AuthError::InvalidHash(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn debug_output_leaks_no_secrets() {
        let keys = Keys::parse("secret-write-key", "secret-admin-key").expect("valid");
        assert_eq!(format!("{keys:?}"), "Keys { write: 1, admin: 1 }");
        let signer = Signer::new("hunter2");
        assert!(!format!("{signer:?}").contains("hunter2"));
        let hash = KeyHash::of("abc");
        assert_eq!(format!("{hash:?}"), "KeyHash(sha256:ba7816bf…)");
    }

    #[test]
    fn inbox_tokens_verify_only_for_their_user() {
        let signer = Signer::new("server secret");
        let token = signer.inbox_token("user-a");
        assert!(signer.verify_inbox_token("user-a", &token));
        assert!(!signer.verify_inbox_token("user-b", &token));
        assert!(!Signer::new("other secret").verify_inbox_token("user-a", &token));
        assert!(!signer.verify_inbox_token("user-a", ""));
        assert!(!signer.verify_inbox_token("user-a", "not base64!"));
        assert!(!signer.verify_inbox_token("user-a", &token[..token.len() - 2]));
        assert!(!signer.verify_inbox_token("user-a", &format!("{token}=")));
        let mut tampered = token.clone().into_bytes();
        tampered[0] = if tampered[0] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(tampered).expect("ASCII");
        assert!(!signer.verify_inbox_token("user-a", &tampered));
        // URL-safe and unpadded, 32 bytes.
        assert_eq!(token.len(), 43);
        assert!(token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
    }

    #[test]
    fn inbox_token_is_the_documented_hmac() {
        // An app's backend in another language computes the same thing.
        let mut mac = HmacSha256::new_from_slice(b"s3cret").expect("any key length");
        mac.update(b"inbox:u1");
        let expected = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        assert_eq!(Signer::new("s3cret").inbox_token("u1"), expected);
    }

    #[test]
    fn unsubscribe_tokens_round_trip() {
        let signer = Signer::new(b"server secret".to_vec());
        let cases = [
            ("u1", "email", "welcome"),
            ("tenant:42:user", "sms", "journey:with:colons"),
            (r#"quote"and\backslash"#, "push", "é 漢字 🚀"),
            ("", "", ""),
        ];
        for (user, channel, journey) in cases {
            let token = signer.unsubscribe_token(user, channel, journey);
            assert_eq!(
                signer.verify_unsubscribe_token(&token).map(|t| t.ids()),
                Some((user.to_string(), channel.to_string(), journey.to_string())),
                "{user} {channel} {journey}"
            );
            assert!(token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.'));
        }
        // Ids with colons cannot be reshuffled into another triple.
        let a = signer.unsubscribe_token("a:b", "c", "d");
        let b = signer.unsubscribe_token("a", "b:c", "d");
        assert_ne!(a, b);
    }

    /// A topic journey's token binds its topic too; one made before topics binds none.
    #[test]
    fn topic_unsubscribe_tokens_bind_the_topic() {
        let signer = Signer::new("server secret");
        let token = signer.topic_unsubscribe_token("u1", "email", "digest", "newsletter");
        assert_eq!(
            signer.verify_unsubscribe_token(&token),
            Some(UnsubscribeToken {
                user: "u1".into(),
                channel: "email".into(),
                journey: "digest".into(),
                topic: Some("newsletter".into()),
            })
        );
        let old = signer.unsubscribe_token("u1", "email", "digest");
        assert_eq!(
            signer.verify_unsubscribe_token(&old).and_then(|t| t.topic),
            None
        );
        assert_ne!(token, old);
    }

    #[test]
    fn forged_unsubscribe_tokens_fail() {
        let signer = Signer::new("server secret");
        let token = signer.unsubscribe_token("u1", "email", "welcome");
        let (payload, tag) = token.split_once('.').expect("two parts");
        let other = signer.unsubscribe_token("u2", "email", "welcome");
        let (other_payload, other_tag) = other.split_once('.').expect("two parts");
        let forged_payload = URL_SAFE_NO_PAD.encode(r#"unsub:["u2","email","welcome"]"#);
        let mut flipped = tag.to_string().into_bytes();
        flipped[5] = if flipped[5] == b'A' { b'B' } else { b'A' };
        let flipped = String::from_utf8(flipped).expect("ASCII");
        let inbox = signer.inbox_token("u1");
        let cases = [
            ("swapped payload", format!("{other_payload}.{tag}")),
            ("swapped tag", format!("{payload}.{other_tag}")),
            ("forged payload", format!("{forged_payload}.{tag}")),
            ("flipped tag", format!("{payload}.{flipped}")),
            ("no tag", payload.to_string()),
            ("empty tag", format!("{payload}.")),
            ("extra part", format!("{token}.x")),
            ("padded", format!("{token}=")),
            ("empty", String::new()),
            ("inbox token", inbox.clone()),
            ("inbox token as tag", format!("{payload}.{inbox}")),
        ];
        for (name, forged) in cases {
            assert_eq!(signer.verify_unsubscribe_token(&forged), None, "{name}");
        }
        assert_eq!(Signer::new("other").verify_unsubscribe_token(&token), None);
    }

    #[test]
    fn a_signed_payload_of_the_wrong_shape_fails() {
        let signer = Signer::new("k");
        let sign = |payload: &str| {
            let tag = signer.mac(payload.as_bytes()).finalize().into_bytes();
            format!(
                "{}.{}",
                URL_SAFE_NO_PAD.encode(payload),
                URL_SAFE_NO_PAD.encode(tag)
            )
        };
        for payload in [
            "unsub:u1:email:welcome",
            r#"unsub:["u1","email"]"#,
            r#"inbox:["u1","email","welcome"]"#,
            r#"unsub:["u1","email",3]"#,
            r#"unsub:["u1","email","welcome","news",""]"#,
            r#"unsub:["u1","email","welcome",null]"#,
        ] {
            assert_eq!(
                signer.verify_unsubscribe_token(&sign(payload)),
                None,
                "{payload}"
            );
        }
    }

    #[test]
    fn generated_keys_are_fresh_hex() {
        let a = generate_key("wk_");
        let b = generate_key("wk_");
        assert_ne!(a, b);
        let digits = a.strip_prefix("wk_").expect("prefixed");
        assert_eq!(digits.len(), 64);
        assert!(digits
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        let keys = Keys::parse(&a, "").expect("valid");
        assert_eq!(keys.role(Some(&format!("Bearer {a}"))), Some(Role::Write));
    }

    proptest::proptest! {
        #[test]
        fn any_header_is_handled(header in ".{0,200}") {
            let _ = keys().role(Some(&header));
        }

        #[test]
        fn any_ids_round_trip(user in ".{0,64}", channel in ".{0,16}", journey in ".{0,64}") {
            let signer = Signer::new("secret");
            let token = signer.unsubscribe_token(&user, &channel, &journey);
            proptest::prop_assert_eq!(signer.verify_unsubscribe_token(&token).map(|t| t.ids()), Some((user.clone(), channel.clone(), journey.clone())));
            let token = signer.topic_unsubscribe_token(&user, &channel, &journey, &journey);
            proptest::prop_assert_eq!(signer.verify_unsubscribe_token(&token).and_then(|t| t.topic), Some(journey));
        }

        #[test]
        fn any_token_string_is_handled(token in ".{0,200}") {
            let signer = Signer::new("secret");
            let _ = signer.verify_unsubscribe_token(&token);
            let _ = signer.verify_inbox_token("u1", &token);
        }
    }
}
