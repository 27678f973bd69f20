//! Crash safety of the real `reliefd` binary: approvals and payments are fired at it, it is
//! killed with SIGKILL in the middle, restarted on the same database, and then the ledger
//! must verify, the audit chain must be intact, and every call that had been answered with
//! success must still be there. Retrying every call with its original request id must then
//! finish the work without paying anything twice. On SQLite always, and on PostgreSQL when
//! `RELIEF_TEST_POSTGRES_URL` is set.
//!
//! The in-process harness (`relief-tests`) cannot do this: a process killed mid-write is the
//! point, so the server here is the binary Cargo built, run as a child process.

// SIGKILL and the exit status that shows it are Unix notions.
#![cfg(unix)]
#![allow(clippy::unwrap_used, clippy::expect_used)]
// Wire messages are built with `..Default::default()` so a field added to the contract does
// not break the build.
#![allow(clippy::needless_update)]

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::os::unix::process::ExitStatusExt as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use relief_auth::{Minter, Scope, TokenSpec};
use relief_domain::{Subject, UnitId};
use relief_proto::v1 as pb;
use relief_proto::v1::approval_service_client::ApprovalServiceClient;
use relief_proto::v1::audit_service_client::AuditServiceClient;
use relief_proto::v1::case_service_client::CaseServiceClient;
use relief_proto::v1::disbursement_service_client::DisbursementServiceClient;
use relief_proto::v1::ledger_service_client::LedgerServiceClient;
use relief_tests::{
    AUDIENCE, Backend, ED25519_KID, ISSUER, JWKS_JSON, PgDatabase, Role, TEST_ED25519_PEM,
    WANGCHENG, backend_tests, create_pg_database, drop_pg_database, postgres_url, request_id,
    valid_application, with_bearer,
};
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;
use tonic::transport::Channel;
use tonic::{Code, Status};

/// The district of every case; declared by the test's configuration file.
const DISTRICT: &str = WANGCHENG;
/// The only step of the district's chain, so one decision approves a case.
const STEP: &str = "approve";
const FISCAL_YEAR: i32 = 2022;
/// Large enough for every case: the crash, not the budget, is what stops approvals here.
const ALLOCATED_FEN: i64 = 1_000_000_000;
/// What `valid_application()` requests, and so what every case is approved for.
const CASE_AMOUNT_FEN: i64 = 2_000_000;
/// A past date inside the fiscal year, as `ConfirmPayment` requires.
const PAID_DATE: &str = "2022-12-20";

const CASE_COUNT: usize = 60;
/// DecideCase, CreatePayment, ConfirmPayment.
const CALLS_PER_CASE: usize = 3;
/// Cases driven at once. Fewer than the cases, so that at the kill some cases are paid, some
/// are half way, and some are untouched.
const WORKERS: usize = 12;
/// The kill lands once a third of the load's calls have been answered with success.
const KILL_AFTER_SUCCESSES: usize = CASE_COUNT * CALLS_PER_CASE / 3;

/// How long a start (migrations included) may take before the server answers.
const START_TIMEOUT: Duration = Duration::from_secs(15);
/// Every single call is cut off after this long.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the load may run before reaching the kill point.
const LOAD_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the killed process and the load's tasks may take to wind down.
const WIND_DOWN_TIMEOUT: Duration = Duration::from_secs(15);

/// The configuration file the binary runs with: the test's port and database, the test
/// keys, and one district with a one-step chain.
fn config_toml(addr: SocketAddr, database_url: &str) -> String {
    format!(
        r#"
[server]
listen = "{addr}"

[database]
url = "{database_url}"
max_connections = 16

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

[[districts]]
id = "{DISTRICT}"
name = "望城区"

[districts.rules]
case_cap_fen = 5000000
repeat_relief_wait_days = 365
follow_up_after_days = [90, 180, 365]

[[districts.rules.budgets]]
fiscal_year = {FISCAL_YEAR}
allocated_fen = {ALLOCATED_FEN}
target_case_count = {CASE_COUNT}

[[districts.rules.categories]]
code = "reasonable_without_legal_basis"
name = "于法无据、于情有理"
description = "诉求于法无据但于情有理，通过救助能够息访罢诉"

[[districts.rules.steps]]
id = "{STEP}"
name = "分管区领导审批"
role = "district_leader"
deadline_days = 10
"#
    )
}

