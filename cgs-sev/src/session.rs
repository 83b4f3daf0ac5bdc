//! SEV transport cryptography: the guest owner's session with the secure processor.
//!
//! The same primitives serve every SEV channel (kernel-abi.md §13–14, AMD ASPFW `sev_channel.c`):
//!
//! - **Key agreement**: ECDH P-384 between the guest owner's DH key (GODH, sent in LAUNCH_START's
//!   `dh_uaddr` as an SEV certificate) and the platform's PDH; `Z` is the shared x-coordinate.
//! - **KDF**: NIST SP 800-108 counter mode with HMAC-SHA256 ([`kdf`]): master secret =
//!   KDF(Z, "sev-master-secret", nonce), KEK = KDF(master, "sev-kek"), KIK = KDF(master, "sev-kik").
//! - **Session blob** ([`SessionBlob`], 128 bytes): the transport keys TEK ‖ TIK wrapped with
//!   AES-128-CTR under the KEK, MACed with HMAC-SHA256 under the KIK, plus a policy MAC under the TIK.
//! - **Packets** ([`seal_packet`], [`open_packet`]): AES-128-CTR under the TEK, HMAC-SHA256 under
//!   the TIK over `context ‖ flags ‖ iv ‖ lengths ‖ ciphertext ‖ trailer`, with a 52-byte
//!   [`PacketHeader`]. LAUNCH_SECRET uses context 0x01 with the launch measurement as trailer;
//!   SEND/RECEIVE_UPDATE_DATA use context 0x02 with no trailer, so migration reuses these
//!   functions unchanged.
//! - **Launch measurement** ([`launch_measure_mac`]): HMAC-SHA256(TIK, 0x04 ‖ api major ‖ api minor
//!   ‖ build ‖ policy ‖ digest ‖ mnonce).
//!
//! Both sides use this module: the guest owner ([`GuestOwner`]) and the firmware (the simulator's
//! [`accept_session`]). All key material is zeroized on drop and redacted from `Debug`.

use std::fmt;

use aes::cipher::{KeyIvInit, StreamCipher};
use hmac::{Hmac, Mac};
use p384::elliptic_curve::sec1::{FromEncodedPoint, ToEncodedPoint};
use p384::{EncodedPoint, PublicKey, SecretKey};
use rand_core::{CryptoRng, RngCore};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

type HmacSha256 = Hmac<Sha256>;
type Aes128Ctr = ctr::Ctr128BE<aes::Aes128>;

/// Length of the LAUNCH_START / SEND_START / RECEIVE_START session blob.
pub const SESSION_LEN: usize = 128;
/// Length of a packet header (LAUNCH_SECRET, SEND/RECEIVE_UPDATE_DATA).
pub const PACKET_HEADER_LEN: usize = 52;
/// Length of an SEV (legacy format, version 1) certificate.
pub const SEV_CERT_LEN: usize = 0x824;
/// Length of the LAUNCH_MEASURE blob (measure ‖ mnonce).
pub const MEASUREMENT_LEN: usize = 48;
/// Packet header flag: the payload is compressed (the firmware rejects it).
pub const PACKET_FLAG_COMPRESSED: u32 = 1;

/// SEV certificate key usage: PDH (also used for the guest owner's DH key).
pub const USAGE_PDH: u32 = 0x1003;
/// SEV certificate key usage: invalid / no signature.
pub const USAGE_INVALID: u32 = 0x1000;
/// SEV certificate algorithm: ECDH with SHA-256.
pub const ALGO_ECDH_SHA256: u32 = 0x003;
/// SEV certificate ECC curve id for P-384.
pub const CURVE_P384: u32 = 2;

/// Errors of the transport channel. All are untrusted-input errors: nothing is changed when one
/// is returned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// A buffer has the wrong length.
    #[error("{what} is {actual} bytes, expected {expected}")]
    Length {
        /// Which buffer.
        what: &'static str,
        /// The required length.
        expected: usize,
        /// The given length.
        actual: usize,
    },
    /// A MAC did not verify.
    #[error("{0} MAC does not verify")]
    BadMac(&'static str),
    /// A certificate is malformed or of the wrong kind.
    #[error("invalid SEV certificate: {0}")]
    Certificate(&'static str),
    /// The packet asks for compression, which SEV firmware does not support.
    #[error("compressed packets are not supported")]
    Compressed,
}

impl From<SessionError> for cgs_core::Error {
    fn from(e: SessionError) -> Self {
        cgs_core::Error::invalid_input("SEV transport", e.to_string())
    }
}

/// The transport encryption and integrity keys (TEK, TIK) of one SEV channel.
#[derive(Clone, Zeroize, ZeroizeOnDrop, PartialEq, Eq)]
pub struct TransportKeys {
    tek: [u8; 16],
    tik: [u8; 16],
}

impl fmt::Debug for TransportKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TransportKeys { tek: <redacted>, tik: <redacted> }")
    }
}

