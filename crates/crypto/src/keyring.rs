//! The key hierarchy: one key-encryption key (outside the database), data keys per
//! district wrapped by it (in the database), and row keys wrapped by a data key (beside the
//! row they seal).

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, RwLock};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use zeroize::Zeroizing;

use crate::{Error, Result, Suite};

/// What a sealed text starts with; anything else is read as text written before sealing.
pub const SEALED_PREFIX: &str = "enc:";

/// Where the index key is kept among the data keys.
const INDEX_SCOPE: &str = "index";

/// The key-encryption key: it wraps the data keys and never leaves its holder. A file or an
/// environment variable supplies [`LocalKek`]; a KMS or HSM implements the same trait.
pub trait Kek: Send + Sync + fmt::Debug {
    /// A short name of the key, stored beside what it wrapped, so that a wrong key is named
    /// at start-up rather than mistaken for corrupt data.
    fn id(&self) -> &str;
    fn wrap(&self, key: &[u8], aad: &[u8]) -> Result<Vec<u8>>;
    fn unwrap(&self, wrapped: &[u8], aad: &[u8]) -> Result<Zeroizing<Vec<u8>>>;
}

/// A key-encryption key held in this process: 32 random bytes from a file or a variable.
pub struct LocalKek {
    suite: Suite,
    wrapping: Zeroizing<Vec<u8>>,
    id: String,
}

impl fmt::Debug for LocalKek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalKek").field("id", &self.id).finish()
    }
}

/// Bytes of a local key-encryption key.
const KEK_BYTES: usize = 32;

impl LocalKek {
    /// Reads a key written as 64 hex digits or as base64 of 32 bytes; white space around it
    /// is ignored.
    pub fn parse(suite: Suite, text: &str) -> Result<LocalKek> {
        let t = text.trim();
        let bytes = Zeroizing::new(match hex::decode(t) {
            Ok(b) => b,
            Err(_) => B64
                .decode(t)
                .map_err(|_| Error::BadKek("neither 64 hex digits nor base64".into()))?,
        });
        if bytes.len() != KEK_BYTES {
            return Err(Error::BadKek(format!(
                "{} bytes, expected {KEK_BYTES}",
                bytes.len()
            )));
        }
        let mac = suite.mac(&bytes, b"relief key-encryption key");
        let wrapping = Zeroizing::new(mac[..suite.key_bytes()].to_vec());
        let id = format!(
            "kek-{}",
            hex::encode(&suite.hash(&[b"relief kek id ".as_slice(), &bytes].concat())[..8])
        );
        Ok(LocalKek {
            suite,
            wrapping,
            id,
        })
    }

    /// A fresh key, as the 64 hex digits [`LocalKek::parse`] reads.
    pub fn generate_text() -> Result<Zeroizing<String>> {
        let mut b = Zeroizing::new([0u8; KEK_BYTES]);
        getrandom::fill(b.as_mut_slice()).map_err(|_| Error::Random)?;
        Ok(Zeroizing::new(hex::encode(b.as_slice())))
    }
}

impl Kek for LocalKek {
    fn id(&self) -> &str {
        &self.id
    }

    fn wrap(&self, key: &[u8], aad: &[u8]) -> Result<Vec<u8>> {
        self.suite.seal(&self.wrapping, aad, key)
    }

    fn unwrap(&self, wrapped: &[u8], aad: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
        self.suite
            .open(&self.wrapping, aad, wrapped, "data key")
            .map(Zeroizing::new)
    }
}

/// A data key as the database keeps it: wrapped by the key-encryption key named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataKeyRecord {
    /// `<scope>/<number>`, e.g. `430112/2`.
    pub kid: String,
    /// The district it serves, `index` for the blind-index key, `*` for what belongs to no
    /// district (answers to city-scoped calls).
    pub scope: String,
    pub number: u32,
    pub wrapped: Vec<u8>,
    pub kek_id: String,
}

/// A row key wrapped by a data key, as stored beside the row: `<kid>:<base64>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrappedKey(String);

impl WrappedKey {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }

    /// The data key that wrapped it.
    pub fn kid(&self) -> &str {
        kid_of(&self.0)
    }
}

fn kid_of(wrapped: &str) -> &str {
    wrapped.split_once(':').map_or("", |(k, _)| k)
}