/// A port nobody listens on right now. The listener is dropped before the server binds it;
/// the window in between is the price of giving the binary a fixed address.
fn free_addr() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind port 0");
    listener.local_addr().expect("local addr")
}

/// The last lines of a file, for failure messages.
fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// The temp dir, the database and the running server. Dropping it kills the server (so a
/// failed test leaves none behind), shows the server's last log lines when the test is
/// failing, and drops the PostgreSQL database.
struct Fixture {
    dir: tempfile::TempDir,
    config: PathBuf,
    addr: SocketAddr,
    backend: Backend,
    server: Option<Child>,
    starts: u32,
    pg: Option<PgDatabase>,
    tokens: Tokens,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if let Some(mut child) = self.server.take() {
            let _ = child.start_kill();
        }
        if std::thread::panicking() {
            for start in 1..=self.starts {
                let log = self.log_path(start);
                eprintln!(
                    "--- last lines of reliefd start {start} on {:?} ({}) ---\n{}",
                    self.backend,
                    log.display(),
                    tail(&log, 40)
                );
            }
        }
        if let Some(pg) = self.pg.take() {
            drop_pg_database(pg);
        }
    }
}

/// The bearer tokens of the four people involved.
#[derive(Clone)]
struct Tokens {
    applicant: String,
    leader: String,
    finance: String,
    auditor: String,
}

fn mint_tokens() -> Tokens {
    let minter = Minter::from_ed25519_pem(TEST_ED25519_PEM, ED25519_KID, ISSUER, AUDIENCE)
        .expect("test signing key");
    let mint = |role: Role, unit: Option<&str>, subject: &str| {
        minter
            .mint(&TokenSpec {
                subject: Subject::parse(subject).expect("valid subject"),
                name: subject.to_owned(),
                scope: Scope::parse(DISTRICT).expect("valid scope"),
                roles: vec![role],
                unit: unit.map(|u| UnitId::parse(u).expect("valid unit")),
                ttl_secs: 3600,
                not_before: None,
            })
            .expect("mintable token")
    };
    Tokens {
        applicant: mint(
            Role::ApplicantUnit,
            Some("gaotangling"),
            "gaotangling-clerk",
        ),
        leader: mint(Role::DistrictLeader, None, "leader-430112"),
        finance: mint(Role::Finance, None, "finance-430112"),
        auditor: mint(Role::Auditor, None, "auditor-430112"),
    }
}

impl Fixture {
    async fn new(backend: Backend) -> Fixture {
        let dir = tempfile::tempdir().expect("temp dir");
        let (database_url, pg) = match backend {
            Backend::Sqlite => (format!("sqlite://{}/relief.db", dir.path().display()), None),
            Backend::Postgres => {
                let admin_url = postgres_url().expect("RELIEF_TEST_POSTGRES_URL is set");
                let (pg, url) = create_pg_database(&admin_url).await;
                (url, Some(pg))
            }
        };
        let addr = free_addr();
        let config = dir.path().join("relief.toml");
        std::fs::write(&config, config_toml(addr, &database_url)).expect("write config");
        Fixture {
            dir,
            config,
            addr,
            backend,
            server: None,
            starts: 0,
            pg,
            tokens: mint_tokens(),
        }
    }

    fn log_path(&self, start: u32) -> PathBuf {
        self.dir.path().join(format!("reliefd-{start}.log"))
    }

