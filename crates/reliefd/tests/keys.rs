//! Which keys the real `reliefd` binary trusts, and where. The development key's private
//! half is public, so `serve` and `gateway` refuse to start with it trusted on a non-loopback
//! address (exit 64, naming the setting, before anything is bound), and recognise it by its
//! key material under any kid or file. `reliefd keygen` makes a deployment's own key pair,
//! and `reliefd token --key` signs with it: a server on 0.0.0.0 configured with that JWKS
//! serves, takes those tokens and refuses development ones.

#![cfg(unix)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use relief_proto::v1 as pb;
use relief_proto::v1::district_service_client::DistrictServiceClient;
use tokio::process::{Child, Command};

/// A bound on how long a start-up may take before the test gives up; not a measurement.
const START_TIMEOUT: Duration = Duration::from_secs(60);
const HS256_SECRET: &str = "a-shared-secret-of-at-least-thirty-two-bytes";

fn repo_file(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path)
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind port 0");
    listener.local_addr().expect("local addr").port()
}

/// `reliefd ARGS` in `dir`, with no settings from the test's own environment.
fn reliefd(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_reliefd"));
    cmd.args(args)
        .current_dir(dir)
        .env_remove("RUST_LOG")
        .env_remove("RELIEF_CONFIG")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("RELIEF_") {
            cmd.env_remove(key);
        }
    }
    cmd
}