/// The key that seals one row's personal fields.
pub struct RowKey {
    suite: Suite,
    key: Zeroizing<Vec<u8>>,
}

impl fmt::Debug for RowKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RowKey(..)")
    }
}

impl RowKey {
    /// Seals a text; `field` is bound to it, so a sealed value moved to another field does
    /// not open. An empty text stays empty.
    pub fn seal_text(&self, field: &str, plaintext: &str) -> Result<String> {
        if plaintext.is_empty() {
            return Ok(String::new());
        }
        let sealed = self
            .suite
            .seal(&self.key, field.as_bytes(), plaintext.as_bytes())?;
        Ok(format!("{SEALED_PREFIX}{}", B64.encode(sealed)))
    }

    /// Opens what [`RowKey::seal_text`] made. A text without the prefix was written before
    /// sealing and is returned as it is.
    pub fn open_text(&self, field: &str, stored: &str) -> Result<String> {
        let Some(body) = stored.strip_prefix(SEALED_PREFIX) else {
            return Ok(stored.to_owned());
        };
        let sealed = B64.decode(body).map_err(|_| Error::Malformed("text"))?;
        let plain = self
            .suite
            .open(&self.key, field.as_bytes(), &sealed, "text")?;
        String::from_utf8(plain).map_err(|_| Error::Malformed("text"))
    }

    pub fn seal_bytes(&self, field: &str, plaintext: &[u8]) -> Result<Vec<u8>> {
        self.suite.seal(&self.key, field.as_bytes(), plaintext)
    }

    pub fn open_bytes(&self, field: &str, sealed: &[u8]) -> Result<Vec<u8>> {
        self.suite
            .open(&self.key, field.as_bytes(), sealed, "bytes")
    }
}

#[derive(Default)]
struct Keys {
    by_kid: HashMap<String, Arc<Zeroizing<Vec<u8>>>>,
    /// The newest data key of each scope: what new rows are sealed with.
    current: HashMap<String, (u32, String)>,
}

/// The data keys of a deployment, opened with its key-encryption key.
pub struct Keyring {
    suite: Suite,
    kek: Arc<dyn Kek>,
    keys: RwLock<Keys>,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("suite", &self.suite)
            .field("kek", &self.kek.id())
            .finish()
    }
}

impl Keyring {
    pub fn new(suite: Suite, kek: Arc<dyn Kek>) -> Keyring {
        Keyring {
            suite,
            kek,
            keys: RwLock::default(),
        }
    }

    pub fn suite(&self) -> Suite {
        self.suite
    }

    pub fn kek_id(&self) -> &str {
        self.kek.id()
    }

    /// A new data key for `scope` numbered `number`, wrapped for the database; it is used
    /// once [`Keyring::install`]ed.
    pub fn generate(&self, scope: &str, number: u32) -> Result<DataKeyRecord> {
        let mut key = Zeroizing::new(vec![0u8; self.suite.key_bytes()]);
        getrandom::fill(key.as_mut_slice()).map_err(|_| Error::Random)?;
        let kid = format!("{scope}/{number}");
        let wrapped = self.kek.wrap(&key, kid.as_bytes())?;
        Ok(DataKeyRecord {
            kid,
            scope: scope.to_owned(),
            number,
            wrapped,
            kek_id: self.kek.id().to_owned(),
        })
    }

    /// A new blind-index key for the database.
    pub fn generate_index_key(&self) -> Result<DataKeyRecord> {
        self.generate(INDEX_SCOPE, 1)
    }

    /// Opens a stored data key and keeps it; the highest number of a scope is its current
    /// key. A key wrapped by another key-encryption key is [`Error::WrongKek`].
    pub fn install(&self, rec: &DataKeyRecord) -> Result<()> {
        if rec.kek_id != self.kek.id() {
            return Err(Error::WrongKek {
                configured: self.kek.id().to_owned(),
                stored: rec.kek_id.clone(),
            });
        }
        let key = self
            .kek
            .unwrap(&rec.wrapped, rec.kid.as_bytes())
            .map_err(|_| Error::WrongKek {
                configured: self.kek.id().to_owned(),
                stored: rec.kek_id.clone(),
            })?;
        let mut keys = self.keys.write().unwrap_or_else(|p| p.into_inner());
        keys.by_kid.insert(rec.kid.clone(), Arc::new(key));
        let newer = keys
            .current
            .get(&rec.scope)
            .is_none_or(|(n, _)| *n < rec.number);
        if newer {
            keys.current
                .insert(rec.scope.clone(), (rec.number, rec.kid.clone()));
        }
        Ok(())
    }