impl TransportKeys {
    /// Keys from known values (tests, test vectors, a key-management service).
    pub fn new(tek: [u8; 16], tik: [u8; 16]) -> Self {
        TransportKeys { tek, tik }
    }

    /// Fresh random keys.
    pub fn generate(rng: &mut (impl RngCore + CryptoRng)) -> Self {
        let mut keys = TransportKeys {
            tek: [0; 16],
            tik: [0; 16],
        };
        rng.fill_bytes(&mut keys.tek);
        rng.fill_bytes(&mut keys.tik);
        keys
    }

    /// The transport encryption key.
    pub fn tek(&self) -> &[u8; 16] {
        &self.tek
    }

    /// The transport integrity key.
    pub fn tik(&self) -> &[u8; 16] {
        &self.tik
    }
}

fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = match HmacSha256::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC takes keys of any length"),
    };
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

fn ctr(key: &[u8; 16], iv: &[u8; 16], data: &mut [u8]) {
    let mut c = Aes128Ctr::new(key.into(), iv.into());
    c.apply_keystream(data);
}

/// NIST SP 800-108 KDF in counter mode with HMAC-SHA256:
/// `K_i = HMAC(key, u32le(i) ‖ label ‖ 0x00 ‖ context ‖ u32le(8·len))`, i from 1, truncated to
/// `out.len()` bytes.
pub fn kdf(key: &[u8], label: &str, context: &[u8], out: &mut [u8]) {
    let bits = ((out.len() as u64) * 8) as u32;
    for (i, chunk) in out.chunks_mut(32).enumerate() {
        let counter = (i as u32 + 1).to_le_bytes();
        let mut block = hmac(
            key,
            &[
                &counter,
                label.as_bytes(),
                &[0],
                context,
                &bits.to_le_bytes(),
            ],
        );
        chunk.copy_from_slice(&block[..chunk.len()]);
        block.zeroize();
    }
}

/// The 128-byte session blob (nonce, wrapped TEK ‖ TIK, wrap IV, wrap MAC, policy MAC).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionBlob {
    /// KDF context for the master secret.
    pub nonce: [u8; 16],
    /// AES-128-CTR(KEK, wrap_iv, TEK ‖ TIK).
    pub wrap_tk: [u8; 32],
    /// IV for `wrap_tk`.
    pub wrap_iv: [u8; 16],
    /// HMAC-SHA256(KIK, wrap_tk).
    pub wrap_mac: [u8; 32],
    /// HMAC-SHA256(TIK, policy u32 LE).
    pub policy_mac: [u8; 32],
}

impl SessionBlob {
    /// Serialize (128 bytes).
    pub fn to_bytes(&self) -> [u8; SESSION_LEN] {
        let mut b = [0u8; SESSION_LEN];
        b[0..16].copy_from_slice(&self.nonce);
        b[16..48].copy_from_slice(&self.wrap_tk);
        b[48..64].copy_from_slice(&self.wrap_iv);
        b[64..96].copy_from_slice(&self.wrap_mac);
        b[96..128].copy_from_slice(&self.policy_mac);
        b
    }

    /// Parse exactly 128 bytes.
    pub fn from_bytes(b: &[u8]) -> Result<Self, SessionError> {
        if b.len() != SESSION_LEN {
            return Err(SessionError::Length {
                what: "session blob",
                expected: SESSION_LEN,
                actual: b.len(),
            });
        }
        let mut s = SessionBlob {
            nonce: [0; 16],
            wrap_tk: [0; 32],
            wrap_iv: [0; 16],
            wrap_mac: [0; 32],
            policy_mac: [0; 32],
        };
        s.nonce.copy_from_slice(&b[0..16]);
        s.wrap_tk.copy_from_slice(&b[16..48]);
        s.wrap_iv.copy_from_slice(&b[48..64]);
        s.wrap_mac.copy_from_slice(&b[64..96]);
        s.policy_mac.copy_from_slice(&b[96..128]);
        Ok(s)
    }
}

/// KEK and KIK derived from the shared secret `z` and the session nonce.
#[derive(Zeroize, ZeroizeOnDrop)]
struct WrapKeys {
    kek: [u8; 16],
    kik: [u8; 16],
}

