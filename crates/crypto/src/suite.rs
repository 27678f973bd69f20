//! The two suites. Each names one AEAD, one MAC and one hash; a deployment uses one suite
//! for everything, recorded in its database when it is created.

use aes_gcm::aead::consts::U12;
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, AesGcm, Nonce};
use hmac::{Hmac, Mac};
use relief_domain::audit::ChainAlg;
use sha2::{Digest, Sha256};
use sm3::Sm3;
use sm4::Sm4;

use crate::{Error, Result};

/// SM4 in Galois/counter mode (GB/T 36624 names GCM among SM4's modes): the same
/// construction as AES-GCM over the 128-bit SM4 block.
type Sm4Gcm = AesGcm<Sm4, U12>;

/// Bytes of the random nonce in front of every ciphertext.
pub(crate) const NONCE_BYTES: usize = 12;

/// A deployment's algorithms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Suite {
    /// AES-256-GCM, HMAC-SHA-256, SHA-256.
    Standard,
    /// SM4-GCM (GB/T 32907), HMAC-SM3, SM3 (GB/T 32905).
    Sm,
}

impl Suite {
    pub fn parse(s: &str) -> Result<Suite> {
        match s {
            "standard" => Ok(Suite::Standard),
            "sm" => Ok(Suite::Sm),
            other => Err(Error::UnknownSuite(other.to_owned())),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Suite::Standard => "standard",
            Suite::Sm => "sm",
        }
    }

    /// The AEAD's key length in bytes.
    pub fn key_bytes(self) -> usize {
        match self {
            Suite::Standard => 32,
            Suite::Sm => 16,
        }
    }

    /// The hash the audit chain links events with.
    pub fn chain(self) -> ChainAlg {
        match self {
            Suite::Standard => ChainAlg::Sha256,
            Suite::Sm => ChainAlg::Sm3,
        }
    }

    pub fn hash(self, data: &[u8]) -> [u8; 32] {
        match self {
            Suite::Standard => Sha256::digest(data).into(),
            Suite::Sm => Sm3::digest(data).into(),
        }
    }

    /// The suite's HMAC of `data` under `key` (any length).
    pub fn mac(self, key: &[u8], data: &[u8]) -> [u8; 32] {
        match self {
            Suite::Standard => {
                // HMAC takes keys of any length; `new_from_slice` cannot fail for it.
                let Ok(mut m) = <Hmac<Sha256> as Mac>::new_from_slice(key) else {
                    return [0; 32];
                };
                m.update(data);
                m.finalize().into_bytes().into()
            }
            Suite::Sm => {
                let Ok(mut m) = <Hmac<Sm3> as Mac>::new_from_slice(key) else {
                    return [0; 32];
                };
                m.update(data);
                m.finalize().into_bytes().into()
            }
        }
    }

    /// Encrypts `plaintext` under `key` (of [`Suite::key_bytes`]) with a fresh random nonce,
    /// binding `aad`: the nonce, then the ciphertext and its tag.
    pub fn seal(self, key: &[u8], aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>> {
        let mut nonce = [0u8; NONCE_BYTES];
        getrandom::fill(&mut nonce).map_err(|_| Error::Random)?;
        self.seal_with_nonce(key, &nonce, aad, plaintext)
    }

    /// [`Suite::seal`] with a given nonce: for the published test vectors only, since a
    /// nonce used twice under one key gives the key stream away.
    pub(crate) fn seal_with_nonce(
        self,
        key: &[u8],
        nonce: &[u8; NONCE_BYTES],
        aad: &[u8],
        plaintext: &[u8],
    ) -> Result<Vec<u8>> {
        let n: Nonce<U12> = (*nonce).into();
        let n = &n;
        let payload = Payload {
            msg: plaintext,
            aad,
        };
        let sealed = match self {
            Suite::Standard => Aes256Gcm::new_from_slice(key)
                .map_err(|_| Error::BadKek("key of the wrong length".into()))?
                .encrypt(n, payload),
            Suite::Sm => Sm4Gcm::new_from_slice(key)
                .map_err(|_| Error::BadKek("key of the wrong length".into()))?
                .encrypt(n, payload),
        }
        .map_err(|_| Error::Malformed("plaintext"))?;
        let mut out = Vec::with_capacity(NONCE_BYTES + sealed.len());
        out.extend_from_slice(nonce);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// Opens what [`Suite::seal`] made; `what` names it in the error.
    pub fn open(
        self,
        key: &[u8],
        aad: &[u8],
        sealed: &[u8],
        what: &'static str,
    ) -> Result<Vec<u8>> {
        if sealed.len() < NONCE_BYTES + 16 {
            return Err(Error::Malformed(what));
        }
        let (nonce, body) = sealed.split_at(NONCE_BYTES);
        let nonce: [u8; NONCE_BYTES] = nonce.try_into().map_err(|_| Error::Malformed(what))?;
        let n: Nonce<U12> = nonce.into();
        let n = &n;
        let payload = Payload { msg: body, aad };
        match self {
            Suite::Standard => Aes256Gcm::new_from_slice(key)
                .map_err(|_| Error::Malformed(what))?
                .decrypt(n, payload),
            Suite::Sm => Sm4Gcm::new_from_slice(key)
                .map_err(|_| Error::Malformed(what))?
                .decrypt(n, payload),
        }
        .map_err(|_| Error::Authentication(what))
    }
}
