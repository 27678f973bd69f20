//! A city as it is deployed: the real `reliefd` binary run twice, once as a district backend
//! (`reliefd serve`) and once as the gateway in front of it (`reliefd gateway`), each from its
//! own configuration file. `reliefd probe` reports both healthy; a call through the gateway
//! is answered, and the request id the client chose appears in the access-log lines of both
//! processes, so an operator can follow one call across them.

#![cfg(unix)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use relief_proto::v1 as pb;
use relief_proto::v1::district_service_client::DistrictServiceClient;
use relief_tests::{AUDIENCE, ED25519_KID, ISSUER, JWKS_JSON, TEST_ED25519_PEM, WANGCHENG};
use tokio::process::{Child, Command};

const START_TIMEOUT: Duration = Duration::from_secs(20);

fn free_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind port 0");
    listener.local_addr().expect("local addr")
}

/// Kills its process when dropped, so a failing test leaves nothing running.
struct Running {
    child: Child,
    log: PathBuf,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

fn reliefd(config: &Path, command: &str, log: PathBuf) -> Running {
    let file = std::fs::File::create(&log).expect("log file");
    let child = Command::new(env!("CARGO_BIN_EXE_reliefd"))
        .arg("--config")
        .arg(config)
        .arg(command)
        .env_remove("RUST_LOG")
        .stdout(file.try_clone().expect("log handle"))
        .stderr(file)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("reliefd starts");
    Running { child, log }
}

/// Runs `reliefd probe` until it says serving.
async fn wait_until_serving(addr: SocketAddr, what: &Running) {
    let started = Instant::now();
    loop {
        let out = Command::new(env!("CARGO_BIN_EXE_reliefd"))
            .args([
                "probe",
                "--addr",
                &format!("http://{addr}"),
                "--timeout-ms",
                "500",
            ])
            .output()
            .await
            .expect("reliefd probe runs");
        if out.status.success() {
            assert!(String::from_utf8_lossy(&out.stdout).contains("serving"));
            return;
        }
        assert!(
            started.elapsed() < START_TIMEOUT,
            "{addr} never became healthy:\n{}",
            std::fs::read_to_string(&what.log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn auth_toml() -> String {
    format!(
        r#"
[auth]
issuer = "{ISSUER}"
audience = "{AUDIENCE}"
algorithms = ["EdDSA"]
allow_dev_keys = false
jwks_json = '''
{JWKS_JSON}'''

[log]
format = "json"
filter = "info"
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_through_the_gateway_is_traced_in_both_processes() {
    let dir = tempfile::tempdir().unwrap();
    let backend_addr = free_port();
    let gateway_addr = free_port();

    // The backend: the test suite's settings (both test districts) on its own port.
    let backend_toml =
        relief_tests::settings_toml(&format!("sqlite://{}/relief.db", dir.path().display()), 4)
            .replace(
                "listen = \"127.0.0.1:0\"",
                &format!("listen = \"{backend_addr}\""),
            )
            .replace(
                "[auth]",
                "[log]\nformat = \"json\"\nfilter = \"info\"\n\n[auth]",
            );
    let backend_config = dir.path().join("backend.toml");
    std::fs::write(&backend_config, backend_toml).unwrap();

    let gateway_toml = format!(
        r#"
[gateway]
listen = "{gateway_addr}"
health_interval_ms = 200

[[gateway.upstreams]]
name = "backend-a"
addresses = ["http://{backend_addr}"]
districts = ["{WANGCHENG}"]
{auth}"#,
        auth = auth_toml()
    );
    let gateway_config = dir.path().join("gateway.toml");
    std::fs::write(&gateway_config, gateway_toml).unwrap();

    let backend = reliefd(&backend_config, "serve", dir.path().join("backend.log"));
    wait_until_serving(backend_addr, &backend).await;
    let gateway = reliefd(&gateway_config, "gateway", dir.path().join("gateway.log"));
    wait_until_serving(gateway_addr, &gateway).await;

    let minter =
        relief_auth::Minter::from_ed25519_pem(TEST_ED25519_PEM, ED25519_KID, ISSUER, AUDIENCE)
            .unwrap();
    let token = minter
        .mint(&relief_auth::TokenSpec {
            subject: relief_domain::Subject::parse("officer-430112").unwrap(),
            name: "办案人".to_owned(),
            scope: relief_auth::Scope::parse(WANGCHENG).unwrap(),
            roles: vec![relief_domain::Role::CaseOfficer],
            unit: None,
            ttl_secs: 600,
            not_before: None,
        })
        .unwrap();
    let request_id = format!("trace-{}", uuid::Uuid::now_v7().simple());
    let channel = tonic::transport::Channel::from_shared(format!("http://{gateway_addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    // The gateway's health checks have seen the backend by now (the probe waited for it),
    // but its first check may still be in flight: retry UNAVAILABLE briefly.
    let started = Instant::now();
    let district = loop {
        let mut req = tonic::Request::new(pb::GetDistrictRequest {
            district_id: WANGCHENG.to_owned(),
        });
        req.metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
        req.metadata_mut()
            .insert("x-request-id", request_id.parse().unwrap());
        match DistrictServiceClient::new(channel.clone())
            .get_district(req)
            .await
        {
            Ok(answer) => break answer.into_inner().district.unwrap(),
            Err(s) if s.code() == tonic::Code::Unavailable && started.elapsed() < START_TIMEOUT => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(s) => panic!("through the gateway: {s:?}"),
        }
    };
    assert_eq!(district.district_id, WANGCHENG);

    // Stop both and read what they logged.
    for running in [&gateway, &backend] {
        let pid = running.child.id().unwrap();
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
    }
    let mut gateway = gateway;
    let mut backend = backend;
    let _ = tokio::time::timeout(Duration::from_secs(15), gateway.child.wait()).await;
    let _ = tokio::time::timeout(Duration::from_secs(15), backend.child.wait()).await;
    for (running, service) in [(&gateway, "gateway"), (&backend, "backend")] {
        let log = std::fs::read_to_string(&running.log).unwrap();
        let line = log
            .lines()
            .filter(|l| l.contains("relief::access") && l.contains(&request_id))
            .find(|l| l.contains("GetDistrict"))
            .unwrap_or_else(|| panic!("{service} logged no access line for {request_id}:\n{log}"));
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let fields = &v;
        assert_eq!(fields["service"], service, "{line}");
        assert_eq!(fields["district"], WANGCHENG, "{line}");
        assert_eq!(fields["status"], "Ok", "{line}");
        assert_eq!(fields["request_id"], request_id.as_str(), "{line}");
        assert!(fields["duration_ms"].is_string() || fields["duration_ms"].is_number());
    }
}