fn wrap_keys_from(z: &[u8], nonce: &[u8; 16]) -> WrapKeys {
    let mut master = Zeroizing::new([0u8; 16]);
    kdf(z, "sev-master-secret", nonce, &mut master[..]);
    let mut k = WrapKeys {
        kek: [0; 16],
        kik: [0; 16],
    };
    kdf(&master[..], "sev-kek", &[], &mut k.kek);
    kdf(&master[..], "sev-kik", &[], &mut k.kik);
    k
}

/// Wrap `keys` for the other end of the channel: the sender side of LAUNCH_START (guest owner)
/// or SEND_START (source firmware).
pub fn wrap_session(
    keys: &TransportKeys,
    policy: u32,
    z: &[u8],
    nonce: [u8; 16],
    wrap_iv: [u8; 16],
) -> SessionBlob {
    let wk = wrap_keys_from(z, &nonce);
    let mut wrap_tk = [0u8; 32];
    wrap_tk[..16].copy_from_slice(&keys.tek);
    wrap_tk[16..].copy_from_slice(&keys.tik);
    ctr(&wk.kek, &wrap_iv, &mut wrap_tk);
    SessionBlob {
        nonce,
        wrap_tk,
        wrap_iv,
        wrap_mac: hmac(&wk.kik, &[&wrap_tk]),
        policy_mac: hmac(&keys.tik, &[&policy.to_le_bytes()]),
    }
}

/// Unwrap the transport keys from a session blob (receiver side: the firmware at LAUNCH_START /
/// RECEIVE_START). Checks the wrap MAC and then the policy MAC, in constant time.
pub fn unwrap_session(
    blob: &SessionBlob,
    policy: u32,
    z: &[u8],
) -> Result<TransportKeys, SessionError> {
    let wk = wrap_keys_from(z, &blob.nonce);
    let mac = hmac(&wk.kik, &[&blob.wrap_tk]);
    if !bool::from(mac.ct_eq(&blob.wrap_mac)) {
        return Err(SessionError::BadMac("session wrap"));
    }
    let mut plain = Zeroizing::new(blob.wrap_tk);
    ctr(&wk.kek, &blob.wrap_iv, &mut plain[..]);
    let mut keys = TransportKeys {
        tek: [0; 16],
        tik: [0; 16],
    };
    keys.tek.copy_from_slice(&plain[..16]);
    keys.tik.copy_from_slice(&plain[16..]);
    let pmac = hmac(&keys.tik, &[&policy.to_le_bytes()]);
    if !bool::from(pmac.ct_eq(&blob.policy_mac)) {
        return Err(SessionError::BadMac("session policy"));
    }
    Ok(keys)
}

/// What a packet carries: the first byte of its MAC input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum PacketContext {
    /// LAUNCH_SECRET (trailer: the launch measurement).
    Secret = 0x01,
    /// SEND/RECEIVE_UPDATE_DATA (no trailer).
    Data = 0x02,
    /// SEND/RECEIVE_UPDATE_VMSA (defined; KVM does not implement those commands).
    Vmsa = 0x03,
}

/// The 52-byte packet header: flags, IV, MAC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketHeader {
    /// Flags ([`PACKET_FLAG_COMPRESSED`] is the only one defined).
    pub flags: u32,
    /// AES-128-CTR IV.
    pub iv: [u8; 16],
    /// HMAC-SHA256 under the TIK.
    pub mac: [u8; 32],
}

impl PacketHeader {
    /// Serialize (52 bytes).
    pub fn to_bytes(&self) -> [u8; PACKET_HEADER_LEN] {
        let mut b = [0u8; PACKET_HEADER_LEN];
        b[0..4].copy_from_slice(&self.flags.to_le_bytes());
        b[4..20].copy_from_slice(&self.iv);
        b[20..52].copy_from_slice(&self.mac);
        b
    }

    /// Parse exactly 52 bytes.
    pub fn from_bytes(b: &[u8]) -> Result<Self, SessionError> {
        if b.len() != PACKET_HEADER_LEN {
            return Err(SessionError::Length {
                what: "packet header",
                expected: PACKET_HEADER_LEN,
                actual: b.len(),
            });
        }
        let mut h = PacketHeader {
            flags: u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            iv: [0; 16],
            mac: [0; 32],
        };
        h.iv.copy_from_slice(&b[4..20]);
        h.mac.copy_from_slice(&b[20..52]);
        Ok(h)
    }
}

fn packet_mac(
    keys: &TransportKeys,
    context: PacketContext,
    flags: u32,
    iv: &[u8; 16],
    plain_len: u32,
    ciphertext: &[u8],
    trailer: &[u8],
) -> [u8; 32] {
    hmac(
        &keys.tik,
        &[
            &[context as u8],
            &flags.to_le_bytes(),
            iv,
            &plain_len.to_le_bytes(),
            &(ciphertext.len() as u32).to_le_bytes(),
            ciphertext,
            trailer,
        ],
    )
}

