//! Keys where the binary meets the network and the file system. The development key's
//! private half is public, so `serve` and `gateway` share one rule, [`check_dev_key`]: it is
//! trusted on a loopback address only, with a warning, and anywhere else start-up stops.
//! [`keygen`] writes a deployment's own signing key and JWKS (`reliefd keygen`).

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use relief_auth::{Ed25519KeyPair, Verifier};
use secrecy::ExposeSecret as _;

use crate::settings;

/// The private key's file name in `reliefd keygen --out DIR`.
pub const PRIVATE_KEY_FILE: &str = "signing-key.pem";
/// The public JWKS's file name in `reliefd keygen --out DIR`: what `auth.jwks_path` names.
pub const JWKS_FILE: &str = "jwks.json";

/// Refuses to serve with the development key trusted on anything but a loopback address,
/// and warns (one line) when it is trusted on loopback. `listen_setting` names the setting
/// `listen` came from (`server.listen`, `gateway.listen`). Call before binding.
pub fn check_dev_key(
    verifier: &Verifier,
    listen: SocketAddr,
    listen_setting: &str,
) -> Result<(), settings::Error> {
    if !verifier.trusts_dev_key() {
        return Ok(());
    }
    let kid = verifier.dev_key_kid().unwrap_or(relief_auth::DEV_KID);
    if listen.ip().is_loopback() {
        tracing::warn!(
            kid,
            listen = %listen,
            "the development key is trusted: anyone can sign tokens for this server; loopback only"
        );
        return Ok(());
    }
    Err(settings::Error::Invalid {
        field: "auth.allow_dev_keys".to_owned(),
        reason: format!(
            "the development key (kid {kid:?}), whose private half is public in the relief \
             repository, would be trusted while {listen_setting} = {listen} is not a loopback \
             address; configure the deployment's own keys (auth.jwks_path, made with \
             `reliefd keygen`) and leave allow_dev_keys unset or false, or listen on 127.0.0.1"
        ),
    })
}

/// What `reliefd keygen` wrote.
#[derive(Debug, Clone)]
pub struct KeyFiles {
    pub kid: String,
    pub private_key: PathBuf,
    pub jwks: PathBuf,
}

/// Writes a fresh Ed25519 signing key (`DIR/signing-key.pem`, PKCS#8 PEM, mode 0600 from
/// its creation) and its public JWKS (`DIR/jwks.json`, readable by all, since servers run as
/// their own user). Existing files are replaced only with `force`; without it nothing is
/// written when either exists.
pub fn keygen(out: &Path, kid: Option<&str>, force: bool) -> anyhow::Result<KeyFiles> {
    let pair = Ed25519KeyPair::generate(kid)?;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let private_key = out.join(PRIVATE_KEY_FILE);
    let jwks = out.join(JWKS_FILE);
    if !force {
        for path in [&private_key, &jwks] {
            if path.symlink_metadata().is_ok() {
                anyhow::bail!(
                    "{} exists; pass --force to replace it (tokens signed with the old key stop \
                     working)",
                    path.display()
                );
            }
        }
    }
    write_file(
        &private_key,
        pair.private_pem().expose_secret().as_bytes(),
        Mode::Private,
        force,
    )?;
    write_file(&jwks, pair.jwks_json().as_bytes(), Mode::Public, force)?;
    Ok(KeyFiles {
        kid: pair.kid().to_owned(),
        private_key,
        jwks,
    })
}

#[derive(Clone, Copy)]
enum Mode {
    /// 0600: only the owner reads it.
    Private,
    /// 0644: the servers' own user reads it too.
    Public,
}

/// Writes `contents` to a new file next to `path`, created with its final mode, and moves
/// it into place, so `path` is never seen half-written or with looser permissions.
fn write_file(path: &Path, contents: &[u8], mode: Mode, replace: bool) -> anyhow::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut builder = tempfile::Builder::new();
    builder.prefix(".reliefd-keygen-");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let bits = match mode {
            Mode::Private => 0o600,
            Mode::Public => 0o644,
        };
        builder.permissions(std::fs::Permissions::from_mode(bits));
    }
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = builder
        .tempfile_in(dir)
        .with_context(|| format!("creating a file in {}", dir.display()))?;
    // The umask may have taken bits from the public file; the servers' user must read it.
    #[cfg(unix)]
    if matches!(mode, Mode::Public) {
        use std::os::unix::fs::PermissionsExt as _;
        file.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644))
            .with_context(|| format!("making {} readable", path.display()))?;
    }
    file.write_all(contents)
        .and_then(|()| file.as_file().sync_all())
        .with_context(|| format!("writing {}", path.display()))?;
    if replace {
        file.persist(path)
            .map(drop)
            .with_context(|| format!("writing {}", path.display()))?;
    } else {
        file.persist_noclobber(path)
            .map(drop)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