    /// The same data key wrapped by `kek` instead, for retiring the key-encryption key.
    pub fn rewrap_for(&self, rec: &DataKeyRecord, kek: &dyn Kek) -> Result<DataKeyRecord> {
        let key = self.key(&rec.kid)?;
        Ok(DataKeyRecord {
            wrapped: kek.wrap(&key, rec.kid.as_bytes())?,
            kek_id: kek.id().to_owned(),
            ..rec.clone()
        })
    }

    /// The current data key of `scope` and its number.
    pub fn current(&self, scope: &str) -> Option<(u32, String)> {
        let keys = self.keys.read().unwrap_or_else(|p| p.into_inner());
        keys.current.get(scope).cloned()
    }

    fn key(&self, kid: &str) -> Result<Arc<Zeroizing<Vec<u8>>>> {
        let keys = self.keys.read().unwrap_or_else(|p| p.into_inner());
        keys.by_kid
            .get(kid)
            .cloned()
            .ok_or_else(|| Error::UnknownKey(kid.to_owned()))
    }

    /// A fresh row key for a row of `scope`, and its wrapping under the scope's current
    /// data key, to store beside the row.
    pub fn new_row(&self, scope: &str) -> Result<(RowKey, WrappedKey)> {
        let (_, kid) = self
            .current(scope)
            .ok_or_else(|| Error::NoKeyFor(scope.to_owned()))?;
        let mut key = Zeroizing::new(vec![0u8; self.suite.key_bytes()]);
        getrandom::fill(key.as_mut_slice()).map_err(|_| Error::Random)?;
        let wrapped = self.wrap_row(scope, &kid, &key)?;
        Ok((
            RowKey {
                suite: self.suite,
                key,
            },
            wrapped,
        ))
    }

    fn wrap_row(&self, scope: &str, kid: &str, key: &[u8]) -> Result<WrappedKey> {
        let dek = self.key(kid)?;
        let sealed = self.suite.seal(&dek, scope.as_bytes(), key)?;
        Ok(WrappedKey(format!("{kid}:{}", B64.encode(sealed))))
    }

    /// Opens a stored row key of `scope`.
    pub fn open_row(&self, scope: &str, wrapped: &str) -> Result<RowKey> {
        let (kid, body) = wrapped.split_once(':').ok_or(Error::Malformed("row key"))?;
        let dek = self.key(kid)?;
        let sealed = B64.decode(body).map_err(|_| Error::Malformed("row key"))?;
        let key = self
            .suite
            .open(&dek, scope.as_bytes(), &sealed, "row key")?;
        Ok(RowKey {
            suite: self.suite,
            key: Zeroizing::new(key),
        })
    }

    /// The row key wrapped under the scope's current data key, or `None` when it already
    /// is: what rotation writes back. The sealed fields of the row stay as they are.
    pub fn rewrap(&self, scope: &str, wrapped: &str) -> Result<Option<WrappedKey>> {
        let (_, current) = self
            .current(scope)
            .ok_or_else(|| Error::NoKeyFor(scope.to_owned()))?;
        if kid_of(wrapped) == current {
            return Ok(None);
        }
        let row = self.open_row(scope, wrapped)?;
        self.wrap_row(scope, &current, &row.key).map(Some)
    }

    /// The blind index of a normalised resident ID: the suite's HMAC under the index key,
    /// hex. Equal IDs give equal indexes in every district sharing the index key; nothing
    /// else of the ID can be read from it.
    pub fn blind_index(&self, normalised: &str) -> Result<String> {
        let (_, kid) = self
            .current(INDEX_SCOPE)
            .ok_or_else(|| Error::NoKeyFor(INDEX_SCOPE.to_owned()))?;
        let key = self.key(&kid)?;
        Ok(hex::encode(self.suite.mac(&key, normalised.as_bytes())))
    }
}