fn check_len(what: &'static str, len: usize) -> Result<u32, SessionError> {
    u32::try_from(len).map_err(|_| SessionError::Length {
        what,
        expected: u32::MAX as usize,
        actual: len,
    })
}

/// Encrypt and MAC `plaintext` into a packet (no compression: ciphertext length = plaintext
/// length). `trailer` is the launch measurement for [`PacketContext::Secret`], empty otherwise.
pub fn seal_packet(
    keys: &TransportKeys,
    context: PacketContext,
    iv: [u8; 16],
    plaintext: &[u8],
    trailer: &[u8],
) -> Result<(PacketHeader, Vec<u8>), SessionError> {
    let len = check_len("packet payload", plaintext.len())?;
    let mut ct = plaintext.to_vec();
    ctr(&keys.tek, &iv, &mut ct);
    let mac = packet_mac(keys, context, 0, &iv, len, &ct, trailer);
    Ok((PacketHeader { flags: 0, iv, mac }, ct))
}

/// Verify and decrypt a packet. Rejects compressed packets and bad MACs before decrypting.
pub fn open_packet(
    keys: &TransportKeys,
    context: PacketContext,
    header: &PacketHeader,
    ciphertext: &[u8],
    trailer: &[u8],
) -> Result<Zeroizing<Vec<u8>>, SessionError> {
    if header.flags & PACKET_FLAG_COMPRESSED != 0 {
        return Err(SessionError::Compressed);
    }
    let len = check_len("packet payload", ciphertext.len())?;
    let mac = packet_mac(
        keys,
        context,
        header.flags,
        &header.iv,
        len,
        ciphertext,
        trailer,
    );
    if !bool::from(mac.ct_eq(&header.mac)) {
        return Err(SessionError::BadMac("packet"));
    }
    let mut plain = Zeroizing::new(ciphertext.to_vec());
    ctr(&keys.tek, &header.iv, &mut plain[..]);
    Ok(plain)
}

/// The firmware's API version and build, as PLATFORM_STATUS reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct FirmwareBuild {
    /// API major.
    pub api_major: u8,
    /// API minor.
    pub api_minor: u8,
    /// Build id.
    pub build: u8,
}

/// The LAUNCH_MEASURE result: `measure` (the HMAC) and the firmware's `mnonce`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LaunchMeasurement {
    /// HMAC-SHA256(TIK, 0x04 ‖ api ‖ build ‖ policy ‖ digest ‖ mnonce).
    pub measure: [u8; 32],
    /// Firmware nonce.
    pub mnonce: [u8; 16],
}

impl LaunchMeasurement {
    /// Serialize (48 bytes: measure ‖ mnonce).
    pub fn to_bytes(&self) -> [u8; MEASUREMENT_LEN] {
        let mut b = [0u8; MEASUREMENT_LEN];
        b[..32].copy_from_slice(&self.measure);
        b[32..].copy_from_slice(&self.mnonce);
        b
    }

    /// Parse exactly 48 bytes.
    pub fn from_bytes(b: &[u8]) -> Result<Self, SessionError> {
        if b.len() != MEASUREMENT_LEN {
            return Err(SessionError::Length {
                what: "launch measurement",
                expected: MEASUREMENT_LEN,
                actual: b.len(),
            });
        }
        let mut m = LaunchMeasurement {
            measure: [0; 32],
            mnonce: [0; 16],
        };
        m.measure.copy_from_slice(&b[..32]);
        m.mnonce.copy_from_slice(&b[32..]);
        Ok(m)
    }
}

/// `HMAC-SHA256(TIK, 0x04 ‖ API_MAJOR ‖ API_MINOR ‖ BUILD ‖ POLICY(u32 LE) ‖ digest ‖ mnonce)`.
pub fn launch_measure_mac(
    keys: &TransportKeys,
    build: FirmwareBuild,
    policy: u32,
    digest: &[u8; 32],
    mnonce: &[u8; 16],
) -> [u8; 32] {
    hmac(
        &keys.tik,
        &[
            &[0x04, build.api_major, build.api_minor, build.build],
            &policy.to_le_bytes(),
            digest,
            mnonce,
        ],
    )
}

/// An ECDH P-384 public key in an SEV (version 1) certificate, the format of LAUNCH_START's
/// `dh_uaddr` and of the platform PDH. Signatures are not produced or checked here: the guest
/// owner's DH certificate is unsigned by design; verifying the platform chain (PEK/OCA/CEK/ASK/ARK)
/// is the guest owner's business and out of scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SevCert {
    /// API major recorded in the certificate.
    pub api_major: u8,
    /// API minor recorded in the certificate.
    pub api_minor: u8,
    /// Key usage ([`USAGE_PDH`]).
    pub usage: u32,
    /// The public key.
    pub public: PublicKey,
}

