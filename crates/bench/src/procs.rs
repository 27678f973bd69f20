//! The servers under test, run as the real `reliefd` binary in child processes so that their
//! CPU and memory are their own: started from a configuration, waited for through the gRPC
//! health service, measured (peak resident memory) and stopped.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio::process::{Child, Command};
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

/// How long a server may take to start (migrations included).
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// The `reliefd` next to this benchmark's own binary (`cargo build --release -p reliefd`
/// puts them side by side), unless given.
pub fn reliefd_path(given: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    let path = match given {
        Some(p) => p,
        None => std::env::current_exe()?.with_file_name("reliefd"),
    };
    anyhow::ensure!(
        path.exists(),
        "{} not found: build it with `cargo build --release -p reliefd` or pass --reliefd",
        path.display()
    );
    Ok(path)
}

/// A running `reliefd`; killed when dropped.
pub struct Server {
    pub name: String,
    pub addr: std::net::SocketAddr,
    /// Where its `/metrics` is served, when the configuration asks for it.
    pub metrics: Option<std::net::SocketAddr>,
    child: Child,
    log: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// A free local port (bound, then released for the server to take).
pub fn free_addr() -> anyhow::Result<std::net::SocketAddr> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?)
}

impl Server {
    /// Starts `reliefd <args>` with `env`, logging to `dir/<name>.log`, and waits until its
    /// health service says serving.
    pub async fn start(
        reliefd: &Path,
        name: &str,
        dir: &Path,
        addr: std::net::SocketAddr,
        args: &[&str],
        env: &[(&str, String)],
    ) -> anyhow::Result<Server> {
        let log = dir.join(format!("{name}.log"));
        let file = std::fs::File::create(&log)?;
        let mut cmd = Command::new(reliefd);
        cmd.args(args)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .kill_on_drop(true);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().with_context(|| format!("starting {name}"))?;
        let server = Server {
            name: name.to_owned(),
            addr,
            metrics: None,
            child,
            log,
        };
        server.wait_serving().await?;
        Ok(server)
    }

    /// `reliefd serve` on the built-in configuration (望城区, development keys), on a port of
    /// its own and `database_url`, logging at `log_filter`.
    pub async fn backend(
        reliefd: &Path,
        dir: &Path,
        database_url: &str,
        log_filter: &str,
    ) -> anyhow::Result<Server> {
        Self::backend_with(reliefd, dir, database_url, log_filter, &[]).await
    }

    /// [`Server::backend`] with more environment variables (settings).
    pub async fn backend_with(
        reliefd: &Path,
        dir: &Path,
        database_url: &str,
        log_filter: &str,
        extra_env: &[(&str, String)],
    ) -> anyhow::Result<Server> {
        let addr = free_addr()?;
        let mut env = vec![
            ("RELIEF_SERVER_LISTEN", addr.to_string()),
            ("RELIEF_DATABASE_URL", database_url.to_owned()),
            ("RELIEF_LOG_FILTER", log_filter.to_owned()),
        ];
        env.extend(extra_env.iter().cloned());
        Server::start(reliefd, "backend", dir, addr, &["serve"], &env).await
    }

    /// `reliefd gateway` routing `district` to `backend`; `threads` sets its runtime's
    /// worker threads (one per core when `None`).
    pub async fn gateway(
        reliefd: &Path,
        dir: &Path,
        backend: &Server,
        district: &str,
        log_filter: &str,
        threads: Option<usize>,
    ) -> anyhow::Result<Server> {
        let addr = free_addr()?;
        let config = dir.join("gateway.toml");
        std::fs::write(
            &config,
            format!(
                "[gateway]\nlisten = \"{addr}\"\n\n[[gateway.upstreams]]\nname = \"backend\"\n\
                 addresses = [\"http://{}\"]\ndistricts = [\"{district}\"]\n",
                backend.addr
            ),
        )?;
        let config = config.display().to_string();
        let mut env = vec![("RELIEF_LOG_FILTER", log_filter.to_owned())];
        if let Some(n) = threads {
            env.push(("TOKIO_WORKER_THREADS", n.to_string()));
        }
        Server::start(
            reliefd,
            "gateway",
            dir,
            addr,
            &["--config", &config, "gateway"],
            &env,
        )
        .await
    }

    async fn wait_serving(&self) -> anyhow::Result<()> {
        let started = Instant::now();
        loop {
            let ready = async {
                let channel = Channel::from_shared(format!("http://{}", self.addr))?
                    .connect()
                    .await?;
                HealthClient::new(channel)
                    .check(HealthCheckRequest {
                        service: String::new(),
                    })
                    .await?;
                anyhow::Ok(())
            };
            if ready.await.is_ok() {
                return Ok(());
            }
            if started.elapsed() > START_TIMEOUT {
                anyhow::bail!(
                    "{} did not start; its log:\n{}",
                    self.name,
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Peak resident memory so far, in MiB (Linux `VmHWM`), of the process and its
    /// children (nginx's workers) together.
    pub fn peak_rss_mib(&self) -> Option<f64> {
        let pid = self.child.id()?.to_string();
        let mut total = 0.0;
        for p in std::iter::once(pid.clone()).chain(children_of(&pid)) {
            let Ok(status) = std::fs::read_to_string(format!("/proc/{p}/status")) else {
                continue;
            };
            let kib: Option<f64> = status
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok());
            total += kib.unwrap_or(0.0);
        }
        Some(total / 1024.0)
    }

    /// CPU time used so far (user + system), in seconds, by the process and its children
    /// (nginx's workers).
    pub fn cpu_seconds(&self) -> Option<f64> {
        let pid = self.child.id()?.to_string();
        let children: f64 = children_of(&pid)
            .iter()
            .filter_map(|c| cpu_seconds_of(c))
            .sum();
        Some(cpu_seconds_of(&pid)? + children)
    }

    pub async fn channel(&self) -> anyhow::Result<Channel> {
        Ok(Channel::from_shared(format!("http://{}", self.addr))?
            .tcp_nodelay(true)
            .connect()
            .await?)
    }
}

/// CPU time (user + system) of `/proc/<pid>` so far, in seconds; `self` for this process.
pub fn cpu_seconds_of(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat(5), 12 and 13 after the name.
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / CLOCK_TICKS_PER_SEC)
}

/// The running children of `/proc/<pid>`, from each of its threads' `children` list.
fn children_of(pid: &str) -> Vec<String> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|c| c.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
        .collect()
}

/// `sysconf(_SC_CLK_TCK)` on Linux.
const CLOCK_TICKS_PER_SEC: f64 = 100.0;
