//! `relief-bench`: measurements anyone can rerun on their own machine. `report` builds a
//! district with many cases and their full history (decisions, payments, follow-ups, ledger)
//! directly in the database, starts the real server on it, and times `GetIndicators` and
//! `RenderSelfEvaluation` over gRPC on SQLite and, when a URL is given, PostgreSQL. `gateway`
//! measures the same call direct to a backend and through the gateway. `load` drives the
//! load scenarios; `hostile` replays attacks and measures what each costs.

mod gateway;
mod hostile;
mod load;
mod loadcmd;
mod procs;
mod scenarios;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use chrono::{NaiveDate, TimeZone, Utc};
use clap::{Parser, Subcommand};
use relief_domain::case::{PetitionRef, ReceivingUnit, Recipient, Seal};
use relief_domain::{Application, CategoryCode, Clock, ManualClock, Money, ResidentId, Role};
use relief_proto::v1 as pb;
use relief_proto::v1::report_service_client::ReportServiceClient;
use relief_store::entity::case;
use relief_store::entity::{decision, follow_up, ledger_entry, payment};
use sea_orm::{ConnectionTrait as _, Database, EntityTrait, Set, TransactionTrait};
use tonic::transport::Channel;

#[derive(Debug, Parser)]
#[command(name = "relief-bench", about = "Reproducible measurements of relief")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Time the yearly indicators and the rendered report over a large district.
    Report {
        /// Cases in the district's year.
        #[arg(long, default_value_t = 100_000)]
        cases: usize,
        /// Timed calls of each kind.
        #[arg(long, default_value_t = 5)]
        runs: usize,
        /// A PostgreSQL server to run on as well (a fresh database is created and dropped).
        #[arg(long, env = "RELIEF_BENCH_POSTGRES_URL")]
        postgres: Option<String>,
    },
    /// What the gateway adds: one call, direct and through the gateway, in one run.
    Gateway(gateway::GatewayArgs),
    /// A load scenario (case life, approvals, reads, report), direct and through the gateway.
    Load(loadcmd::LoadArgs),
    /// Attacks replayed one by one, with the server's peak memory and a normal call's
    /// latency during each.
    Hostile(hostile::HostileArgs),
}

const DISTRICT: &str = "430112";
const YEAR: i32 = 2022;
const STEPS: [(&str, &str, Role); 5] = [
    ("case_officer_review", "经办科室审查", Role::CaseOfficer),
    ("deputy_leader_review", "分管领导复审", Role::DeputyLeader),
    ("bureau_head_review", "主要负责人审核", Role::BureauHead),
    ("party_group_decision", "局党组研究", Role::BureauOffice),
    (
        "district_leader_approval",
        "分管区领导审批",
        Role::DistrictLeader,
    ),
];
const CATEGORIES: [&str; 3] = [
    "reasonable_without_legal_basis",
    "no_responsible_party",
    "other_hardship",
];

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Report {
            cases,
            runs,
            postgres,
        } => {
            println!("relief-bench report: {cases} cases, {runs} timed runs per call");
            let dir = tempfile::tempdir()?;
            let sqlite = format!("sqlite://{}/bench.db", dir.path().display());
            report(&sqlite, "sqlite", cases, runs).await?;
            if let Some(admin) = postgres {
                let (name, url) = fresh_postgres(&admin).await?;
                let result = report(&url, "postgres", cases, runs).await;
                drop_postgres(&admin, &name).await?;
                result?;
            }
            Ok(())
        }
        Command::Gateway(args) => gateway::gateway(args).await,
        Command::Load(args) => loadcmd::load(args).await,
        Command::Hostile(args) => hostile::hostile(args).await,
    }
}

/// Creates a fresh database on the PostgreSQL server at `admin` (a URL ending in
/// `/database`); returns its name and URL.
pub(crate) async fn fresh_postgres(admin: &str) -> anyhow::Result<(String, String)> {
    let name = format!("relief_bench_{}", uuid::Uuid::now_v7().simple());
    let conn = Database::connect(admin).await?;
    conn.execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
        .await?;
    let url = match admin.rsplit_once('/') {
        Some((base, _)) => format!("{base}/{name}"),
        None => anyhow::bail!("the PostgreSQL URL must end in /database"),
    };
    Ok((name, url))
}

