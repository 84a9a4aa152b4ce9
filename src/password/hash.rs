//! The password hashes `mosquitto_passwd` writes, and their check.
//!
//! - `$7$<iterations>$<base64 salt>$<base64 hash>`: PBKDF2-HMAC-SHA512
//!   with that many iterations, 64 bytes out (`mosquitto_passwd`'s
//!   default since 2.0: 101 iterations, a 12-byte salt).
//! - `$6$<base64 salt>$<base64 hash>`: SHA-512 of the password followed
//!   by the salt (`mosquitto_passwd -H sha512`, Mosquitto 1.6 and earlier).
//!
//! Base64 is the standard alphabet with padding, as OpenSSL writes it.
//! Comparisons are constant-time (ring's PBKDF2 verify, `subtle` for SHA-512).

use std::num::NonZeroU32;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ring::{digest, pbkdf2};
use subtle::ConstantTimeEq;

use crate::limits::{MAX_PASSWORD_ITERATIONS, MAX_PASSWORD_SALT};

/// Bytes of every hash `mosquitto_passwd` makes (one SHA-512 output).
pub const HASH_LEN: usize = 64;

/// Iterations `mosquitto_passwd` 2.0 uses for `$7$`.
pub const DEFAULT_ITERATIONS: u32 = 101;

/// One user's hash, decoded. Immutable; lives in a [`super::PasswordDb`].
#[derive(Clone, PartialEq, Eq)]
pub enum Hash {
    /// `$6$`: SHA-512(password || salt).
    Sha512 { salt: Vec<u8>, hash: [u8; HASH_LEN] },
    /// `$7$`: PBKDF2-HMAC-SHA512(password, salt, iterations).
    Pbkdf2 {
        iterations: NonZeroU32,
        salt: Vec<u8>,
        hash: [u8; HASH_LEN],
    },
}

/// Never prints the hash or the salt.
impl std::fmt::Debug for Hash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Hash::Sha512 { .. } => f.write_str("$6$…"),
            Hash::Pbkdf2 { iterations, .. } => write!(f, "$7${iterations}$…"),
        }
    }
}

impl Hash {
    /// Decodes a `$7$…` or `$6$…` field; `Err` says what is wrong.
    pub fn parse(field: &str) -> Result<Hash, String> {
        if let Some(rest) = field.strip_prefix("$7$") {
            let parts: Vec<&str> = rest.split('$').collect();
            let [iterations, salt, hash] = parts[..] else {
                return Err("expected $7$<iterations>$<salt>$<hash>".to_string());
            };
            let iterations = iterations
                .parse::<u32>()
                .ok()
                .filter(|n| (1..=MAX_PASSWORD_ITERATIONS).contains(n))
                .and_then(NonZeroU32::new)
                .ok_or_else(|| {
                    format!("iterations `{iterations}`: expected 1..={MAX_PASSWORD_ITERATIONS}")
                })?;
            Ok(Hash::Pbkdf2 {
                iterations,
                salt: salt_of(salt)?,
                hash: hash_of(hash)?,
            })
        } else if let Some(rest) = field.strip_prefix("$6$") {
            let parts: Vec<&str> = rest.split('$').collect();
            let [salt, hash] = parts[..] else {
                return Err("expected $6$<salt>$<hash>".to_string());
            };
            Ok(Hash::Sha512 {
                salt: salt_of(salt)?,
                hash: hash_of(hash)?,
            })
        } else {
            Err(
                "not a hash mosquitto_passwd makes ($7$ or $6$); plain-text passwords are \
                 not accepted: hash the file with `mosquitto_passwd -U <file>`"
                    .to_string(),
            )
        }
    }

    /// True if `password` hashes to this hash (in constant time for a
    /// given hash).
    pub fn verify(&self, password: &[u8]) -> bool {
        match self {
            Hash::Pbkdf2 {
                iterations,
                salt,
                hash,
            } => pbkdf2::verify(
                pbkdf2::PBKDF2_HMAC_SHA512,
                *iterations,
                salt,
                password,
                hash,
            )
            .is_ok(),
            Hash::Sha512 { salt, hash } => {
                let mut ctx = digest::Context::new(&digest::SHA512);
                ctx.update(password);
                ctx.update(salt);
                ctx.finish().as_ref().ct_eq(hash).into()
            }
        }
    }