    /// Starts `reliefd --config <file> serve` and waits until it answers a real call.
    async fn start(&mut self) -> Api {
        assert!(self.server.is_none(), "one server at a time");
        self.starts += 1;
        let log_path = self.log_path(self.starts);
        let log = std::fs::File::create(&log_path).expect("server log file");
        let mut command = Command::new(env!("CARGO_BIN_EXE_reliefd"));
        command
            .arg("--config")
            .arg(&self.config)
            .arg("serve")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .kill_on_drop(true)
            .env_remove("RUST_LOG");
        // The configuration file is the whole configuration: no `RELIEF_*` variable of the
        // developer's shell (a database URL, say) may redirect the server.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("RELIEF_") {
                command.env_remove(&key);
            }
        }
        let mut child = command.spawn().expect("reliefd starts");
        let deadline = Instant::now() + START_TIMEOUT;
        let channel = loop {
            if let Some(status) = child.try_wait().expect("child status") {
                panic!(
                    "reliefd (start {}) exited with {status} before serving:\n{}",
                    self.starts,
                    tail(&log_path, 40)
                );
            }
            if let Some(channel) = self.answers().await {
                break channel;
            }
            if Instant::now() > deadline {
                let _ = child.start_kill();
                panic!(
                    "reliefd (start {}) did not answer on {} within {START_TIMEOUT:?}:\n{}",
                    self.starts,
                    self.addr,
                    tail(&log_path, 40)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        self.server = Some(child);
        Api {
            channel,
            tokens: self.tokens.clone(),
        }
    }

    /// A channel to the server when it answers `GetBudget`; `None` while it does not yet.
    async fn answers(&self) -> Option<Channel> {
        let channel = Channel::from_shared(format!("http://{}", self.addr))
            .expect("valid uri")
            .connect_timeout(Duration::from_millis(500))
            .timeout(CALL_TIMEOUT)
            .connect()
            .await
            .ok()?;
        let request = with_bearer(
            pb::GetBudgetRequest {
                fiscal_year: FISCAL_YEAR,
                ..Default::default()
            },
            &self.tokens.auditor,
        );
        let mut client = LedgerServiceClient::new(channel.clone());
        let probe = client.get_budget(request);
        match tokio::time::timeout(Duration::from_secs(2), probe).await {
            Ok(Ok(_)) => Some(channel),
            _ => None,
        }
    }

    /// SIGKILL: no shutdown hook, no grace period, calls cut off mid-transaction.
    async fn kill(&mut self) {
        let mut child = self.server.take().expect("a running server");
        child.start_kill().expect("SIGKILL sent");
        let status = tokio::time::timeout(WIND_DOWN_TIMEOUT, child.wait())
            .await
            .expect("the killed server exits")
            .expect("exit status");
        assert_eq!(
            status.signal(),
            Some(9),
            "the server died of SIGKILL, not of anything else: {status}"
        );
    }
}

/// Clients of the running server, each call under the token of the person who makes it.
#[derive(Clone)]
struct Api {
    channel: Channel,
    tokens: Tokens,
}

/// Bounds a call: a server that hangs fails the call, never the test run.
async fn bounded<T>(
    call: impl Future<Output = Result<tonic::Response<T>, Status>>,
) -> Result<T, Status> {
    match tokio::time::timeout(CALL_TIMEOUT, call).await {
        Ok(result) => result.map(tonic::Response::into_inner),
        Err(_) => Err(Status::deadline_exceeded("client-side timeout")),
    }
}

impl Api {
    async fn create_case(&self, req: pb::CreateCaseRequest) -> Result<pb::Case, Status> {
        let mut client = CaseServiceClient::new(self.channel.clone());
        let call = client.create_case(with_bearer(req, &self.tokens.applicant));
        Ok(bounded(call)
            .await?
            .case
            .expect("the response has the case"))
    }

    async fn submit_case(&self, req: pb::SubmitCaseRequest) -> Result<pb::Case, Status> {
        let mut client = CaseServiceClient::new(self.channel.clone());
        let call = client.submit_case(with_bearer(req, &self.tokens.applicant));
        Ok(bounded(call)
            .await?
            .case
            .expect("the response has the case"))
    }

    async fn get_case(&self, case_id: &str) -> pb::Case {
        let req = pb::GetCaseRequest {
            case_id: case_id.to_owned(),
            ..Default::default()
        };
        let mut client = CaseServiceClient::new(self.channel.clone());
        let call = client.get_case(with_bearer(req, &self.tokens.auditor));
        bounded(call)
            .await
            .unwrap_or_else(|s| panic!("GetCase {case_id}: {s:?}"))
            .case
            .expect("the response has the case")
    }

    async fn decide(&self, req: pb::DecideCaseRequest) -> Result<pb::DecideCaseResponse, Status> {
        let mut client = ApprovalServiceClient::new(self.channel.clone());
        let call = client.decide_case(with_bearer(req, &self.tokens.leader));
        bounded(call).await
    }

    async fn create_payment(
        &self,
        req: pb::CreatePaymentRequest,
    ) -> Result<pb::CreatePaymentResponse, Status> {
        let mut client = DisbursementServiceClient::new(self.channel.clone());
        let call = client.create_payment(with_bearer(req, &self.tokens.finance));
        bounded(call).await
    }

    async fn confirm_payment(
        &self,
        req: pb::ConfirmPaymentRequest,
    ) -> Result<pb::ConfirmPaymentResponse, Status> {
        let mut client = DisbursementServiceClient::new(self.channel.clone());
        let call = client.confirm_payment(with_bearer(req, &self.tokens.finance));
        bounded(call).await
    }

    async fn get_payment(&self, payment_id: &str) -> Result<pb::Payment, Status> {
        let req = pb::GetPaymentRequest {
            payment_id: payment_id.to_owned(),
            ..Default::default()
        };
        let mut client = DisbursementServiceClient::new(self.channel.clone());
        let call = client.get_payment(with_bearer(req, &self.tokens.finance));
        Ok(bounded(call)
            .await?
            .payment
            .expect("the response has the payment"))
    }

    async fn payments_of(&self, case_id: &str) -> Vec<pb::Payment> {
        let req = pb::ListPaymentsRequest {
            case_id: case_id.to_owned(),
            page_size: 100,
            ..Default::default()
        };
        let mut client = DisbursementServiceClient::new(self.channel.clone());
        let call = client.list_payments(with_bearer(req, &self.tokens.finance));
        let page = bounded(call)
            .await
            .unwrap_or_else(|s| panic!("ListPayments of {case_id}: {s:?}"));
        assert!(page.next_page_token.is_empty(), "one page of payments");
        page.payments
    }

    async fn budget(&self) -> pb::BudgetBalance {
        let req = pb::GetBudgetRequest {
            fiscal_year: FISCAL_YEAR,
            ..Default::default()
        };
        let mut client = LedgerServiceClient::new(self.channel.clone());
        let call = client.get_budget(with_bearer(req, &self.tokens.auditor));
        bounded(call)
            .await
            .unwrap_or_else(|s| panic!("GetBudget: {s:?}"))
            .balance
            .expect("the response has the balance")
    }

    async fn verify_ledger(&self) -> pb::VerifyLedgerResponse {
        let req = pb::VerifyLedgerRequest {
            fiscal_year: FISCAL_YEAR,
            ..Default::default()
        };
        let mut client = LedgerServiceClient::new(self.channel.clone());
        let call = client.verify_ledger(with_bearer(req, &self.tokens.auditor));
        bounded(call)
            .await
            .unwrap_or_else(|s| panic!("VerifyLedger: {s:?}"))
    }

    async fn verify_audit_chain(&self) -> pb::VerifyAuditChainResponse {
        let req = pb::VerifyAuditChainRequest {
            district_id: DISTRICT.to_owned(),
            ..Default::default()
        };
        let mut client = AuditServiceClient::new(self.channel.clone());
        let call = client.verify_audit_chain(with_bearer(req, &self.tokens.auditor));
        bounded(call)
            .await
            .unwrap_or_else(|s| panic!("VerifyAuditChain: {s:?}"))
    }
}

/// The requests of one case, fixed before the load so that a retry sends exactly the same
/// bytes under the same request ids.
#[derive(Debug, Clone)]
struct Plan {
    case_id: String,
    decide: pb::DecideCaseRequest,
    create: pb::CreatePaymentRequest,
    confirm_request_id: String,
    bank_reference: String,
}

impl Plan {
    fn new(case_id: String, index: usize) -> Plan {
        Plan {
            decide: pb::DecideCaseRequest {
                request_id: request_id(),
                case_id: case_id.clone(),
                step_id: STEP.to_owned(),
                decision: pb::Decision::Approve as i32,
                opinion: "同意".to_owned(),
                ..Default::default()
            },
            create: pb::CreatePaymentRequest {
                request_id: request_id(),
                case_id: case_id.clone(),
                voucher_number: format!("记-2022-{index:04}"),
                ..Default::default()
            },
            confirm_request_id: request_id(),
            bank_reference: format!("BANK-2022-{index:04}"),
            case_id,
        }
    }

    /// The payment id comes from CreatePayment's answer; under the same request id that is
    /// always the same payment.
    fn confirm(&self, payment_id: &str) -> pb::ConfirmPaymentRequest {
        pb::ConfirmPaymentRequest {
            request_id: self.confirm_request_id.clone(),
            payment_id: payment_id.to_owned(),
            bank_reference: self.bank_reference.clone(),
            paid_date: PAID_DATE.to_owned(),
            ..Default::default()
        }
    }
}

/// What the server answered with success for one case before the crash, and the first call
/// that failed.
#[derive(Debug, Default)]
struct Answers {
    decided: Option<pb::DecideCaseResponse>,
    created: Option<pb::CreatePaymentResponse>,
    confirmed: Option<pb::ConfirmPaymentResponse>,
    failed: Option<(&'static str, Code, String)>,
}

/// The load's shared counters and the kill flag.
#[derive(Default)]
struct Load {
    next_case: AtomicUsize,
    successes: AtomicUsize,
    in_flight: AtomicUsize,
    killed: AtomicBool,
}

impl Load {
    /// Makes one call of the load, counting it; once the server is known dead, sends nothing.
    async fn call<T>(&self, call: impl Future<Output = Result<T, Status>>) -> Result<T, Status> {
        if self.killed.load(Ordering::SeqCst) {
            return Err(Status::cancelled("not sent: the server was killed"));
        }
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        let result = call.await;
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        if result.is_ok() {
            self.successes.fetch_add(1, Ordering::SeqCst);
        }
        result
    }
}

/// Approves, pays and confirms one case, stopping at the first failure.
async fn drive(api: &Api, plan: &Plan, load: &Load) -> Answers {
    let mut answers = Answers::default();
    let fail = |call: &'static str, s: Status| Some((call, s.code(), s.message().to_owned()));
    match load.call(api.decide(plan.decide.clone())).await {
        Ok(r) => answers.decided = Some(r),
        Err(s) => {
            answers.failed = fail("DecideCase", s);
            return answers;
        }
    }
    let payment_id = match load.call(api.create_payment(plan.create.clone())).await {
        Ok(r) => {
            let id = r.payment.as_ref().expect("payment").payment_id.clone();
            answers.created = Some(r);
            id
        }
        Err(s) => {
            answers.failed = fail("CreatePayment", s);
            return answers;
        }
    };
    match load
        .call(api.confirm_payment(plan.confirm(&payment_id)))
        .await
    {
        Ok(r) => answers.confirmed = Some(r),
        Err(s) => answers.failed = fail("ConfirmPayment", s),
    }
    answers
}

/// Creates and submits the cases, a few at a time.
async fn submitted_cases(api: &Api) -> Vec<String> {
    let mut tasks = Vec::new();
    for _ in 0..WORKERS {
        let api = api.clone();
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for _ in 0..CASE_COUNT / WORKERS {
                let draft = api
                    .create_case(pb::CreateCaseRequest {
                        request_id: request_id(),
                        application: Some(valid_application()),
                        ..Default::default()
                    })
                    .await
                    .expect("CreateCase succeeds");
                let case = api
                    .submit_case(pb::SubmitCaseRequest {
                        request_id: request_id(),
                        case_id: draft.case_id.clone(),
                        ..Default::default()
                    })
                    .await
                    .expect("SubmitCase succeeds");
                assert_eq!(case.current_step_id, STEP);
                ids.push(case.case_id);
            }
            ids
        }));
    }
    let mut ids = Vec::new();
    for task in tasks {
        ids.extend(task.await.expect("setup task"));
    }
    assert_eq!(ids.len(), CASE_COUNT);
    ids
}

