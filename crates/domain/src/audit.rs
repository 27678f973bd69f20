//! The audit trail's hash chain: each district's events are linked by a SHA-256 over the
//! previous event's hash and this event's fields, so editing or removing any stored event is
//! detectable by recomputing the chain. The chain's head is stored apart from the events, so
//! removing the last events is detectable too, and signed checkpoints published in the chain
//! let systems outside relief hold it to what it once was.

use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePublicKey, spki::der::pem::LineEnding};
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The hash that precedes a district's first event.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The fields of one event that the chain protects, exactly as stored.
#[derive(Debug, Clone, Copy)]
pub struct EventFields<'a> {
    pub district_id: &'a str,
    pub seq: i64,
    pub occurred_at_us: i64,
    pub actor_subject: &'a str,
    pub actor_name: &'a str,
    pub actor_role: &'a str,
    pub on_behalf_of: Option<&'a str>,
    pub action: &'a str,
    pub resource_type: &'a str,
    pub resource_id: &'a str,
    pub request_id: Option<&'a str>,
    /// The person's written opinion or reason, where the action has one.
    pub note: Option<&'a str>,
    pub before_json: Option<&'a str>,
    pub after_json: Option<&'a str>,
}

/// The hash that links a deployment's events: SHA-256, or SM3 (GB/T 32905) where the
/// deployment uses the national algorithms. Chosen once, when the database is created.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ChainAlg {
    #[default]
    Sha256,
    Sm3,
}

enum ChainHasher {
    Sha256(Sha256),
    Sm3(sm3::Sm3),
}

impl ChainHasher {
    fn new(alg: ChainAlg) -> Self {
        match alg {
            ChainAlg::Sha256 => ChainHasher::Sha256(Sha256::new()),
            ChainAlg::Sm3 => ChainHasher::Sm3(sm3::Sm3::new()),
        }
    }

    fn update(&mut self, bytes: impl AsRef<[u8]>) {
        match self {
            ChainHasher::Sha256(h) => h.update(bytes),
            ChainHasher::Sm3(h) => h.update(bytes),
        }
    }

    fn finalize(self) -> [u8; 32] {
        match self {
            ChainHasher::Sha256(h) => h.finalize().into(),
            ChainHasher::Sm3(h) => h.finalize().into(),
        }
    }
}

/// The SHA-256 hash of an event given its predecessor's ([`chain_hash_with`]).
pub fn chain_hash(prev_hash: &str, e: &EventFields<'_>) -> String {
    chain_hash_with(ChainAlg::Sha256, prev_hash, e)
}

/// The hash of an event given its predecessor's, over the fields exactly as stored (sealed
/// personal fields as their ciphertext). Every field is length-prefixed so no two different
/// events encode to the same bytes.
pub fn chain_hash_with(alg: ChainAlg, prev_hash: &str, e: &EventFields<'_>) -> String {
    let mut h = ChainHasher::new(alg);
    let mut put = |s: Option<&str>| match s {
        None => h.update([0u8]),
        Some(s) => {
            h.update([1u8]);
            h.update((s.len() as u64).to_be_bytes());
            h.update(s.as_bytes());
        }
    };
    put(Some(prev_hash));
    put(Some(e.district_id));
    put(Some(&e.seq.to_string()));
    put(Some(&e.occurred_at_us.to_string()));
    put(Some(e.actor_subject));
    put(Some(e.actor_name));
    put(Some(e.actor_role));
    put(e.on_behalf_of);
    put(Some(e.action));
    put(Some(e.resource_type));
    put(Some(e.resource_id));
    put(e.request_id);
    put(e.note);
    put(e.before_json);
    put(e.after_json);
    hex(&h.finalize())
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// Where a recomputed chain first disagrees with what is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainBreak {
    pub seq: i64,
    pub reason: &'static str,
}

/// A stored event as the verifier sees it.
pub trait StoredEvent {
    fn fields(&self) -> EventFields<'_>;
    fn prev_hash(&self) -> &str;
    fn hash(&self) -> &str;
}