/// Runs a short command to its end: (exit code, stdout, stderr).
async fn run(dir: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let out = reliefd(dir, args).output().await.expect("reliefd runs");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A server that started; killed when dropped.
struct Running {
    _child: Child,
    port: u16,
    log: PathBuf,
}

/// How a `serve` or `gateway` start ended.
enum Start {
    Exited { code: Option<i32>, log: String },
    Serving(Running),
}

impl Start {
    fn exited(self, what: &str) -> (Option<i32>, String) {
        match self {
            Start::Exited { code, log } => (code, log),
            Start::Serving(r) => panic!(
                "{what}: started instead of refusing:\n{}",
                std::fs::read_to_string(&r.log).unwrap_or_default()
            ),
        }
    }

    fn serving(self, what: &str) -> Running {
        match self {
            Start::Serving(r) => r,
            Start::Exited { code, log } => panic!("{what}: exited with {code:?}:\n{log}"),
        }
    }
}

/// Starts `reliefd ARGS` (a server on `port`) and waits until it either exits or answers
/// SERVING to `reliefd probe` on 127.0.0.1:`port`.
async fn start(dir: &Path, name: &str, args: &[&str], env: &[(&str, &str)], port: u16) -> Start {
    let log = dir.join(format!("{name}.log"));
    let file = std::fs::File::create(&log).expect("log file");
    let mut cmd = reliefd(dir, args);
    cmd.envs(env.iter().copied())
        .stdout(file.try_clone().expect("log handle"))
        .stderr(file);
    let mut child = cmd.spawn().expect("reliefd starts");
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return Start::Exited {
                code: status.code(),
                log: std::fs::read_to_string(&log).unwrap_or_default(),
            };
        }
        let addr = format!("http://127.0.0.1:{port}");
        let (code, stdout, _) = run(dir, &["probe", "--addr", &addr, "--timeout-ms", "500"]).await;
        if code == Some(0) && stdout.contains("serving") {
            return Start::Serving(Running {
                _child: child,
                port,
                log,
            });
        }
        assert!(
            started.elapsed() < START_TIMEOUT,
            "{name} neither exited nor served:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `reliefd serve` with `config` (if any) and `env`, on a SQLite file in `dir`.
async fn serve(
    dir: &Path,
    name: &str,
    config: Option<&Path>,
    env: &[(&str, &str)],
    port: u16,
) -> Start {
    let db = format!("sqlite://{}/{name}.db", dir.display());
    let mut env = env.to_vec();
    env.push(("RELIEF_DATABASE_URL", &db));
    let config = config.map(|c| c.display().to_string());
    let mut args = Vec::new();
    if let Some(c) = &config {
        args.extend(["--config", c.as_str()]);
    }
    args.push("serve");
    start(dir, name, &args, &env, port).await
}

/// A configuration file with `auth` as its `[auth]` section and `listen` as the server's.
fn config_file(dir: &Path, name: &str, listen: &str, auth: &str) -> PathBuf {
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(
        &path,
        format!("[server]\nlisten = \"{listen}\"\n\n[auth]\n{auth}\n"),
    )
    .unwrap();
    path
}

/// Asserts a refusal: exit code 64 and a message naming each of `names`.
fn assert_refused(what: &str, (code, log): (Option<i32>, String), names: &[&str]) {
    assert_eq!(code, Some(64), "{what}:\n{log}");
    for name in names {
        assert!(log.contains(name), "{what}: {name} is not named:\n{log}");
    }
}

/// The lines of `log` that warn about the development key.
fn dev_key_warnings(log: &str) -> usize {
    log.lines()
        .filter(|l| l.contains("development key"))
        .count()
}

/// `ListDistricts` with `token`: Ok, or the refusal's code.
async fn call(server: &Running, token: &str) -> Result<(), tonic::Code> {
    let channel =
        tonic::transport::Channel::from_shared(format!("http://127.0.0.1:{}", server.port))
            .unwrap()
            .connect()
            .await
            .unwrap();
    let mut client = DistrictServiceClient::new(channel);
    let mut req = tonic::Request::new(pb::ListDistrictsRequest::default());
    req.metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    client
        .list_districts(req)
        .await
        .map(drop)
        .map_err(|s| s.code())
}

/// `reliefd token` with `args`, on `config`.
async fn token(dir: &Path, config: &Path, args: &[&str]) -> String {
    let config = config.display().to_string();
    let mut all = vec!["--config", config.as_str(), "token"];
    all.extend_from_slice(args);
    let (code, stdout, stderr) = run(dir, &all).await;
    assert_eq!(code, Some(0), "reliefd token {args:?}: {stderr}");
    stdout.trim().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_trusts_the_development_key_on_loopback_only() {
    let dir = tempfile::tempdir().unwrap();
    // The built-in configuration trusts the development key: on 0.0.0.0 nothing starts, not
    // even the database is created.
    let port = free_port();
    let public = format!("0.0.0.0:{port}");
    let refused = serve(
        dir.path(),
        "public",
        None,
        &[("RELIEF_SERVER_LISTEN", &public)],
        port,
    )
    .await
    .exited("serve on 0.0.0.0");
    assert_refused(
        "serve on 0.0.0.0",
        refused,
        &["auth.allow_dev_keys", "server.listen", &public],
    );
    assert!(!dir.path().join("public.db").exists());
    // Asking for it explicitly changes nothing.
    let port = free_port();
    let public = format!("0.0.0.0:{port}");
    let refused = serve(
        dir.path(),
        "public-allowed",
        None,
        &[
            ("RELIEF_SERVER_LISTEN", &public),
            ("RELIEF_AUTH_ALLOW_DEV_KEYS", "true"),
        ],
        port,
    )
    .await
    .exited("serve on 0.0.0.0 with allow_dev_keys = true");
    assert_refused(
        "allow_dev_keys = true",
        refused,
        &["auth.allow_dev_keys", "server.listen"],
    );

    // On loopback it serves, with one warning line, and takes development tokens.
    let port = free_port();
    let local = format!("127.0.0.1:{port}");
    let server = serve(
        dir.path(),
        "loopback",
        None,
        &[("RELIEF_SERVER_LISTEN", &local)],
        port,
    )
    .await
    .serving("serve on loopback");
    let (code, dev_token, _) = run(dir.path(), &["token"]).await;
    assert_eq!(code, Some(0));
    assert_eq!(call(&server, dev_token.trim()).await, Ok(()));
    let log = std::fs::read_to_string(&server.log).unwrap();
    assert_eq!(dev_key_warnings(&log), 1, "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_trusts_the_development_key_on_loopback_only() {
    let dir = tempfile::tempdir().unwrap();
    let gateway = |name: &str, listen: &str| {
        let path = dir.path().join(format!("{name}.toml"));
        std::fs::write(
            &path,
            format!(
                "[gateway]\nlisten = \"{listen}\"\n\n[[gateway.upstreams]]\nname = \"a\"\n\
                 addresses = [\"http://127.0.0.1:{}\"]\ndistricts = [\"430112\"]\n",
                free_port()
            ),
        )
        .unwrap();
        path.display().to_string()
    };
    let port = free_port();
    let config = gateway("public", &format!("0.0.0.0:{port}"));
    let refused = start(
        dir.path(),
        "public",
        &["--config", &config, "gateway"],
        &[],
        port,
    )
    .await
    .exited("gateway on 0.0.0.0");
    assert_refused(
        "gateway on 0.0.0.0",
        refused,
        &["auth.allow_dev_keys", "gateway.listen"],
    );

    let port = free_port();
    let config = gateway("loopback", &format!("127.0.0.1:{port}"));
    let running = start(
        dir.path(),
        "loopback",
        &["--config", &config, "gateway"],
        &[],
        port,
    )
    .await
    .serving("gateway on loopback");
    let log = std::fs::read_to_string(&running.log).unwrap();
    assert_eq!(dev_key_warnings(&log), 1, "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_set_holding_the_development_key_is_recognised() {
    let dir = tempfile::tempdir().unwrap();
    let dev_jwks = repo_file("deploy/config/dev/jwks.json");
    // The same public key under another kid, in a file of another name.
    let mut copy: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&dev_jwks).unwrap()).unwrap();
    copy["keys"][0]["kid"] = "city-2026".into();
    let copy_path = dir.path().join("city-keys.json");
    std::fs::write(&copy_path, copy.to_string()).unwrap();

    // (what, the [auth] section, listen, names the refusal must carry)
    let cases = [
        (
            "the repository's JWKS with allow_dev_keys = false",
            format!(
                "jwks_path = \"{}\"\nallow_dev_keys = false",
                dev_jwks.display()
            ),
            "127.0.0.1",
            vec!["auth.allow_dev_keys", "relief-dev-1"],
        ),
        (
            "a copy under another kid with allow_dev_keys = false",
            format!(
                "jwks_path = \"{}\"\nallow_dev_keys = false",
                copy_path.display()
            ),
            "127.0.0.1",
            vec!["auth.allow_dev_keys", "city-2026"],
        ),
        (
            "a copy under another kid, inline, on 0.0.0.0",
            format!("jwks_json = '{copy}'"),
            "0.0.0.0",
            vec!["auth.allow_dev_keys", "city-2026", "server.listen"],
        ),
    ];
    for (i, (what, auth, host, names)) in cases.into_iter().enumerate() {
        let port = free_port();
        let config = config_file(
            dir.path(),
            &format!("c{i}"),
            &format!("{host}:{port}"),
            &auth,
        );
        let refused = serve(dir.path(), &format!("c{i}"), Some(&config), &[], port)
            .await
            .exited(what);
        assert_refused(what, refused, &names);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keygen_keys_serve_a_deployment() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    let keys_arg = keys.display().to_string();
    let (code, stdout, stderr) = run(
        dir.path(),
        &["keygen", "--out", &keys_arg, "--kid", "city-1"],
    )
    .await;
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("city-1"), "{stdout}");
    let private = keys.join("signing-key.pem");
    let jwks = keys.join("jwks.json");
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&private), 0o600);
    assert_eq!(mode(&jwks), 0o644);
    let pem = std::fs::read_to_string(&private).unwrap();
    assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"));
    let set: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&jwks).unwrap()).unwrap();
    assert_eq!(set["keys"][0]["kid"], "city-1");
    assert!(set["keys"][0].get("d").is_none(), "the JWKS is public");

    // Existing keys are not replaced without --force.
    let (code, _, stderr) = run(dir.path(), &["keygen", "--out", &keys_arg]).await;
    assert_ne!(code, Some(0));
    assert!(stderr.contains("--force"), "{stderr}");
    assert_eq!(std::fs::read_to_string(&private).unwrap(), pem);

    // A server on 0.0.0.0 with that JWKS starts, with no development-key warning.
    let port = free_port();
    let config = config_file(
        dir.path(),
        "city",
        &format!("0.0.0.0:{port}"),
        &format!(
            "issuer = \"relief-city\"\njwks_path = \"{}\"",
            jwks.display()
        ),
    );
    let server = serve(dir.path(), "city", Some(&config), &[], port)
        .await
        .serving("serve with keygen's JWKS on 0.0.0.0");
    let log = std::fs::read_to_string(&server.log).unwrap();
    assert_eq!(dev_key_warnings(&log), 0, "{log}");

    // Tokens signed with the deployment's key pass; development ones do not.
    let private_arg = private.display().to_string();
    let own = token(
        dir.path(),
        &config,
        &["--key", &private_arg, "--kid", "city-1"],
    )
    .await;
    assert_eq!(call(&server, &own).await, Ok(()));
    let admin = token(
        dir.path(),
        &config,
        &[
            "--key",
            &private_arg,
            "--kid",
            "city-1",
            "--district",
            "city",
            "--roles",
            "city_admin",
        ],
    )
    .await;
    assert_eq!(call(&server, &admin).await, Ok(()));
    let dev = token(dir.path(), &config, &[]).await;
    assert_eq!(call(&server, &dev).await, Err(tonic::Code::Unauthenticated));
    let wrong_kid = token(
        dir.path(),
        &config,
        &["--key", &private_arg, "--kid", "relief-dev-1"],
    )
    .await;
    assert_eq!(
        call(&server, &wrong_kid).await,
        Err(tonic::Code::Unauthenticated)
    );

    // --force makes a new key, by default named by its thumbprint, which `token --key`
    // finds by itself; the old key's tokens stop verifying once servers load the new set.
    let (code, stdout, stderr) = run(dir.path(), &["keygen", "--out", &keys_arg, "--force"]).await;
    assert_eq!(code, Some(0), "{stderr}");
    assert_ne!(std::fs::read_to_string(&private).unwrap(), pem);
    assert_eq!(mode(&private), 0o600);
    let kid = stdout
        .lines()
        .find_map(|l| l.strip_prefix("kid: "))
        .unwrap()
        .to_owned();
    let set: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&jwks).unwrap()).unwrap();
    assert_eq!(set["keys"][0]["kid"], kid.as_str());
    drop(server);
    let port = free_port();
    let config = config_file(
        dir.path(),
        "rotated",
        &format!("0.0.0.0:{port}"),
        &format!(
            "issuer = \"relief-city\"\njwks_path = \"{}\"",
            jwks.display()
        ),
    );
    let server = serve(dir.path(), "rotated", Some(&config), &[], port)
        .await
        .serving("serve with the rotated JWKS");
    let new = token(dir.path(), &config, &["--key", &private_arg]).await;
    assert_eq!(call(&server, &new).await, Ok(()));
    assert_eq!(call(&server, &own).await, Err(tonic::Code::Unauthenticated));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_hs256_configuration_does_not_trust_the_development_key() {
    let dir = tempfile::tempdir().unwrap();
    // HS256 alone: it serves HS256 tokens and refuses development ones.
    let port = free_port();
    let config = config_file(
        dir.path(),
        "hs256",
        &format!("127.0.0.1:{port}"),
        &format!("algorithms = [\"HS256\"]\nhs256_secret = \"{HS256_SECRET}\""),
    );
    let server = serve(dir.path(), "hs256", Some(&config), &[], port)
        .await
        .serving("HS256 only");
    let log = std::fs::read_to_string(&server.log).unwrap();
    assert_eq!(dev_key_warnings(&log), 0, "{log}");
    let minter = relief_auth::Minter::hs256(
        &secrecy::SecretString::from(HS256_SECRET),
        "relief-dev",
        "relief",
    )
    .unwrap();
    let hs_token = minter
        .mint(&relief_auth::TokenSpec {
            subject: relief_domain::Subject::parse("officer").unwrap(),
            name: "办案人".to_owned(),
            scope: relief_auth::Scope::parse("430112").unwrap(),
            roles: vec![relief_domain::Role::CaseOfficer],
            unit: None,
            ttl_secs: 600,
            not_before: None,
        })
        .unwrap();
    assert_eq!(call(&server, &hs_token).await, Ok(()));
    let dev = token(dir.path(), &config, &[]).await;
    assert_eq!(call(&server, &dev).await, Err(tonic::Code::Unauthenticated));

    // HS256 next to EdDSA, with no JWKS: the development key does not stand in for one.
    let port = free_port();
    let config = config_file(
        dir.path(),
        "hs256-eddsa",
        &format!("127.0.0.1:{port}"),
        &format!("algorithms = [\"EdDSA\", \"HS256\"]\nhs256_secret = \"{HS256_SECRET}\""),
    );
    let refused = serve(dir.path(), "hs256-eddsa", Some(&config), &[], port)
        .await
        .exited("HS256 and EdDSA without a JWKS");
    assert_refused(
        "HS256 and EdDSA without a JWKS",
        refused,
        &["auth.jwks_path"],
    );
}