fn case_state(case: &pb::Case) -> pb::CaseState {
    pb::CaseState::try_from(case.state).expect("a known case state")
}

fn payment_state(payment: &pb::Payment) -> pb::PaymentState {
    pb::PaymentState::try_from(payment.state).expect("a known payment state")
}

/// How many cases are in each state.
#[derive(Debug, Default, PartialEq, Eq)]
struct StateCounts {
    in_review: usize,
    approved: usize,
    paid: usize,
    /// Cases further along than their answers say: a call the kill cut off after its commit.
    ahead_of_answers: usize,
}

/// Everything that must hold after the restart, before anything is retried: the books
/// verify, the chain is intact, every answered success is still there, and the balances are
/// exactly what the cases' states say.
async fn check_after_crash(api: &Api, plans: &[Plan], answers: &[Answers]) -> StateCounts {
    let ledger = api.verify_ledger().await;
    assert!(
        ledger.consistent && ledger.problems.is_empty(),
        "VerifyLedger after the crash: consistent={}, problems={:#?}",
        ledger.consistent,
        ledger.problems
    );
    assert_eq!(ledger.cases_checked, CASE_COUNT as i32, "cases checked");

    let mut counts = StateCounts::default();
    let (mut reserved_fen, mut paid_fen) = (0, 0);
    for (plan, answer) in plans.iter().zip(answers) {
        let id = &plan.case_id;
        let case = api.get_case(id).await;
        let state = case_state(&case);
        let payments = api.payments_of(id).await;
        let live: Vec<&pb::Payment> = payments
            .iter()
            .filter(|p| payment_state(p) != pb::PaymentState::Failed)
            .collect();
        assert!(
            live.len() <= 1,
            "case {id} has {} live payments",
            live.len()
        );
        match state {
            pb::CaseState::InReview => {
                counts.in_review += 1;
                assert!(payments.is_empty(), "unapproved case {id} has a payment");
            }
            pb::CaseState::Approved => {
                counts.approved += 1;
                reserved_fen += case.approved_amount_fen;
                assert!(
                    live.iter()
                        .all(|p| payment_state(p) == pb::PaymentState::Pending),
                    "approved case {id} has a paid payment: {live:?}"
                );
            }
            pb::CaseState::Paid => {
                counts.paid += 1;
                paid_fen += case.approved_amount_fen;
                assert_eq!(live.len(), 1, "paid case {id} has one live payment");
                assert_eq!(payment_state(live[0]), pb::PaymentState::Paid);
                assert_eq!(live[0].amount_fen, case.approved_amount_fen);
            }
            other => panic!("case {id} is {other:?} after the crash"),
        }
        let answered_steps = usize::from(answer.decided.is_some())
            + usize::from(answer.created.is_some())
            + usize::from(answer.confirmed.is_some());
        let stored_steps = match state {
            pb::CaseState::Paid => 3,
            _ => usize::from(state == pb::CaseState::Approved) + live.len(),
        };
        if stored_steps > answered_steps {
            counts.ahead_of_answers += 1;
        }
        if let Some(decided) = &answer.decided {
            let at_decision = decided.case.as_ref().expect("case");
            assert!(
                matches!(state, pb::CaseState::Approved | pb::CaseState::Paid),
                "case {id} was answered approved before the crash but is {state:?} after it"
            );
            assert_eq!(case.approved_amount_fen, at_decision.approved_amount_fen);
        }
        if let Some(created) = &answer.created {
            let before = created.payment.as_ref().expect("payment");
            let after = api
                .get_payment(&before.payment_id)
                .await
                .unwrap_or_else(|s| {
                    panic!(
                        "payment {} of case {id} was answered created before the crash but \
                     GetPayment says {s:?}",
                        before.payment_id
                    )
                });
            assert_eq!(after.case_id, *id);
            assert_eq!(after.amount_fen, before.amount_fen);
            assert_eq!(after.voucher_number, before.voucher_number);
            assert!(
                matches!(
                    payment_state(&after),
                    pb::PaymentState::Pending | pb::PaymentState::Paid
                ),
                "payment {} is {:?}",
                after.payment_id,
                payment_state(&after)
            );
        }
        if let Some(confirmed) = &answer.confirmed {
            let before = confirmed.payment.as_ref().expect("payment");
            let after = api
                .get_payment(&before.payment_id)
                .await
                .unwrap_or_else(|s| {
                    panic!(
                        "payment {} of case {id} was answered confirmed before the crash but \
                     GetPayment says {s:?}",
                        before.payment_id
                    )
                });
            assert_eq!(payment_state(&after), pb::PaymentState::Paid);
            assert_eq!(after.bank_reference, plan.bank_reference);
            assert_eq!(after.paid_date, PAID_DATE);
            assert_eq!(
                state,
                pb::CaseState::Paid,
                "case {id} was answered paid before the crash"
            );
        }
    }

    let balance = api.budget().await;
    assert_eq!(balance.allocated_fen, ALLOCATED_FEN, "allocated");
    assert_eq!(
        balance.reserved_fen, reserved_fen,
        "reserved = approved cases"
    );
    assert_eq!(balance.paid_fen, paid_fen, "paid = paid cases");
    assert_eq!(
        balance.available_fen,
        ALLOCATED_FEN - reserved_fen - paid_fen,
        "available"
    );
    assert_eq!(
        ledger.balance,
        Some(balance),
        "VerifyLedger and GetBudget agree"
    );

    let chain = api.verify_audit_chain().await;
    assert!(
        chain.intact,
        "audit chain after the crash breaks at seq {}: {}",
        chain.first_broken_seq, chain.reason
    );
    counts
}