/// Walks events in sequence order and returns the first that does not match.
pub fn verify_chain<'a, E: StoredEvent + 'a>(
    events: impl IntoIterator<Item = &'a E>,
) -> Result<u64, ChainBreak> {
    let mut walker = ChainWalker::new(Vec::new(), None);
    for e in events {
        walker.push(e)?;
    }
    Ok(walker.checked())
}

/// The action of a checkpoint event, and its resource type.
pub const CHECKPOINT_ACTION: &str = "audit.checkpoint";
pub const CHECKPOINT_RESOURCE: &str = "audit_checkpoint";

/// A point of a district's chain (the event at `seq` has `hash`), signed by the server's
/// audit key at `signed_at_us`. Stored as the `after` state of an `audit.checkpoint` event
/// that directly follows the event it names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub district_id: String,
    pub seq: i64,
    pub hash: String,
    /// Microseconds since the Unix epoch.
    pub signed_at_us: i64,
    /// [`AuditPublicKey::key_id`] of the key that signed it.
    pub key_id: String,
    /// The Ed25519 signature of [`checkpoint_message`], 128 hex digits.
    pub signature: String,
}

/// The bytes a checkpoint's signature covers: five lines, each ending in `\n`:
/// `relief.audit.checkpoint.v1`, the district id, the seq and the signing time in
/// microseconds (decimal), and the hash (64 lowercase hex digits) before the time.
pub fn checkpoint_message(district_id: &str, seq: i64, hash: &str, signed_at_us: i64) -> Vec<u8> {
    format!("relief.audit.checkpoint.v1\n{district_id}\n{seq}\n{hash}\n{signed_at_us}\n")
        .into_bytes()
}

/// Why a checkpoint or a key is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    #[error("the key is not an Ed25519 key in PKCS#8 PEM: {0}")]
    BadKey(String),
    #[error("the signature is not 128 hex digits")]
    BadSignature,
    #[error("the signature does not verify with key {0}")]
    DoesNotVerify(String),
}

/// The private half of the audit key. Its `Debug` shows only the key id.
#[derive(Clone)]
pub struct AuditSigner {
    key: SigningKey,
    public: AuditPublicKey,
}

impl std::fmt::Debug for AuditSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditSigner")
            .field("key_id", &self.public.key_id)
            .finish_non_exhaustive()
    }
}

impl AuditSigner {
    /// The key whose 32-byte secret is `seed`.
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        let key = SigningKey::from_bytes(seed);
        let public = AuditPublicKey::new(key.verifying_key());
        Self { key, public }
    }

    /// An Ed25519 private key in PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`), as
    /// `openssl genpkey -algorithm ed25519` writes it.
    pub fn from_pkcs8_pem(pem: &str) -> Result<Self, CheckpointError> {
        let key =
            SigningKey::from_pkcs8_pem(pem).map_err(|e| CheckpointError::BadKey(e.to_string()))?;
        let public = AuditPublicKey::new(key.verifying_key());
        Ok(Self { key, public })
    }

    pub fn public_key(&self) -> &AuditPublicKey {
        &self.public
    }

    /// Signs the district's chain at (`seq`, `hash`).
    pub fn sign(&self, district_id: &str, seq: i64, hash: &str, signed_at_us: i64) -> Checkpoint {
        let sig = self
            .key
            .sign(&checkpoint_message(district_id, seq, hash, signed_at_us));
        Checkpoint {
            district_id: district_id.to_owned(),
            seq,
            hash: hash.to_owned(),
            signed_at_us,
            key_id: self.public.key_id.clone(),
            signature: hex(&sig.to_bytes()),
        }
    }
}

/// The public half of the audit key, which anyone may hold to check checkpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditPublicKey {
    key: VerifyingKey,
    key_id: String,
}

impl AuditPublicKey {
    fn new(key: VerifyingKey) -> Self {
        let key_id = hex(&Sha256::digest(key.as_bytes())[..8]);
        Self { key, key_id }
    }

