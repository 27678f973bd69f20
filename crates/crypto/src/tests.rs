//! The suites against their standards' published vectors, and the envelope's round trips
//! and refusals.

use std::sync::Arc;

use proptest::prelude::*;
// The block API of the cipher 0.4 crates takes generic-array 0.14 blocks, which that crate
// now marks deprecated.
#[allow(deprecated)]
use sm4::cipher::{BlockEncrypt, KeyInit, generic_array::GenericArray};

use crate::{Error, Keyring, LocalKek, Suite};

fn unhex(s: &str) -> Vec<u8> {
    hex::decode(s.replace(' ', "")).unwrap_or_default()
}

#[test]
#[allow(deprecated)]
fn sm4_block_matches_gb_t_32907_example_1() {
    // GB/T 32907-2016, appendix A, example 1: one encryption of the key under itself.
    let key = unhex("0123456789abcdeffedcba9876543210");
    let Ok(cipher) = sm4::Sm4::new_from_slice(&key) else {
        panic!("a 16-byte key is an SM4 key");
    };
    let mut block = GenericArray::clone_from_slice(&key);
    cipher.encrypt_block(&mut block);
    assert_eq!(hex::encode(block), "681edf34d206965e86b3e94f536e4246");
}

#[test]
#[allow(deprecated)]
fn sm4_block_matches_gb_t_32907_example_2() {
    // Example 2: the same block encrypted 1,000,000 times.
    let key = unhex("0123456789abcdeffedcba9876543210");
    let Ok(cipher) = sm4::Sm4::new_from_slice(&key) else {
        panic!("a 16-byte key is an SM4 key");
    };
    let mut block = GenericArray::clone_from_slice(&key);
    for _ in 0..1_000_000 {
        cipher.encrypt_block(&mut block);
    }
    assert_eq!(hex::encode(block), "595298c7c6fd271f0402f804c33d3f66");
}

#[test]
fn sm3_matches_gb_t_32905_examples() {
    let check = |input: &[u8], expected: &str| {
        assert_eq!(hex::encode(Suite::Sm.hash(input)), expected);
    };
    // GB/T 32905-2016, appendix A: "abc", and "abcd" sixteen times.
    check(
        b"abc",
        "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0",
    );
    check(
        &b"abcd".repeat(16),
        "debe9ff92275b8a138604889c18e5a4d6fdb70e5387e5765293dcba39c0c5732",
    );
}