    /// A hash no password matches that costs what checking `self` costs:
    /// what an unknown user is checked against, so that an unknown user
    /// and a wrong password take the same time.
    pub fn decoy(&self) -> Hash {
        let mut decoy = self.clone();
        match &mut decoy {
            Hash::Pbkdf2 { hash, .. } | Hash::Sha512 { hash, .. } => {
                // No derivation gives all zeros, short of a 2^-512 chance.
                *hash = [0; HASH_LEN];
            }
        }
        decoy
    }

    /// The decoy of an empty password file: `mosquitto_passwd`'s default.
    pub fn default_decoy() -> Hash {
        Hash::Pbkdf2 {
            iterations: NonZeroU32::MIN.saturating_add(DEFAULT_ITERATIONS - 1),
            salt: vec![0; 12],
            hash: [0; HASH_LEN],
        }
    }
}

fn salt_of(b64: &str) -> Result<Vec<u8>, String> {
    let salt = STANDARD
        .decode(b64)
        .map_err(|e| format!("salt is not base64: {e}"))?;
    if salt.is_empty() || salt.len() > MAX_PASSWORD_SALT {
        return Err(format!(
            "salt of {} bytes: expected 1..={MAX_PASSWORD_SALT}",
            salt.len()
        ));
    }
    Ok(salt)
}

fn hash_of(b64: &str) -> Result<[u8; HASH_LEN], String> {
    let hash = STANDARD
        .decode(b64)
        .map_err(|e| format!("hash is not base64: {e}"))?;
    <[u8; HASH_LEN]>::try_from(hash.as_slice())
        .map_err(|_| format!("hash of {} bytes: expected {HASH_LEN}", hash.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Made by mosquitto_passwd 2.0.11: alice/secret ($7$) and bob/hunter2 ($6$).
    const ALICE: &str = "$7$101$2rqEqMre0taMP63T$IK9TBjoiEn05LllqFwAgkPO3KXVdUMPCdTqoLD4x315ZFLK65wOGDcTJzOUhRMjKBbB2wzv7qqnnDNLGPhDYBQ==";
    const BOB: &str = "$6$bB2DSTsRbixC3/i3$z7H7P/WRNFks9mzMOfLAyGj8rbwCLYwsQBXG/itN6SVpxRFkUtw3Sp8Id4gpvJ0hABFC9E3SSaQfROGSO/0RbA==";

    #[test]
    fn mosquitto_passwd_hashes_verify_their_password_only() {
        let alice = Hash::parse(ALICE).expect("a $7$ hash");
        assert!(alice.verify(b"secret"));
        assert!(!alice.verify(b"secreT") && !alice.verify(b""));
        let bob = Hash::parse(BOB).expect("a $6$ hash");
        assert!(bob.verify(b"hunter2"));
        assert!(!bob.verify(b"hunter3"));
        assert!(!alice.decoy().verify(b"secret") && !bob.decoy().verify(b"hunter2"));
    }

    #[test]
    fn malformed_hashes_say_what_is_wrong() {
        let err = |s: &str| Hash::parse(s).unwrap_err();
        assert!(err("secret").contains("plain-text"));
        assert!(err("$5$abc$def").contains("plain-text"));
        assert!(err("$7$101$abc").contains("$7$<iterations>"));
        assert!(err("$7$0$AAAA$AAAA").contains("iterations `0`"));
        assert!(err("$7$x$AAAA$AAAA").contains("iterations `x`"));
        assert!(err("$6$!!$AAAA").contains("salt is not base64"));
        assert!(err("$6$AAAA$AAAA").contains("hash of 3 bytes"));
        assert!(err("$6$$AAAA").contains("salt of 0 bytes"));
    }
}