    /// The first 16 hex digits of the SHA-256 of the 32-byte public key.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The raw 32-byte Ed25519 public key.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.key.to_bytes()
    }

    /// The key as SubjectPublicKeyInfo PEM (`-----BEGIN PUBLIC KEY-----`).
    pub fn to_pem(&self) -> String {
        self.key
            .to_public_key_pem(LineEnding::LF)
            .unwrap_or_default()
    }

    /// Checks the checkpoint's signature with this key.
    pub fn verify(&self, c: &Checkpoint) -> Result<(), CheckpointError> {
        let bytes = ::hex::decode(&c.signature).map_err(|_| CheckpointError::BadSignature)?;
        let sig: [u8; 64] = bytes
            .try_into()
            .map_err(|_| CheckpointError::BadSignature)?;
        let msg = checkpoint_message(&c.district_id, c.seq, &c.hash, c.signed_at_us);
        self.key
            .verify_strict(&msg, &Signature::from_bytes(&sig))
            .map_err(|_| CheckpointError::DoesNotVerify(self.key_id.clone()))
    }
}

/// When the chain gets its next checkpoint: after this many events, or this long after the
/// last checkpoint when events came since, whichever comes first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckpointPolicy {
    pub every_events: i64,
    pub every_us: i64,
}

impl CheckpointPolicy {
    /// Whether a chain whose head is `head_seq` at `now_us`, whose last checkpoint event is
    /// `last_seq` (0 for none) signed at `last_at_us`, is due for one. A chain with nothing
    /// since its last checkpoint never is.
    pub fn due(&self, head_seq: i64, now_us: i64, last_seq: i64, last_at_us: i64) -> bool {
        let new = head_seq.saturating_sub(last_seq);
        new > 0 && (new >= self.every_events || now_us.saturating_sub(last_at_us) >= self.every_us)
    }
}

/// What a walk over a whole chain found, when it found nothing wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ChainSummary {
    pub events_checked: u64,
    /// Checkpoints whose signature verified with a key the verifier holds.
    pub checkpoints_verified: u64,
    /// Checkpoints signed with a key the verifier does not hold (a retired key).
    pub checkpoints_other_key: u64,
}

/// Recomputes a chain one event at a time, so that a chain of any length is checked in
/// bounded memory: the sequence has no gap, each event links to the one before and matches
/// its hash, each checkpoint names the event before it and its signature verifies, and the
/// chain passes through the point a caller holds (`claim`).
#[derive(Debug, Clone)]
pub struct ChainWalker {
    alg: ChainAlg,
    keys: Vec<AuditPublicKey>,
    claim: Option<(i64, String)>,
    prev: String,
    last_seq: i64,
    summary: ChainSummary,
}

impl ChainWalker {
    /// `keys` check the checkpoints; `claim` is a (seq, hash) the chain must pass through.
    pub fn new(keys: Vec<AuditPublicKey>, claim: Option<(i64, String)>) -> Self {
        Self {
            alg: ChainAlg::Sha256,
            keys,
            claim,
            prev: GENESIS_HASH.to_owned(),
            last_seq: 0,
            summary: ChainSummary::default(),
        }
    }

    /// The same walker, for a chain linked with `alg`.
    pub fn with_alg(mut self, alg: ChainAlg) -> Self {
        self.alg = alg;
        self
    }

    /// The events that matched so far.
    pub fn checked(&self) -> u64 {
        self.summary.events_checked
    }

    /// The seq of the last event that matched; 0 before the first.
    pub fn last_seq(&self) -> i64 {
        self.last_seq
    }