fn le72(be48: &[u8]) -> [u8; 72] {
    let mut out = [0u8; 72];
    for (i, b) in be48.iter().rev().enumerate() {
        out[i] = *b;
    }
    out
}

impl SevCert {
    /// A PDH-usage certificate for `public`.
    pub fn pdh(public: PublicKey) -> Self {
        SevCert {
            api_major: 0,
            api_minor: 0,
            usage: USAGE_PDH,
            public,
        }
    }

    /// Serialize to the 2084-byte certificate (unsigned: both signature slots have usage
    /// [`USAGE_INVALID`]).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut b = vec![0u8; SEV_CERT_LEN];
        b[0..4].copy_from_slice(&1u32.to_le_bytes());
        b[4] = self.api_major;
        b[5] = self.api_minor;
        b[8..12].copy_from_slice(&self.usage.to_le_bytes());
        b[12..16].copy_from_slice(&ALGO_ECDH_SHA256.to_le_bytes());
        b[16..20].copy_from_slice(&CURVE_P384.to_le_bytes());
        let point = self.public.to_encoded_point(false);
        if let (Some(x), Some(y)) = (point.x(), point.y()) {
            b[20..92].copy_from_slice(&le72(x));
            b[92..164].copy_from_slice(&le72(y));
        }
        for sig in [0x414usize, 0x61C] {
            b[sig..sig + 4].copy_from_slice(&USAGE_INVALID.to_le_bytes());
        }
        b
    }

    /// Parse a certificate holding an ECDH P-384 key.
    pub fn from_bytes(b: &[u8]) -> Result<Self, SessionError> {
        if b.len() != SEV_CERT_LEN {
            return Err(SessionError::Length {
                what: "SEV certificate",
                expected: SEV_CERT_LEN,
                actual: b.len(),
            });
        }
        let u32_at = |o: usize| u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
        if u32_at(0) != 1 {
            return Err(SessionError::Certificate("version is not 1"));
        }
        if u32_at(12) != ALGO_ECDH_SHA256 {
            return Err(SessionError::Certificate(
                "key algorithm is not ECDH-SHA256",
            ));
        }
        if u32_at(16) != CURVE_P384 {
            return Err(SessionError::Certificate("curve is not P-384"));
        }
        let (qx, qy) = (&b[20..92], &b[92..164]);
        if qx[48..].iter().chain(&qy[48..]).any(|&v| v != 0) {
            return Err(SessionError::Certificate("coordinate exceeds 384 bits"));
        }
        let be = |le: &[u8]| {
            let mut out = [0u8; 48];
            for (i, v) in le[..48].iter().enumerate() {
                out[47 - i] = *v;
            }
            out
        };
        let (x, y) = (be(qx), be(qy));
        let point = EncodedPoint::from_affine_coordinates((&x).into(), (&y).into(), false);
        let public = Option::<PublicKey>::from(PublicKey::from_encoded_point(&point))
            .ok_or(SessionError::Certificate("point is not on P-384"))?;
        Ok(SevCert {
            api_major: b[4],
            api_minor: b[5],
            usage: u32_at(8),
            public,
        })
    }
}

/// An ECDH P-384 key pair (the guest owner's GODH, or a platform's PDH in the simulator).
#[derive(Clone)]
pub struct DhKey {
    secret: SecretKey,
}

impl fmt::Debug for DhKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DhKey { secret: <redacted> }")
    }
}

impl DhKey {
    /// A fresh random key.
    pub fn generate(rng: &mut (impl RngCore + CryptoRng)) -> Self {
        DhKey {
            secret: SecretKey::random(rng),
        }
    }

    /// The public key.
    pub fn public(&self) -> PublicKey {
        self.secret.public_key()
    }

    /// The shared secret `Z`: the big-endian x-coordinate of the ECDH point.
    pub fn shared_secret(&self, peer: &PublicKey) -> Zeroizing<[u8; 48]> {
        let shared = p384::ecdh::diffie_hellman(self.secret.to_nonzero_scalar(), peer.as_affine());
        let mut z = Zeroizing::new([0u8; 48]);
        z.copy_from_slice(shared.raw_secret_bytes());
        z
    }
}

/// What the guest owner gives the VMM for LAUNCH_START (QEMU's `dh-cert-file` and
/// `session-file`, before base64).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaunchStartBlobs {
    /// The guest owner's DH certificate (2084 bytes).
    pub dh_cert: Vec<u8>,
    /// The session blob (128 bytes).
    pub session: SessionBlob,
}

