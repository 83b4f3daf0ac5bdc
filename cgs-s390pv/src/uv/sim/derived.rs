//! The simulator's cache of what it derives from its host key with P-521 arithmetic.
//!
//! SET_SEC_PARMS needs the host key's hash (a base-point multiplication for the public key) and
//! the ECDH exchange key with the header's customer key (a second multiplication): about 3 ms
//! together, most of a simulated launch and of a lifecycle fuzz input. Both are pure functions of
//! the host secret and the customer public key, so the clones of one
//! [`SimConfig`](super::SimConfig) share them here. The cache is keyed by the host secret (a
//! clone given another `host_key` derives afresh), holds at most [`MAX_EXCHANGES`] exchange
//! keys, and zeroizes them when they are evicted or dropped. The UV's answers are unchanged.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use p521::{PublicKey, SecretKey};
use zeroize::Zeroizing;

use crate::crypto;

/// Exchange keys kept per host key.
pub const MAX_EXCHANGES: usize = 8;

type Coords = [u8; 160];

#[derive(Default)]
struct Entries {
    /// The host secret the entries belong to, and its public key's hash.
    host: Option<(SecretKey, [u8; 32])>,
    /// Customer public key coordinates and the exchange key with them, oldest first.
    exchanges: VecDeque<(Coords, Zeroizing<[u8; 32]>)>,
}

/// Shared by a configuration's clones.
#[derive(Clone, Default)]
pub(super) struct Derived(Arc<Mutex<Entries>>);

impl Derived {
    /// The entries for `host` (emptied first if they belonged to another key) and its hash.
    fn entries(&self, host: &SecretKey) -> (MutexGuard<'_, Entries>, [u8; 32]) {
        let mut e = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let phkh = match &e.host {
            Some((key, phkh)) if key == host => *phkh,
            _ => {
                let phkh = crypto::host_key_hash(&host.public_key());
                *e = Entries {
                    host: Some((host.clone(), phkh)),
                    exchanges: VecDeque::new(),
                };
                phkh
            }
        };
        (e, phkh)
    }

    /// [`crypto::host_key_hash`] of `host`'s public key.
    pub(super) fn host_key_hash(&self, host: &SecretKey) -> [u8; 32] {
        self.entries(host).1
    }

    /// [`crypto::exchange_key`] of `host` with `cust` (whose coordinates are `coords`).
    pub(super) fn exchange_key(
        &self,
        host: &SecretKey,
        coords: &Coords,
        cust: &PublicKey,
    ) -> Zeroizing<[u8; 32]> {
        let (mut e, _) = self.entries(host);
        if let Some((_, key)) = e.exchanges.iter().find(|(c, _)| c == coords) {
            return key.clone();
        }
        let key = crypto::exchange_key(host, cust);
        if e.exchanges.len() == MAX_EXCHANGES {
            e.exchanges.pop_front();
        }
        e.exchanges.push_back((*coords, key.clone()));
        key
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::OsRng;

    #[test]
    fn cached_values_are_the_derivations() {
        let d = Derived::default();
        let (a, b) = (SecretKey::random(&mut OsRng), SecretKey::random(&mut OsRng));
        let custs: Vec<SecretKey> = (0..MAX_EXCHANGES + 2)
            .map(|_| SecretKey::random(&mut OsRng))
            .collect();
        for host in [&a, &b, &a] {
            let want = crypto::host_key_hash(&host.public_key());
            assert_eq!(d.host_key_hash(host), want);
            assert_eq!(d.host_key_hash(host), want);
            for _ in 0..2 {
                for c in &custs {
                    let p = c.public_key();
                    let coords = crypto::public_key_coords(&p);
                    let got = d.exchange_key(host, &coords, &p);
                    assert_eq!(*got, *crypto::exchange_key(host, &p));
                }
            }
            assert_eq!(d.0.lock().unwrap().exchanges.len(), MAX_EXCHANGES);
        }
    }
}