    pub fn push<E: StoredEvent + ?Sized>(&mut self, e: &E) -> Result<(), ChainBreak> {
        let f = e.fields();
        let brk = |reason| Err(ChainBreak { seq: f.seq, reason });
        if Some(f.seq) != self.last_seq.checked_add(1) {
            return brk("sequence gap: an event is missing");
        }
        if e.prev_hash() != self.prev {
            return brk("does not link to the previous event");
        }
        let h = chain_hash_with(self.alg, &self.prev, &f);
        if h != e.hash() {
            return brk("content does not match its hash");
        }
        if f.action == CHECKPOINT_ACTION {
            let Some(c) = f
                .after_json
                .and_then(|j| serde_json::from_str::<Checkpoint>(j).ok())
            else {
                return brk("checkpoint is not readable");
            };
            if c.district_id != f.district_id
                || Some(c.seq) != f.seq.checked_sub(1)
                || c.hash != self.prev
            {
                return brk("checkpoint does not name the event before it");
            }
            match self.keys.iter().find(|k| k.key_id == c.key_id) {
                Some(k) if k.verify(&c).is_ok() => self.summary.checkpoints_verified += 1,
                Some(_) => return brk("checkpoint signature does not verify"),
                None => self.summary.checkpoints_other_key += 1,
            }
        }
        if let Some((seq, hash)) = &self.claim
            && *seq == f.seq
            && *hash != h
        {
            return brk("does not match the caller's checkpoint");
        }
        self.prev = h;
        self.last_seq = f.seq;
        self.summary.events_checked += 1;
        Ok(())
    }

    /// Ends the walk against the chain's stored head (seq and hash; seq 0 for an empty
    /// chain): the events must end exactly there.
    pub fn finish(self, head_seq: i64, head_hash: &str) -> Result<ChainSummary, ChainBreak> {
        let next = self.last_seq.saturating_add(1);
        if self.last_seq < head_seq {
            return Err(ChainBreak {
                seq: next,
                reason: "the chain ends before its stored head: events are missing",
            });
        }
        if self.last_seq > head_seq {
            return Err(ChainBreak {
                seq: head_seq.saturating_add(1),
                reason: "events after the stored chain head",
            });
        }
        if self.prev != head_hash {
            return Err(ChainBreak {
                seq: head_seq,
                reason: "does not match the stored chain head",
            });
        }
        if let Some((seq, _)) = &self.claim
            && *seq > self.last_seq
        {
            return Err(ChainBreak {
                seq: next,
                reason: "the chain ends before the caller's checkpoint: events are missing",
            });
        }
        Ok(self.summary)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// (what, the walk's outcome, the break expected).
    type WalkCase<'a> = (
        &'a str,
        Result<ChainSummary, ChainBreak>,
        Result<(), (i64, &'a str)>,
    );

    struct E {
        seq: i64,
        action: String,
        after: String,
        prev: String,
        hash: String,
    }

    impl StoredEvent for E {
        fn fields(&self) -> EventFields<'_> {
            EventFields {
                district_id: "430112",
                seq: self.seq,
                occurred_at_us: 1,
                actor_subject: "u",
                actor_name: "n",
                actor_role: "case_officer",
                on_behalf_of: None,
                action: &self.action,
                resource_type: "case",
                resource_id: "c",
                request_id: None,
                note: None,
                before_json: None,
                after_json: Some(&self.after),
            }
        }
        fn prev_hash(&self) -> &str {
            &self.prev
        }
        fn hash(&self) -> &str {
            &self.hash
        }
    }

    fn chain(n: i64) -> Vec<E> {
        let mut prev = GENESIS_HASH.to_owned();
        (1..=n)
            .map(|seq| {
                let mut e = E {
                    seq,
                    action: format!("a{seq}"),
                    after: "{}".to_owned(),
                    prev: prev.clone(),
                    hash: String::new(),
                };
                e.hash = chain_hash(&prev, &e.fields());
                prev = e.hash.clone();
                e
            })
            .collect()
    }

    #[test]
    fn detects_every_kind_of_tampering() {
        assert_eq!(verify_chain(&chain(5)), Ok(5));
        assert_eq!(verify_chain(&Vec::<E>::new()), Ok(0));

        let mut edited = chain(5);
        edited[2].action = "forged".into();
        assert_eq!(verify_chain(&edited).map_err(|b| b.seq), Err(3));

        let mut removed = chain(5);
        removed.remove(1);
        assert_eq!(verify_chain(&removed).map_err(|b| b.seq), Err(3));

        let mut relinked = chain(5);
        relinked[4].prev = GENESIS_HASH.into();
        assert_eq!(verify_chain(&relinked).map_err(|b| b.seq), Err(5));
    }