/// The guest owner's side of an SEV launch: creates the session, verifies LAUNCH_MEASURE and
/// seals launch secrets.
#[derive(Debug)]
pub struct GuestOwner {
    policy: u32,
    keys: TransportKeys,
}

impl GuestOwner {
    /// A guest owner with fresh random transport keys for `policy`.
    pub fn new(policy: u32, rng: &mut (impl RngCore + CryptoRng)) -> Self {
        GuestOwner {
            policy,
            keys: TransportKeys::generate(rng),
        }
    }

    /// A guest owner with given keys (tests, key-management services).
    pub fn with_keys(policy: u32, keys: TransportKeys) -> Self {
        GuestOwner { policy, keys }
    }

    /// The guest policy the session is bound to.
    pub fn policy(&self) -> u32 {
        self.policy
    }

    /// The transport keys.
    pub fn keys(&self) -> &TransportKeys {
        &self.keys
    }

    /// Create the LAUNCH_START inputs for a platform whose PDH is `pdh`.
    pub fn start(&self, pdh: &PublicKey, rng: &mut (impl RngCore + CryptoRng)) -> LaunchStartBlobs {
        let godh = DhKey::generate(rng);
        let z = godh.shared_secret(pdh);
        let mut nonce = [0u8; 16];
        let mut iv = [0u8; 16];
        rng.fill_bytes(&mut nonce);
        rng.fill_bytes(&mut iv);
        LaunchStartBlobs {
            dh_cert: SevCert::pdh(godh.public()).to_bytes(),
            session: wrap_session(&self.keys, self.policy, &z[..], nonce, iv),
        }
    }

    /// Check a LAUNCH_MEASURE result against the expected launch digest (constant time).
    pub fn verify_measurement(
        &self,
        build: FirmwareBuild,
        digest: &[u8; 32],
        m: &LaunchMeasurement,
    ) -> Result<(), SessionError> {
        let want = launch_measure_mac(&self.keys, build, self.policy, digest, &m.mnonce);
        if bool::from(want.ct_eq(&m.measure)) {
            Ok(())
        } else {
            Err(SessionError::BadMac("launch measurement"))
        }
    }

    /// Seal a launch secret (context 0x01, trailer = the verified measurement).
    pub fn seal_secret(
        &self,
        measurement: &LaunchMeasurement,
        iv: [u8; 16],
        secret: &[u8],
    ) -> Result<(PacketHeader, Vec<u8>), SessionError> {
        seal_packet(
            &self.keys,
            PacketContext::Secret,
            iv,
            secret,
            &measurement.measure,
        )
    }
}