/// The answers of one full pass over a case: approve, pay, confirm.
#[derive(Debug, Clone, PartialEq)]
struct Pass {
    decided: pb::DecideCaseResponse,
    created: pb::CreatePaymentResponse,
    confirmed: pb::ConfirmPaymentResponse,
}

/// Sends every case's three calls again under their original request ids; each must
/// succeed. Runs a few cases at a time.
async fn retry_all(api: &Api, plans: &[Plan]) -> Vec<Pass> {
    let mut passes = Vec::with_capacity(plans.len());
    for chunk in plans.chunks(WORKERS) {
        let tasks: Vec<JoinHandle<Pass>> = chunk
            .iter()
            .cloned()
            .map(|plan| {
                let api = api.clone();
                tokio::spawn(async move {
                    let id = &plan.case_id;
                    let decided = api
                        .decide(plan.decide.clone())
                        .await
                        .unwrap_or_else(|s| panic!("retried DecideCase of {id}: {s:?}"));
                    let created = api
                        .create_payment(plan.create.clone())
                        .await
                        .unwrap_or_else(|s| panic!("retried CreatePayment of {id}: {s:?}"));
                    let payment_id = created
                        .payment
                        .as_ref()
                        .expect("payment")
                        .payment_id
                        .clone();
                    let confirmed = api
                        .confirm_payment(plan.confirm(&payment_id))
                        .await
                        .unwrap_or_else(|s| panic!("retried ConfirmPayment of {id}: {s:?}"));
                    Pass {
                        decided,
                        created,
                        confirmed,
                    }
                })
            })
            .collect();
        for task in tasks {
            passes.push(task.await.expect("retry task"));
        }
    }
    passes
}