    #[test]
    fn optional_fields_are_not_ambiguous() {
        let mut a = chain(1).remove(0);
        let base = chain_hash(GENESIS_HASH, &a.fields());
        a.action = String::new();
        assert_ne!(chain_hash(GENESIS_HASH, &a.fields()), base);
    }

    fn signer(n: u8) -> AuditSigner {
        AuditSigner::from_seed(&[n; 32])
    }

    /// Appends an event to `events`, a checkpoint of the chain so far when `signer` is given.
    fn append(events: &mut Vec<E>, signer: Option<&AuditSigner>) {
        let seq = events.len() as i64 + 1;
        let prev = events
            .last()
            .map_or(GENESIS_HASH.to_owned(), |e| e.hash.clone());
        let (action, after) = match signer {
            Some(s) => {
                let c = s.sign("430112", seq - 1, &prev, 1_700_000_000_000_000);
                (
                    CHECKPOINT_ACTION.to_owned(),
                    serde_json::to_string(&c).unwrap(),
                )
            }
            None => (format!("a{seq}"), "{}".to_owned()),
        };
        let mut e = E {
            seq,
            action,
            after,
            prev: prev.clone(),
            hash: String::new(),
        };
        e.hash = chain_hash(&prev, &e.fields());
        events.push(e);
    }

    fn walk(
        events: &[E],
        keys: &[&AuditSigner],
        claim: Option<(i64, String)>,
        head: (i64, &str),
    ) -> Result<ChainSummary, ChainBreak> {
        let keys = keys.iter().map(|s| s.public_key().clone()).collect();
        let mut w = ChainWalker::new(keys, claim);
        for e in events {
            w.push(e)?;
        }
        w.finish(head.0, head.1)
    }