/// The receiving firmware's side of LAUNCH_START / RECEIVE_START: parse the peer's DH
/// certificate, agree on `Z` with the platform key `pdh`, unwrap the transport keys.
pub fn accept_session(
    pdh: &DhKey,
    peer_cert: &[u8],
    session: &[u8],
    policy: u32,
) -> Result<TransportKeys, SessionError> {
    let cert = SevCert::from_bytes(peer_cert)?;
    let blob = SessionBlob::from_bytes(session)?;
    let z = pdh.shared_secret(&cert.public);
    unwrap_session(&blob, policy, &z[..])
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::OsRng;

    // Vectors from the virtee `sev` crate's session tests (virtee.md §3).
    #[test]
    fn kdf_and_mac_vectors() {
        let mut master = [0u8; 16];
        kdf(&[0u8; 16], "sev-master-secret", &[0u8; 16], &mut master);
        assert_eq!(
            master,
            [
                0xab, 0x4d, 0x26, 0x9f, 0xcc, 0x62, 0xbe, 0xdb, 0x45, 0x11, 0xd5, 0x6c, 0x38, 0x6c,
                0xe7, 0x06
            ]
        );
        assert_eq!(
            hmac(&[0u8; 16], &[&[0u8; 4]])[..8],
            [0xaa, 0x78, 0x55, 0xe1, 0x38, 0x39, 0xdd, 0x76]
        );
    }

    #[test]
    fn session_vector() {
        let keys = TransportKeys::new([0; 16], [0; 16]);
        let s = wrap_session(&keys, 0, &[0u8; 16], [0; 16], [0; 16]);
        assert_eq!(
            s.wrap_tk,
            [
                0x21, 0x37, 0xbc, 0x7f, 0x9b, 0xb8, 0xbd, 0x7c, 0x3e, 0x55, 0xa5, 0x76, 0xa1, 0x5d,
                0x34, 0x54, 0xb3, 0x85, 0x6b, 0x8b, 0xa2, 0x7a, 0xfa, 0xdf, 0x46, 0xdc, 0xfe, 0xe9,
                0xf0, 0x2c, 0x02, 0xc4
            ]
        );
        assert_eq!(
            s.wrap_mac,
            [
                0x31, 0x76, 0xc0, 0x75, 0x27, 0x38, 0xbd, 0x9d, 0x5e, 0x86, 0x68, 0x95, 0x34, 0x02,
                0x0f, 0x52, 0x8c, 0x08, 0x8f, 0x16, 0x23, 0x88, 0x26, 0xb0, 0x00, 0xb3, 0x27, 0xde,
                0xe6, 0xae, 0xed, 0x7d
            ]
        );
        assert_eq!(
            s.policy_mac[..4],
            [0xaa, 0x78, 0x55, 0xe1],
            "policy MAC = HMAC(TIK=0, policy 0)"
        );
        let back = unwrap_session(&s, 0, &[0u8; 16]).unwrap();
        assert_eq!(back, keys);
        assert_eq!(
            unwrap_session(&s, 1, &[0u8; 16]),
            Err(SessionError::BadMac("session policy"))
        );
        assert_eq!(
            unwrap_session(&s, 0, &[1u8; 16]),
            Err(SessionError::BadMac("session wrap"))
        );
    }

    #[test]
    fn measurement_vector() {
        // sha256("") as the digest, API 0.18 build 15, policy 0.
        let digest = [
            0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f,
            0xb9, 0x24, 0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b,
            0x78, 0x52, 0xb8, 0x55,
        ];
        let m = LaunchMeasurement {
            measure: [
                0x6f, 0xaa, 0xb2, 0xda, 0xae, 0x38, 0x9b, 0xcd, 0x34, 0x05, 0xa0, 0x5d, 0x6c, 0xaf,
                0xe3, 0x3c, 0x04, 0x14, 0xf7, 0xbe, 0xdd, 0x0b, 0xae, 0x19, 0xba, 0x5f, 0x38, 0xb7,
                0xfd, 0x16, 0x64, 0xea,
            ],
            mnonce: [
                0x4f, 0xbe, 0x0b, 0xed, 0xba, 0xd6, 0xc8, 0x6a, 0xe8, 0xf6, 0x89, 0x71, 0xd1, 0x03,
                0xe5, 0x54,
            ],
        };
        let tik = [
            0x66, 0x32, 0x0d, 0xb7, 0x31, 0x58, 0xa3, 0x5a, 0x25, 0x5d, 0x05, 0x17, 0x58, 0xe9,
            0x5e, 0xd4,
        ];
        let owner = GuestOwner::with_keys(0, TransportKeys::new([0; 16], tik));
        let build = FirmwareBuild {
            api_major: 0,
            api_minor: 0x12,
            build: 0x0f,
        };
        owner.verify_measurement(build, &digest, &m).unwrap();
        let mut bad = m;
        bad.mnonce[0] ^= 1;
        assert!(owner.verify_measurement(build, &digest, &bad).is_err());
        assert_eq!(LaunchMeasurement::from_bytes(&m.to_bytes()).unwrap(), m);
    }

    #[test]
    fn ecdh_session_round_trip_and_packets() {
        let pdh = DhKey::generate(&mut OsRng);
        let owner = GuestOwner::new(0x5, &mut OsRng);
        let blobs = owner.start(&pdh.public(), &mut OsRng);
        assert_eq!(blobs.dh_cert.len(), SEV_CERT_LEN);
        let keys = accept_session(&pdh, &blobs.dh_cert, &blobs.session.to_bytes(), 0x5).unwrap();
        assert_eq!(&keys, owner.keys());
        assert!(accept_session(&pdh, &blobs.dh_cert, &blobs.session.to_bytes(), 0x1).is_err());
        let cert = SevCert::from_bytes(&blobs.dh_cert).unwrap();
        assert_eq!(cert.usage, USAGE_PDH);

        let m = LaunchMeasurement {
            measure: [7; 32],
            mnonce: [9; 16],
        };
        let (hdr, ct) = owner.seal_secret(&m, [3; 16], b"0123456789abcdef").unwrap();
        assert_ne!(&ct[..], b"0123456789abcdef");
        let hdr = PacketHeader::from_bytes(&hdr.to_bytes()).unwrap();
        let pt = open_packet(&keys, PacketContext::Secret, &hdr, &ct, &m.measure).unwrap();
        assert_eq!(&pt[..], b"0123456789abcdef");
        assert_eq!(
            open_packet(&keys, PacketContext::Data, &hdr, &ct, &m.measure),
            Err(SessionError::BadMac("packet"))
        );
        let mut comp = hdr;
        comp.flags = PACKET_FLAG_COMPRESSED;
        assert_eq!(
            open_packet(&keys, PacketContext::Secret, &comp, &ct, &m.measure),
            Err(SessionError::Compressed)
        );
        assert!(format!("{keys:?}").contains("redacted"));
        assert!(!format!("{keys:?}").contains(&format!("{:?}", keys.tek())));
    }

    #[test]
    fn malformed_inputs_are_typed_errors() {
        assert!(matches!(
            SessionBlob::from_bytes(&[0; 127]),
            Err(SessionError::Length { .. })
        ));
        assert!(matches!(
            PacketHeader::from_bytes(&[0; 53]),
            Err(SessionError::Length { .. })
        ));
        let mut cert = SevCert::pdh(DhKey::generate(&mut OsRng).public()).to_bytes();
        cert[20] ^= 0xff;
        assert!(matches!(
            SevCert::from_bytes(&cert),
            Err(SessionError::Certificate(_))
        ));
        assert!(matches!(
            SevCert::from_bytes(&[0; SEV_CERT_LEN]),
            Err(SessionError::Certificate(_))
        ));
    }

    fn b64(s: &str) -> Vec<u8> {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.decode(s).unwrap()
    }

    fn hex16(s: &str) -> [u8; 16] {
        let mut out = [0u8; 16];
        for (i, o) in out.iter_mut().enumerate() {
            *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap();
        }
        out
    }

    // sevctl tests/measurementbuild.rs: API 1.40 build 40, policy 3, `--launch-digest`.
    #[test]
    fn sevctl_measurement_vector() {
        let tik = hex16("3569cf61a32a602b87185ac6e0f55913"); // tests/data/measurement/tik1.bin
        let keys = TransportKeys::new([0; 16], tik);
        let build = FirmwareBuild {
            api_major: 1,
            api_minor: 40,
            build: 40,
        };
        let digest: [u8; 32] = b64("xkvRAfyaSizgonxAjZIAkR8TmolUabBKQKb6KJCDDSM=")
            .try_into()
            .unwrap();
        let mnonce: [u8; 16] = b64("wxP6tRHCFrFQWxsuqZA8QA==").try_into().unwrap();
        assert_eq!(
            launch_measure_mac(&keys, build, 0x03, &digest, &mnonce).to_vec(),
            b64("lswbxWxI9gckya16JQvdFtpYmNO4b+3inAPpqsgoBI4=")
        );
    }

    // sevctl tests/secretbuild.rs: one secret, fixed IV.
    #[test]
    fn sevctl_secret_vector() {
        let keys = TransportKeys::new(
            hex16("52a869b79ab9c13bb6a92b0561619cb3"), // tests/data/secret/tek1.bin
            hex16("c6d5a9956133050912b24bbe5c372686"), // tests/data/secret/tik1.bin
        );
        let blob = b64("TLeA7607lZQntLjRY1/i+sbtdSZ+75zxpz4Px9hzpBLwItF5Q2o4prA++3ZZv9ZS");
        let m = LaunchMeasurement::from_bytes(&blob).unwrap();
        // The secrets table: table GUID, total length, one entry {GUID, length, payload},
        // zero-padded to 16 bytes.
        let secret = b"MY-LUKS-PASSPHRASE";
        let mut table = Vec::new();
        table.extend_from_slice(&hex16("42f5741edd71664d963eef4287ff173b"));
        table.extend_from_slice(&(20u32 + 20 + secret.len() as u32).to_le_bytes());
        table.extend_from_slice(&hex16("e5696873f084734992ec06879ce3da0b"));
        table.extend_from_slice(&(20u32 + secret.len() as u32).to_le_bytes());
        table.extend_from_slice(secret);
        table.resize(table.len().div_ceil(16) * 16, 0);
        let iv: [u8; 16] = b64("rFR07U3TLH2YnsUj2SVZ7A==").try_into().unwrap();
        let owner = GuestOwner::with_keys(0, keys);
        let (hdr, ct) = owner.seal_secret(&m, iv, &table).unwrap();
        assert_eq!(
            hdr.to_bytes().to_vec(),
            b64("AAAAAKxUdO1N0yx9mJ7FI9klWey8FSzeYQ4X8K71VzNKLU/KQsIsQxLjtbhaPUewqshX5Q==")
        );
        assert_eq!(
            ct,
            b64("0U3e5PcXv0UW+H4tSBFKOdCYfKE1+j38Bc2fuO16mYiyI+sWx7INfn+lgYj56GL12yyinDa+lVfCCwD/2w5cPA==")
        );
        let back = open_packet(owner.keys(), PacketContext::Secret, &hdr, &ct, &m.measure).unwrap();
        assert_eq!(&back[..], &table[..]);
    }
}
