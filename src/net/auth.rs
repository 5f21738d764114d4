//! Mutual challenge-response authentication with a shared cluster secret.
//!
//! Each end sends a fresh random nonce in its Hello, then an Auth frame whose proof
//! is `HMAC-SHA256(secret, label | role | dialer hello | listener hello)`, where each
//! hello contributes its node id, cluster name and nonce. Because both nonces are in
//! every proof, a proof seen on one connection is worthless on another; because the
//! role (dialer or listener) is in it, a peer cannot reflect our own proof back to
//! us. The secret itself never crosses the wire. Tags are compared in constant time.
//!
//! An observer of a handshake could try to guess a weak secret offline; the secret
//! should be long and random (32 random bytes, say). Nothing is encrypted: TLS is
//! not built yet.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use super::frame::{Hello, NONCE_LEN, PROOF_LEN};

/// Which end of the connection a proof is by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The end that connected.
    Dialer,
    /// The end that accepted.
    Listener,
}

/// Domain separation: these tags are for nothing but this handshake.
const LABEL: &[u8] = b"weir data plane auth v1";

/// A fresh random nonce from the operating system.
pub fn nonce() -> Result<[u8; NONCE_LEN], getrandom::Error> {
    let mut nonce = [0u8; NONCE_LEN];
    getrandom::fill(&mut nonce)?;
    Ok(nonce)
}

fn mac(secret: &[u8], by: Role, dialer: &Hello, listener: &Hello) -> Hmac<Sha256> {
    // HMAC takes keys of any length; the error case cannot happen for it.
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
    mac.update(LABEL);
    mac.update(&[match by {
        Role::Dialer => 1,
        Role::Listener => 2,
    }]);
    for hello in [dialer, listener] {
        for name in [&hello.node, &hello.cluster] {
            mac.update(&(name.len() as u64).to_le_bytes());
            mac.update(name.as_bytes());
        }
        mac.update(&hello.nonce);
    }
    mac
}

/// The proof that the end in role `by` knows `secret`, for the hellos exchanged.
pub fn proof(secret: &[u8], by: Role, dialer: &Hello, listener: &Hello) -> [u8; PROOF_LEN] {
    mac(secret, by, dialer, listener)
        .finalize()
        .into_bytes()
        .into()
}

/// Whether `proof` is what the end in role `by` had to send, compared in constant
/// time.
pub fn verify(
    secret: &[u8],
    by: Role,
    dialer: &Hello,
    listener: &Hello,
    proof: &[u8; PROOF_LEN],
) -> bool {
    mac(secret, by, dialer, listener)
        .verify_slice(proof)
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello(node: &str, nonce: u8) -> Hello {
        Hello {
            node: node.into(),
            cluster: "c".into(),
            nonce: [nonce; NONCE_LEN],
        }
    }

    #[test]
    fn the_right_secret_verifies_and_a_wrong_one_does_not() {
        let (d, l) = (hello("a", 1), hello("b", 2));
        let p = proof(b"secret", Role::Dialer, &d, &l);
        assert!(verify(b"secret", Role::Dialer, &d, &l, &p));
        assert!(!verify(b"other", Role::Dialer, &d, &l, &p));
    }

    #[test]
    fn a_proof_is_bound_to_the_role_and_both_nonces() {
        let (d, l) = (hello("a", 1), hello("b", 2));
        let p = proof(b"s", Role::Dialer, &d, &l);
        assert!(
            !verify(b"s", Role::Listener, &d, &l, &p),
            "reflected to the other role"
        );
        assert!(!verify(b"s", Role::Dialer, &hello("a", 9), &l, &p));
        assert!(!verify(b"s", Role::Dialer, &d, &hello("b", 9), &p));
    }

    #[test]
    fn nonces_differ() {
        assert_ne!(nonce().unwrap(), nonce().unwrap());
    }
}
