//! `reliefd`: parses the command line and hands over to the library.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use relief_auth::{Minter, Scope, TokenSpec};
use relief_domain::{DistrictId, Role, Subject, UnitId};
use reliefd::settings::{self, Settings};
use reliefd::{Application, telemetry};
use secrecy::ExposeSecret as _;

/// Small allocations dominate a call (rows, JSON, protobuf, HTTP/2 frames); mimalloc serves
/// them faster than the system allocator under many threads (see BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Exit code for a configuration error (EX_CONFIG-like, as sysexits' EX_USAGE).
const EXIT_CONFIG: u8 = 64;

#[derive(Debug, Parser)]
#[command(
    name = "reliefd",
    version,
    about = "relief: the petition-relief fund service (信访救助资金)"
)]
struct Cli {
    /// A TOML configuration file; without it the built-in defaults apply.
    #[arg(long, short, global = true, env = "RELIEF_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Apply migrations and serve gRPC until SIGINT or SIGTERM.
    Serve,
    /// Serve the city gateway (the `[gateway]` section) until SIGINT or SIGTERM: one address
    /// that routes each call to the backend serving its district.
    Gateway,
    /// Ask a relief server's (or gateway's) gRPC health service whether it is serving; exit
    /// 0 if it is, 1 if not. For container health checks.
    Probe {
        /// The server's address.
        #[arg(long, default_value = "http://127.0.0.1:50051")]
        addr: String,
        /// How long to wait for the answer, in milliseconds.
        #[arg(long, default_value_t = 2000)]
        timeout_ms: u64,
    },
    /// Apply database migrations and exit.
    Migrate,
    /// Rebuild Wangcheng's 2022 year on a temporary database through the gRPC interface
    /// and print its self-evaluation report (the quickest way to see what relief does).
    Demo {
        /// Where to write the HTML report.
        #[arg(long, default_value = "relief-430112-2022-self-evaluation.html")]
        html: PathBuf,
    },
    /// Write a fresh Ed25519 signing key and its public JWKS for a deployment: DIR/signing-key.pem
    /// (mode 0600; keep it secret) and DIR/jwks.json (what `auth.jwks_path` names).
    Keygen {
        /// The directory to write the two files into (created if missing).
        #[arg(long)]
        out: PathBuf,
        /// The key's id in the JWKS and in token headers; the key's RFC 7638 thumbprint when
        /// absent.
        #[arg(long)]
        kid: Option<String>,
        /// Replace existing files (tokens signed with the old key stop verifying).
        #[arg(long)]
        force: bool,
    },
    /// Print a token signed with the development key, for trying the service by hand, or with
    /// a deployment's own key (`--key`), e.g. for a first administrator.
    Token {
        /// A PKCS#8 PEM Ed25519 private key to sign with (`reliefd keygen` writes one); the
        /// development key when absent.
        #[arg(long)]
        key: Option<PathBuf>,
        /// The key's id in the servers' JWKS; with `--key` only. Defaults to the key's RFC
        /// 7638 thumbprint, the id `reliefd keygen` gives when not told otherwise.
        #[arg(long, requires = "key")]
        kid: Option<String>,
        /// The person's id (the token's `sub`).
        #[arg(long, default_value = "dev-user")]
        subject: String,
        /// The person's display name.
        #[arg(long, default_value = "开发者")]
        name: String,
        /// A 6-digit district code, or `city`.
        #[arg(long, default_value = "430112")]
        district: String,
        /// Roles, comma-separated (applicant_unit, case_officer, deputy_leader, bureau_head,
        /// bureau_office, district_leader, finance, auditor, district_admin, city_admin,
        /// sync_client).
        #[arg(long, value_delimiter = ',', default_value = "case_officer")]
        roles: Vec<String>,
        /// The applicant unit, for the applicant_unit role.
        #[arg(long)]
        unit: Option<String>,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 3600)]
        ttl_secs: i64,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Keygen needs no settings: the configuration may name the JWKS it is about to write.
    if let Command::Keygen { out, kid, force } = &cli.command {
        return match reliefd::keys::keygen(out, kid.as_deref(), *force) {
            Ok(files) => {
                println!("kid: {}", files.kid);
                println!(
                    "private key: {} (keep it secret; `reliefd token --key {}` signs with it)",
                    files.private_key.display(),
                    files.private_key.display()
                );
                println!(
                    "public keys: {} (point auth.jwks_path at it)",
                    files.jwks.display()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("reliefd keygen: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    let settings = match Settings::load(cli.config.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("reliefd: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    if let Command::Token {
        key,
        kid,
        subject,
        name,
        district,
        roles,
        unit,
        ttl_secs,
    } = &cli.command
    {
        let token = minter(&settings, key.as_deref().map(|path| (path, kid.as_deref()))).and_then(
            |minter| {
                mint(
                    &minter,
                    subject,
                    name,
                    district,
                    roles,
                    unit.as_deref(),
                    *ttl_secs,
                )
            },
        );
        return match token {
            Ok(token) => {
                println!("{token}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("reliefd token: {e:#}");
                ExitCode::from(EXIT_CONFIG)
            }
        };
    }
    // The demo prints a report and the probe an answer; they stay quiet unless RUST_LOG asks
    // otherwise.
    if !matches!(cli.command, Command::Demo { .. } | Command::Probe { .. })
        || std::env::var_os("RUST_LOG").is_some()
    {
        telemetry::init(&settings.log);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("reliefd: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve => {
                let app = Application::build(settings).await?;
                app.run_until_stopped(shutdown_signal()).await
            }
            Command::Gateway => {
                let gateway = settings
                    .gateway
                    .clone()
                    .ok_or_else(|| settings::Error::Invalid {
                        field: "gateway".to_owned(),
                        reason: "`reliefd gateway` needs a [gateway] section".to_owned(),
                    })?;
                let verifier = std::sync::Arc::new(relief_auth::Verifier::new(
                    settings.auth.verifier_config()?,
                )?);
                reliefd::keys::check_dev_key(&verifier, gateway.listen, "gateway.listen")?;
                let gateway = relief_gateway::Gateway::build(gateway, verifier).await?;
                gateway.run_until_stopped(shutdown_signal()).await
            }
            Command::Probe { addr, timeout_ms } => {
                probe(&addr, std::time::Duration::from_millis(timeout_ms)).await
            }
            Command::Migrate => {
                let store = reliefd::open_store(&settings).await?;
                store.migrate().await?;
                tracing::info!("migrations applied");
                Ok(())
            }
            Command::Demo { html } => {
                let outcome = reliefd::demo::run(Some(&html)).await?;
                println!("{}", outcome.markdown);
                eprintln!(
                    "relief demo: grade {}; HTML report written to {}",
                    outcome.grade,
                    html.display()
                );
                Ok(())
            }
            Command::Token { .. } | Command::Keygen { .. } => Ok(()),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "reliefd stopped");
            eprintln!("reliefd: {e:#}");
            if e.downcast_ref::<settings::Error>().is_some() {
                ExitCode::from(EXIT_CONFIG)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// A minter for `key` (a PEM file and maybe its kid) or, without it, the development key.
fn minter(
    settings: &Settings,
    key: Option<(&std::path::Path, Option<&str>)>,
) -> anyhow::Result<Minter> {
    let (issuer, audience) = (settings.auth.issuer.clone(), settings.auth.audience.clone());
    Ok(match key {
        None => Minter::from_ed25519_pem(
            settings::DEV_SIGNING_KEY_PEM.as_bytes(),
            settings::DEV_KID,
            issuer,
            audience,
        )?,
        Some((path, kid)) => {
            let pem = secrecy::SecretString::from(
                std::fs::read_to_string(path)
                    .with_context(|| format!("reading {}", path.display()))?,
            );
            let kid = match kid {
                Some(kid) => kid.to_owned(),
                None => relief_auth::ed25519_default_kid(&pem)
                    .with_context(|| path.display().to_string())?,
            };
            Minter::from_ed25519_pem(pem.expose_secret().as_bytes(), &kid, issuer, audience)
                .with_context(|| path.display().to_string())?
        }
    })
}

fn mint(
    minter: &Minter,
    subject: &str,
    name: &str,
    district: &str,
    roles: &[String],
    unit: Option<&str>,
    ttl_secs: i64,
) -> anyhow::Result<String> {
    let scope = if district == relief_auth::CITY_SCOPE {
        Scope::City
    } else {
        Scope::District(DistrictId::parse(district)?)
    };
    let roles = roles
        .iter()
        .map(|r| r.trim().parse::<Role>())
        .collect::<Result<Vec<_>, _>>()?;
    let spec = TokenSpec {
        subject: Subject::parse(subject)?,
        name: name.to_owned(),
        scope,
        roles,
        unit: unit.map(UnitId::parse).transpose()?,
        ttl_secs,
        not_before: None,
    };
    Ok(minter.mint(&spec)?)
}

/// Asks `addr`'s health service about the whole server; an error unless it is serving.
async fn probe(addr: &str, timeout: std::time::Duration) -> anyhow::Result<()> {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;

    let channel = tonic::transport::Endpoint::from_shared(addr.to_owned())?
        .connect_timeout(timeout)
        .timeout(timeout)
        .connect()
        .await?;
    let answer = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await?
        .into_inner();
    let status = ServingStatus::try_from(answer.status).unwrap_or(ServingStatus::Unknown);
    if status == ServingStatus::Serving {
        println!("{addr}: serving");
        Ok(())
    } else {
        anyhow::bail!("{addr}: {}", status.as_str_name())
    }
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