/// After the retries every case is paid exactly once, and the books and the chain still hold.
async fn check_all_paid(api: &Api, plans: &[Plan]) -> pb::VerifyAuditChainResponse {
    for plan in plans {
        let id = &plan.case_id;
        let case = api.get_case(id).await;
        assert_eq!(case_state(&case), pb::CaseState::Paid, "case {id}");
        let payments = api.payments_of(id).await;
        assert_eq!(
            payments.len(),
            1,
            "case {id} has exactly one payment: {payments:?}"
        );
        assert_eq!(payment_state(&payments[0]), pb::PaymentState::Paid);
        assert_eq!(payments[0].amount_fen, CASE_AMOUNT_FEN);
    }
    let ledger = api.verify_ledger().await;
    assert!(
        ledger.consistent && ledger.problems.is_empty(),
        "VerifyLedger after the retries: {:#?}",
        ledger.problems
    );
    let total_fen = CASE_AMOUNT_FEN * CASE_COUNT as i64;
    let balance = api.budget().await;
    assert_eq!(balance.reserved_fen, 0, "nothing left reserved");
    assert_eq!(balance.paid_fen, total_fen, "every case paid once");
    assert_eq!(balance.available_fen, ALLOCATED_FEN - total_fen);
    let chain = api.verify_audit_chain().await;
    assert!(
        chain.intact,
        "audit chain after the retries breaks at seq {}: {}",
        chain.first_broken_seq, chain.reason
    );
    chain
}