/// Drops a database made by [`fresh_postgres`].
pub(crate) async fn drop_postgres(admin: &str, name: &str) -> anyhow::Result<()> {
    let conn = Database::connect(admin).await?;
    conn.execute_unprepared(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
        .await?;
    Ok(())
}

fn resident_id(i: usize) -> String {
    let first17 = format!(
        "4301221970{:02}{:02}{:03}",
        1 + i % 12,
        1 + i % 28,
        i % 1000
    );
    let check = relief_domain::resident_id::check_char(&first17).unwrap_or('0');
    format!("{first17}{check}")
}

/// Writes the year's history straight into the tables, in large batches.
async fn fill(url: &str, n: usize) -> anyhow::Result<()> {
    let db = Database::connect(url).await?;
    let base = Utc
        .with_ymd_and_hms(YEAR, 1, 3, 1, 0, 0)
        .single()
        .context("date")?;
    let chunk = 400;
    for start in (0..n).step_by(chunk) {
        let txn = db.begin().await?;
        let end = (start + chunk).min(n);
        let mut cases = Vec::new();
        let mut decisions = Vec::new();
        let mut payments = Vec::new();
        let mut follows = Vec::new();
        let mut ledger = Vec::new();
        for i in start..end {
            let id = uuid::Uuid::now_v7().to_string();
            let submitted = base + chrono::Duration::minutes((i as i64) * 3);
            let amount = 1_000_000 + (i as i64 % 40) * 100_000;
            let paid = i % 10 != 0;
            let app = Application {
                recipient: Recipient {
                    name: format!("对象{i}"),
                    resident_id: ResidentId::parse(&resident_id(i)).ok(),
                    phone: "13800000000".into(),
                    address: "望城区".into(),
                },
                basic_situation: "生活困难".into(),
                reason: "于法无据、于情有理".into(),
                category: CategoryCode::parse(CATEGORIES[i % 3]).ok(),
                requested_amount: Money::from_fen(amount)?,
                implementing_unit: "街道".into(),
                receiving_unit: ReceivingUnit {
                    name: "财政所".into(),
                    bank_name: "农商银行".into(),
                    bank_account: "6230901234561234".into(),
                },
                petition: PetitionRef {
                    number: format!("P-{i}"),
                    summary: String::new(),
                },
                seal: Seal {
                    sealed: true,
                    sealed_by: "街道".into(),
                    sealed_at: None,
                },
                attachments: vec![],
                fiscal_year: Some(YEAR),
                over_cap_justification: String::new(),
                repeat_relief_justification: String::new(),
            };
            cases.push(case::ActiveModel {
                id: Set(id.clone()),
                district_id: Set(DISTRICT.into()),
                applicant_unit_id: Set(format!("unit-{}", i % 20)),
                state: Set(if paid { "paid" } else { "approved" }.into()),
                current_step_id: Set(None),
                fiscal_year: Set(Some(YEAR)),
                category_code: Set(Some(CATEGORIES[i % 3].into())),
                recipient_name: Set(format!("对象{i}")),
                resident_id_number: Set(Some(resident_id(i))),
                requested_amount_fen: Set(amount),
                approved_amount_fen: Set(Some(amount)),
                current_step_role: Set(None),
                step_entered_at: Set(None),
                step_deadline_at: Set(None),
                petitioned_again: Set(i % 97 == 0),
                over_cap: Set(false),
                repeat_relief: Set(false),
                rules_version: Set(1),
                version: Set(8),
                application: Set(serde_json::to_string(&app)?),
                created_by: Set("bench".into()),
                created_at: Set(submitted),
                updated_at: Set(submitted),
                submitted_at: Set(Some(submitted)),
            });
            for (k, (step, name, role)) in STEPS.iter().enumerate() {
                decisions.push(decision::ActiveModel {
                    id: Set(uuid::Uuid::now_v7().to_string()),
                    district_id: Set(DISTRICT.into()),
                    case_id: Set(id.clone()),
                    step_id: Set((*step).into()),
                    step_name: Set((*name).into()),
                    decision: Set(decision::Kind::Approve),
                    actor_subject: Set(format!("{}-{k}", role.as_str())),
                    actor_name: Set(role.as_str().into()),
                    actor_role: Set(role.as_str().into()),
                    on_behalf_of: Set(None),
                    opinion: Set("同意".into()),
                    amount_before_fen: Set(amount),
                    amount_after_fen: Set(amount),
                    over_cap: Set(false),
                    over_cap_justification: Set(String::new()),
                    meeting_id: Set(None),
                    return_to_step_id: Set(None),
                    decided_at: Set(submitted + chrono::Duration::days(k as i64 + 1)),
                    fiscal_year: Set(Some(YEAR)),
                    waited_secs: Set(86_400 + (i as i64 % 7) * 3_600),
                });
            }
            ledger.push(ledger_entry::ActiveModel {
                id: sea_orm::NotSet,
                district_id: Set(DISTRICT.into()),
                fiscal_year: Set(YEAR),
                case_id: Set(Some(id.clone())),
                kind: Set("reserve".into()),
                amount_fen: Set(amount),
                actor_subject: Set("bench".into()),
                created_at: Set(submitted),
                imported: Set(false),
            });
            if paid {
                let paid_on =
                    NaiveDate::from_ymd_opt(YEAR, 1 + (i % 12) as u32, 1 + (i % 28) as u32)
                        .context("date")?;
                payments.push(payment::ActiveModel {
                    id: Set(uuid::Uuid::now_v7().to_string()),
                    district_id: Set(DISTRICT.into()),
                    case_id: Set(id.clone()),
                    fiscal_year: Set(YEAR),
                    amount_fen: Set(amount),
                    receiving_unit_name: Set("财政所".into()),
                    bank_name: Set("农商银行".into()),
                    bank_account: Set("6230901234561234".into()),
                    voucher_number: Set(format!("V-{i}")),
                    state: Set("paid".into()),
                    bank_reference: Set(Some(format!("BR-{i}"))),
                    paid_date: Set(Some(paid_on.format("%Y-%m-%d").to_string())),
                    failure_reason: Set(None),
                    secs_to_payment: Set(relief_domain::payment::secs_to_payment(
                        Some(submitted),
                        paid_on,
                    )),
                    created_by: Set("bench".into()),
                    created_at: Set(submitted),
                    updated_at: Set(submitted),
                });
                ledger.push(ledger_entry::ActiveModel {
                    id: sea_orm::NotSet,
                    district_id: Set(DISTRICT.into()),
                    fiscal_year: Set(YEAR),
                    case_id: Set(Some(id.clone())),
                    kind: Set("pay".into()),
                    amount_fen: Set(amount),
                    actor_subject: Set("bench".into()),
                    created_at: Set(submitted),
                    imported: Set(false),
                });
                for (s, days) in [90u64, 180, 365].iter().enumerate() {
                    let due = paid_on
                        .checked_add_days(chrono::Days::new(*days))
                        .context("date")?;
                    follows.push(follow_up::ActiveModel {
                        id: Set(uuid::Uuid::now_v7().to_string()),
                        district_id: Set(DISTRICT.into()),
                        case_id: Set(id.clone()),
                        sequence: Set(s as i32 + 1),
                        due_date: Set(due.format("%Y-%m-%d").to_string()),
                        done: Set(due.format("%Y").to_string() == YEAR.to_string()),
                        done_date: Set(None),
                        method: Set(None),
                        petitioned_again: Set(false),
                        notes: Set(None),
                        recorded_by: Set(None),
                        recorded_at: Set(None),
                        fiscal_year: Set(Some(YEAR)),
                    });
                }
            }
        }
        case::Entity::insert_many(cases).exec(&txn).await?;
        for part in decisions.chunks(chunk) {
            decision::Entity::insert_many(part.to_vec())
                .exec(&txn)
                .await?;
        }
        if !payments.is_empty() {
            payment::Entity::insert_many(payments).exec(&txn).await?;
        }
        for part in follows.chunks(chunk) {
            follow_up::Entity::insert_many(part.to_vec())
                .exec(&txn)
                .await?;
        }
        for part in ledger.chunks(chunk) {
            ledger_entry::Entity::insert_many(part.to_vec())
                .exec(&txn)
                .await?;
        }
        txn.commit().await?;
    }
    // What a production database's maintenance would have done by now: fresh planner
    // statistics (and, on PostgreSQL, a visibility map for index-only scans).
    match db.get_database_backend() {
        sea_orm::DbBackend::Postgres => db.execute_unprepared("VACUUM ANALYZE").await?,
        _ => db.execute_unprepared("ANALYZE").await?,
    };
    db.close().await?;
    Ok(())
}

fn summary(label: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "  {label:<24} min {:>8.1} ms   median {:>8.1} ms   max {:>8.1} ms",
        ms(samples[0]),
        ms(samples[samples.len() / 2]),
        ms(samples[samples.len() - 1])
    );
}

