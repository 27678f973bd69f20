//! Personal data at rest. relief keeps resident ID numbers, bank accounts, phone numbers,
//! addresses and the description of a person's hardship; none of them may reach the
//! database in clear. This crate holds what that takes, with no I/O of its own:
//!
//! - [`Suite`]: the deployment's algorithms, chosen once when its database is created:
//!   `standard` (AES-256-GCM, HMAC-SHA-256, SHA-256) or `sm` (SM4-GCM, HMAC-SM3, SM3, the
//!   national algorithms that a 密评 assessment expects);
//! - [`Kek`]: the key-encryption key, behind a trait so that a KMS or an HSM can hold it;
//! - [`Keyring`]: the per-district data keys, wrapped by the key-encryption key, and the
//!   envelope every sealed row uses: a fresh row key wrapped by the district's current data
//!   key ([`Keyring::new_row`]), so rotating a data key re-wraps row keys and never changes
//!   a stored ciphertext (which the audit chain hashes);
//! - the blind index ([`Keyring::blind_index`]): a keyed HMAC over a normalised resident ID,
//!   for the exact lookups the repeat-relief rule needs.

mod error;
mod keyring;
mod suite;

pub use error::{Error, Result};
pub use keyring::{DataKeyRecord, Kek, Keyring, LocalKek, RowKey, SEALED_PREFIX, WrappedKey};
pub use suite::Suite;

#[cfg(test)]
mod tests;