async fn sigkill_mid_load_loses_no_answered_call(backend: Backend) {
    let test_start = Instant::now();
    let mut fixture = Fixture::new(backend).await;
    let api = fixture.start().await;
    let first_start = test_start.elapsed();

    let setup_start = Instant::now();
    let case_ids = submitted_cases(&api).await;
    let plans: Arc<Vec<Plan>> = Arc::new(
        case_ids
            .into_iter()
            .enumerate()
            .map(|(i, id)| Plan::new(id, i))
            .collect(),
    );
    let setup = setup_start.elapsed();

    // The load: workers take the next case and drive it through approve, pay, confirm.
    let load = Arc::new(Load::default());
    let load_start = Instant::now();
    let workers: Vec<JoinHandle<Vec<(usize, Answers)>>> = (0..WORKERS)
        .map(|_| {
            let (api, plans, load) = (api.clone(), plans.clone(), load.clone());
            tokio::spawn(async move {
                let mut out = Vec::new();
                loop {
                    if load.killed.load(Ordering::SeqCst) {
                        return out;
                    }
                    let i = load.next_case.fetch_add(1, Ordering::SeqCst);
                    let Some(plan) = plans.get(i) else {
                        return out;
                    };
                    out.push((i, drive(&api, plan, &load).await));
                }
            })
        })
        .collect();
    loop {
        if load.successes.load(Ordering::SeqCst) >= KILL_AFTER_SUCCESSES {
            break;
        }
        assert!(
            !workers.iter().all(JoinHandle::is_finished),
            "the load ended before the kill point: {} successes",
            load.successes.load(Ordering::SeqCst)
        );
        assert!(
            load_start.elapsed() < LOAD_TIMEOUT,
            "the load did not reach {KILL_AFTER_SUCCESSES} successes within {LOAD_TIMEOUT:?}"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let in_flight_at_kill = load.in_flight.load(Ordering::SeqCst);
    let successes_at_kill = load.successes.load(Ordering::SeqCst);
    let until_kill = load_start.elapsed();
    fixture.kill().await;
    load.killed.store(true, Ordering::SeqCst);
    drop(api);

    let mut answers: Vec<Answers> = (0..CASE_COUNT).map(|_| Answers::default()).collect();
    for worker in workers {
        let out = tokio::time::timeout(WIND_DOWN_TIMEOUT, worker)
            .await
            .expect("the load winds down after the kill")
            .expect("load task");
        for (i, a) in out {
            answers[i] = a;
        }
    }
    let decided = answers.iter().filter(|a| a.decided.is_some()).count();
    let created = answers.iter().filter(|a| a.created.is_some()).count();
    let confirmed = answers.iter().filter(|a| a.confirmed.is_some()).count();
    let answered = decided + created + confirmed;
    assert_eq!(
        answered,
        load.successes.load(Ordering::SeqCst),
        "every success is recorded"
    );
    assert!(
        answered < CASE_COUNT * CALLS_PER_CASE,
        "the kill landed in the middle of the load"
    );
    // How the calls cut short by the kill failed, for the report: "call: code: message" → count.
    let mut failures: BTreeMap<String, usize> = BTreeMap::new();
    for (call, code, message) in answers.iter().filter_map(|a| a.failed.as_ref()) {
        *failures
            .entry(format!("{call}: {code:?}: {message}"))
            .or_default() += 1;
    }

    // Restart on the same database and configuration.
    let restart_start = Instant::now();
    let api = fixture.start().await;
    let restart = restart_start.elapsed();

    let check_start = Instant::now();
    let counts = check_after_crash(&api, &plans, &answers).await;
    let check = check_start.elapsed();

    // Retry everything under the original request ids: answered calls replay their original
    // answer, the rest finish the work, nothing happens twice.
    let retry_start = Instant::now();
    let passes = retry_all(&api, &plans).await;
    for ((plan, answer), pass) in plans.iter().zip(&answers).zip(&passes) {
        let id = &plan.case_id;
        if let Some(original) = &answer.decided {
            assert_eq!(
                &pass.decided, original,
                "DecideCase of {id} replays its answer"
            );
        }
        if let Some(original) = &answer.created {
            assert_eq!(
                &pass.created, original,
                "CreatePayment of {id} replays its answer"
            );
        }
        if let Some(original) = &answer.confirmed {
            assert_eq!(
                &pass.confirmed, original,
                "ConfirmPayment of {id} replays its answer"
            );
        }
    }
    let chain = check_all_paid(&api, &plans).await;
    let retry = retry_start.elapsed();

    // A second full retry changes nothing: every call replays, no event is written.
    let replays = retry_all(&api, &plans).await;
    assert_eq!(replays, passes, "a second retry replays every answer");
    let chain_again = check_all_paid(&api, &plans).await;
    assert_eq!(
        chain_again.events_checked, chain.events_checked,
        "replays write no events"
    );

    println!(
        "crash ({backend:?}): first start {first_start:?}; setup of {CASE_COUNT} cases \
         {setup:?}; kill after {until_kill:?} at {successes_at_kill} successes with \
         {in_flight_at_kill} calls in flight; answered before the crash: {decided} decided, \
         {created} payments created, {confirmed} confirmed; {} calls failed at or after the kill \
         ({failures:?}); after restart ({restart:?}): {counts:?}, checked in {check:?}; \
         retries {retry:?}; {} audit events; total {:?}",
        failures.values().sum::<usize>(),
        chain.events_checked,
        test_start.elapsed()
    );
}

backend_tests!(sigkill_mid_load_loses_no_answered_call);