async fn report(url: &str, backend: &str, cases: usize, runs: usize) -> anyhow::Result<()> {
    let mut settings =
        reliefd::settings::Settings::from_toml(reliefd::settings::DEFAULT_CONFIG_TOML)?;
    settings.server.listen = "127.0.0.1:0".parse()?;
    settings.server.request_timeout_ms = 600_000;
    settings.database.url = url.to_owned();
    // The budget covers the generated year.
    if let Some(d) = settings.districts.first_mut() {
        d.rules.budgets[0].allocated_fen = 5_000_000 * cases as i64;
        d.rules.budgets[0].target_case_count = u32::try_from(cases)?;
    }
    let clock = Arc::new(ManualClock::new(
        Utc.with_ymd_and_hms(YEAR + 1, 3, 1, 1, 0, 0)
            .single()
            .context("date")?,
    ));
    let started = Instant::now();
    let app =
        reliefd::Application::build_with_clock(settings.clone(), clock as Arc<dyn Clock>).await?;
    fill(url, cases).await?;
    println!(
        "{backend}: built {cases} cases with their history in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let addr = app.local_addr();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async move {
        let _ = stopped.await;
    }));
    let channel = Channel::from_shared(format!("http://{addr}"))?
        .connect()
        .await?;
    let token = gateway::dev_token(DISTRICT, Role::Auditor, None, "bench-auditor")?;
    let mut client = ReportServiceClient::new(channel).max_decoding_message_size(64 * 1024 * 1024);
    fn call<T>(msg: T, token: &str) -> tonic::Request<T> {
        let mut r = tonic::Request::new(msg);
        if let Ok(v) = format!("Bearer {token}").parse() {
            r.metadata_mut().insert("authorization", v);
        }
        r
    }
    let mut ind = Vec::new();
    let mut rep = Vec::new();
    let mut paid = 0;
    for _ in 0..runs {
        let t = Instant::now();
        let r = client
            .get_indicators(call(pb::GetIndicatorsRequest { fiscal_year: YEAR }, &token))
            .await?
            .into_inner();
        ind.push(t.elapsed());
        paid = r.indicators.map_or(0, |i| i.achieved_case_count);
        let t = Instant::now();
        let r = client
            .render_self_evaluation(call(
                pb::RenderSelfEvaluationRequest { fiscal_year: YEAR },
                &token,
            ))
            .await?
            .into_inner();
        rep.push(t.elapsed());
        anyhow::ensure!(r.html.contains("<svg"), "the report rendered");
    }
    println!("{backend}: {paid} paid cases in the indicators");
    summary("GetIndicators", ind);
    summary("RenderSelfEvaluation", rep);
    let _ = stop.send(());
    let _ = server.await;
    Ok(())
}