    #[test]
    fn the_walk_holds_the_chain_to_its_head_its_checkpoints_and_the_callers() {
        let key = signer(1);
        let mut events = Vec::new();
        for i in 0..6 {
            append(&mut events, (i == 3).then_some(&key));
        }
        let head = |n: usize| (n as i64, events[n - 1].hash.as_str());
        let hash_at = |seq: i64| events[seq as usize - 1].hash.clone();
        let brk = |r: Result<ChainSummary, ChainBreak>| r.map_err(|b| (b.seq, b.reason));
        let ok = walk(&events, &[&key], None, head(6)).unwrap();
        assert_eq!(
            (
                ok.events_checked,
                ok.checkpoints_verified,
                ok.checkpoints_other_key
            ),
            (6, 1, 0)
        );
        // A checkpoint signed by a key the verifier does not hold is counted apart.
        let other = walk(&events, &[&signer(2)], None, head(6)).unwrap();
        assert_eq!(
            (other.checkpoints_verified, other.checkpoints_other_key),
            (0, 1)
        );
        let cases: Vec<WalkCase<'_>> = vec![
            (
                "truncated below the head",
                walk(&events[..4], &[&key], None, head(6)),
                Err((
                    5,
                    "the chain ends before its stored head: events are missing",
                )),
            ),
            (
                "beyond the head",
                walk(&events, &[&key], None, head(5)),
                Err((6, "events after the stored chain head")),
            ),
            (
                "head hash differs",
                walk(&events, &[&key], None, (6, GENESIS_HASH)),
                Err((6, "does not match the stored chain head")),
            ),
            (
                "empty chain, empty head",
                walk(&[], &[&key], None, (0, GENESIS_HASH)),
                Ok(()),
            ),
            (
                "caller's checkpoint matches",
                walk(&events, &[&key], Some((3, hash_at(3))), head(6)),
                Ok(()),
            ),
            (
                "caller's checkpoint differs",
                walk(&events, &[&key], Some((3, hash_at(2))), head(6)),
                Err((3, "does not match the caller's checkpoint")),
            ),
            (
                "chain and head both cut before the caller's checkpoint",
                walk(&events[..4], &[&key], Some((6, hash_at(6))), head(4)),
                Err((
                    5,
                    "the chain ends before the caller's checkpoint: events are missing",
                )),
            ),
        ];
        for (what, got, want) in cases {
            assert_eq!(brk(got).map(|_| ()), want, "{what}");
        }
        // A forged signature, re-chained so that only the signature is wrong.
        let mut forged: Vec<E> = events
            .iter()
            .take(3)
            .map(|e| E {
                seq: e.seq,
                action: e.action.clone(),
                after: e.after.clone(),
                prev: e.prev.clone(),
                hash: e.hash.clone(),
            })
            .collect();
        append(&mut forged, Some(&signer(9)));
        let mut c: Checkpoint = serde_json::from_str(&forged[3].after).unwrap();
        c.key_id = key.public_key().key_id().to_owned();
        forged[3].after = serde_json::to_string(&c).unwrap();
        forged[3].hash = chain_hash(&forged[3].prev, &forged[3].fields());
        let h = forged[3].hash.clone();
        assert_eq!(
            brk(walk(&forged, &[&key], None, (4, &h))),
            Err((4, "checkpoint signature does not verify"))
        );
        // A checkpoint that names another point of the chain.
        let mut misplaced: Vec<E> = Vec::new();
        for _ in 0..2 {
            append(&mut misplaced, None);
        }
        let c = key.sign("430112", 1, &misplaced[0].hash, 5);
        let mut e = E {
            seq: 3,
            action: CHECKPOINT_ACTION.to_owned(),
            after: serde_json::to_string(&c).unwrap(),
            prev: misplaced[1].hash.clone(),
            hash: String::new(),
        };
        e.hash = chain_hash(&e.prev, &e.fields());
        let h = e.hash.clone();
        misplaced.push(e);
        assert_eq!(
            brk(walk(&misplaced, &[&key], None, (3, &h))),
            Err((3, "checkpoint does not name the event before it"))
        );
    }

    #[test]
    fn a_checkpoint_verifies_with_its_public_key_only() {
        let key = signer(7);
        let c = key.sign("430112", 41, &"ab".repeat(32), 1_700_000_000_000_000);
        assert_eq!(c.key_id.len(), 16);
        assert_eq!(c.signature.len(), 128);
        assert_eq!(key.public_key().verify(&c), Ok(()));
        let mut moved = c.clone();
        moved.seq = 40;
        assert!(key.public_key().verify(&moved).is_err());
        assert!(signer(8).public_key().verify(&c).is_err());
        let mut garbled = c.clone();
        garbled.signature = "zz".into();
        assert_eq!(
            key.public_key().verify(&garbled),
            Err(CheckpointError::BadSignature)
        );
        assert!(
            key.public_key()
                .to_pem()
                .starts_with("-----BEGIN PUBLIC KEY-----")
        );
        assert!(format!("{key:?}").contains(key.public_key().key_id()));
        assert!(AuditSigner::from_pkcs8_pem("not a key").is_err());
    }

    #[test]
    fn checkpoints_fall_due_by_count_or_by_time() {
        let p = CheckpointPolicy {
            every_events: 100,
            every_us: 3_600_000_000,
        };
        let cases = [
            // (head, now, last seq, last time, due)
            (10, 1_000, 0, 0, false),
            (100, 1_000, 0, 0, true),
            (150, 1_000, 100, 0, false),
            (101, 3_600_000_000, 100, 0, true),
            (100, 3_600_000_000, 100, 0, false),
            (i64::MAX, i64::MAX, i64::MIN, i64::MIN, true),
        ];
        for (head, now, seq, at, due) in cases {
            assert_eq!(p.due(head, now, seq, at), due, "{head} {now} {seq} {at}");
        }
    }
}