#[test]
fn sha256_is_the_standard_chain_hash() {
    assert_eq!(
        hex::encode(Suite::Standard.hash(b"abc")),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
}

#[test]
fn sm4_gcm_matches_rfc_8998() {
    // RFC 8998, appendix A.1 (SM4-GCM, as TLS 1.3's SM suite uses it).
    let key = unhex("0123456789ABCDEFFEDCBA9876543210");
    let Ok(nonce) = <[u8; 12]>::try_from(unhex("00001234567800000000ABCD")) else {
        panic!("12 bytes");
    };
    let aad = unhex("FEEDFACEDEADBEEFFEEDFACEDEADBEEFABADDAD2");
    let plain = unhex(
        "AAAAAAAAAAAAAAAABBBBBBBBBBBBBBBBCCCCCCCCCCCCCCCCDDDDDDDDDDDDDDDD\
         EEEEEEEEEEEEEEEEFFFFFFFFFFFFFFFFEEEEEEEEEEEEEEEEAAAAAAAAAAAAAAAA",
    );
    let sealed = Suite::Sm.seal_with_nonce(&key, &nonce, &aad, &plain);
    let expected = unhex(
        "00001234567800000000ABCD\
         17F399F08C67D5EE19D0DC9969C4BB7D5FD46FD3756489069157B282BB200735\
         D82710CA5C22F0CCFA7CBF93D496AC15A56834CBCF98C397B4024A2691233B8D\
         83DE3541E4C2B58177E065A9BF7B62EC",
    );
    assert_eq!(sealed.map(hex::encode), Ok(hex::encode(expected)));
}

#[test]
fn hmac_sha256_matches_rfc_4231_case_2() {
    assert_eq!(
        hex::encode(Suite::Standard.mac(b"Jefe", b"what do ya want for nothing?")),
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
}

fn keyring(suite: Suite) -> Keyring {
    let text = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
    let Ok(kek) = LocalKek::parse(suite, text) else {
        panic!("a valid key");
    };
    let ring = Keyring::new(suite, Arc::new(kek));
    for (scope, n) in [("430112", 1), ("index", 1), ("430105", 1)] {
        let rec = ring.generate(scope, n);
        assert_eq!(rec.as_ref().map(|r| ring.install(r)).ok(), Some(Ok(())));
    }
    ring
}

#[test]
fn a_wrong_kek_is_named_not_taken_for_corrupt_data() {
    for suite in [Suite::Standard, Suite::Sm] {
        let ring = keyring(suite);
        let Ok(rec) = ring.generate("430112", 2) else {
            panic!("a key");
        };
        let other = "ff112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
        let Ok(kek) = LocalKek::parse(suite, other) else {
            panic!("a valid key");
        };
        let wrong = Keyring::new(suite, Arc::new(kek));
        assert!(matches!(wrong.install(&rec), Err(Error::WrongKek { .. })));
        // The same id with altered bytes does not open either.
        let mut forged = rec.clone();
        forged.kek_id = wrong.kek_id().to_owned();
        assert!(matches!(
            wrong.install(&forged),
            Err(Error::WrongKek { .. })
        ));
    }
}

#[test]
fn kek_text_is_checked() {
    for bad in ["", "abc", "00", &"0".repeat(62), &"g".repeat(64)] {
        assert!(matches!(
            LocalKek::parse(Suite::Standard, bad),
            Err(Error::BadKek(_))
        ));
    }
    let Ok(text) = LocalKek::generate_text() else {
        panic!("random");
    };
    assert!(LocalKek::parse(Suite::Sm, &text).is_ok());
}

#[test]
fn rotation_rewraps_row_keys_and_keeps_every_sealed_field() {
    for suite in [Suite::Standard, Suite::Sm] {
        let ring = keyring(suite);
        let Ok((row, wrapped)) = ring.new_row("430112") else {
            panic!("a row key");
        };
        assert_eq!(wrapped.kid(), "430112/1");
        let Ok(sealed) = row.seal_text("resident_id", "11010519491231002X") else {
            panic!("sealed");
        };
        assert!(sealed.starts_with("enc:"));
        assert!(!sealed.contains("11010519491231002X"));
        // Another district's row keys do not open under this district.
        assert!(ring.open_row("430105", wrapped.as_str()).is_err());
        assert_eq!(ring.rewrap("430112", wrapped.as_str()), Ok(None));
        let Ok(next) = ring.generate("430112", 2) else {
            panic!("a key");
        };
        assert_eq!(ring.install(&next), Ok(()));
        let Ok(Some(rewrapped)) = ring.rewrap("430112", wrapped.as_str()) else {
            panic!("rewrapped under the new key");
        };
        assert_eq!(rewrapped.kid(), "430112/2");
        for w in [wrapped.as_str(), rewrapped.as_str()] {
            let Ok(opened) = ring.open_row("430112", w) else {
                panic!("opens");
            };
            assert_eq!(
                opened.open_text("resident_id", &sealed).as_deref(),
                Ok("11010519491231002X")
            );
            // Bound to its field.
            assert!(opened.open_text("phone", &sealed).is_err());
        }
    }
}

#[test]
fn blind_index_is_keyed_and_per_suite() {
    let a = keyring(Suite::Standard);
    let b = keyring(Suite::Standard);
    let id = "11010519491231002X";
    assert_eq!(a.blind_index(id), a.blind_index(id));
    // Index keys are random per keyring: another deployment's index differs.
    assert_ne!(a.blind_index(id), b.blind_index(id));
    assert_ne!(a.blind_index(id), a.blind_index("110105194912310029"));
    assert!(
        a.blind_index(id)
            .is_ok_and(|h| h.len() == 64 && !h.contains(id))
    );
}

proptest! {
    #[test]
    fn sealed_text_round_trips(text in "\\PC{0,200}", field in "[a-z_]{1,20}") {
        for suite in [Suite::Standard, Suite::Sm] {
            let ring = keyring(suite);
            let Ok((row, _)) = ring.new_row("430112") else { panic!("a row key") };
            let sealed = row.seal_text(&field, &text);
            prop_assert!(sealed.is_ok());
            let sealed = sealed.unwrap_or_default();
            prop_assert_eq!(row.open_text(&field, &sealed), Ok(text.clone()));
        }
    }

    #[test]
    fn altered_ciphertext_never_opens(flip in 0usize..64, bit in 0u8..8) {
        let ring = keyring(Suite::Sm);
        let Ok((row, _)) = ring.new_row("430112") else { panic!("a row key") };
        let Ok(sealed) = row.seal_bytes("f", b"6230880012345678") else { panic!("sealed") };
        let mut altered = sealed.clone();
        let i = flip % altered.len();
        if let Some(b) = altered.get_mut(i) { *b ^= 1 << bit; }
        prop_assert!(row.open_bytes("f", &altered).is_err());
    }
}
