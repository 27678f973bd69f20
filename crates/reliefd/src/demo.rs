//! `reliefd demo`: rebuilds Wangcheng's 2022 year (the seed report's) from scratch through the
//! real gRPC interface — 48 applications from the district's streets and townships, every
//! review step by its own person with their own signed token, two party-group meetings,
//! payments before 31 December, follow-ups — and renders the self-evaluation report. The
//! server runs in-process on a temporary SQLite database, on a clock the demo moves through
//! the year.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context as _, bail};
use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use relief_auth::{Minter, Scope, TokenSpec};
use relief_domain::{Clock, DistrictId, ManualClock, Role, Subject, UnitId};
use relief_proto::v1 as pb;
use relief_proto::v1::approval_service_client::ApprovalServiceClient;
use relief_proto::v1::case_service_client::CaseServiceClient;
use relief_proto::v1::disbursement_service_client::DisbursementServiceClient;
use relief_proto::v1::follow_up_service_client::FollowUpServiceClient;
use relief_proto::v1::report_service_client::ReportServiceClient;
use tonic::transport::Channel;

use crate::Application;
use crate::settings::{self, DEFAULT_CONFIG_TOML, Settings};

const DISTRICT: &str = "430112";
const YEAR: i32 = 2022;

/// The streets and townships (街镇) of Wangcheng that file the year's applications.
const UNITS: [(&str, &str); 8] = [
    ("gaotangling", "高塘岭街道"),
    ("bairuopu", "白箬铺镇"),
    ("wushan", "乌山街道"),
    ("yueliangdao", "月亮岛街道"),
    ("huangjinyuan", "黄金园街道"),
    ("tongguan", "铜官街道"),
    ("chating", "茶亭镇"),
    ("jinggang", "靖港镇"),
];

const CATEGORIES: [&str; 3] = [
    "reasonable_without_legal_basis",
    "no_responsible_party",
    "other_hardship",
];

/// The seed report's own words, stored as the bureau's narrative.
const NARRATIVE: [(&str, &str); 7] = [
    (
        "overview",
        "为贯彻落实习近平总书记关于信访工作“诉求合理的解决到位、诉求无理的思想教育到位、生活困难的帮扶救助到位、行为违法的依法处理”重要批示精神，根据省、市要求，我区结合实际情况，对生活困难的信访群众进行困难救助。",
    ),
    (
        "evaluation_work",
        "根据区财政局文件要求，区信访局成立了由单位财务负责人牵头的绩效评价小组，按照公平、公正的原则，实事求是地开展项目资金绩效评价：一是对相关街镇、村和信访对象递交困难救助申请资料的真实性等进行审核；二是对年度信访救助资金实施管理、产出效益、资金使用等进行综合评价。",
    ),
    (
        "output",
        "严格实行专项资金规范运作，做到信访救助资金专款专用，充分发挥了专项资金的有效性，解决部分信访群众生活困难问题。",
    ),
    (
        "effect",
        "部分信访当事人因长期信访而影响了生产、生活，家境比较困难。设立对此类信访人的困难救助，帮助其恢复对生活的信心，放弃不切实际的信访行为，回归正常生活，促进了社会的和谐稳定。",
    ),
    (
        "experience",
        "一是领导重视，信访救助资金纳入区财政常年预算。二是管理规范，每一批信访救助资金都经局党组会议研究，决策过程严谨，资金规范运作，专款专用。三是效果明显，被救助对象均没有再次上访行为。",
    ),
    (
        "problems",
        "个别信访群众的合法利益不能得到及时有效维护。信访积案的成因既有历史、政策、群众思想观念等方面的因素，也有信访机制体制不健全的原因；信访救助资金能解决信访人部分生活困难问题，但不能从根本上解决问题。",
    ),
    (
        "suggestions",
        "建议街镇和区直部门继续关心关爱信访群众生活困难的问题。",
    ),
];

/// What the demo produced.
#[derive(Debug)]
pub struct Outcome {
    pub markdown: String,
    pub html: String,
    pub grade: String,
    pub indicators: pb::Indicators,
    pub html_path: Option<PathBuf>,
}

fn at(y: i32, m: u32, d: u32, h: u32) -> DateTime<Utc> {
    // 09:00 in Beijing is 01:00 UTC; the demo keeps office hours.
    Utc.with_ymd_and_hms(y, m, d, h, 0, 0)
        .single()
        .unwrap_or_default()
}

/// A valid resident ID number for recipient `i`.
fn resident_id(i: usize) -> String {
    let first17 = format!(
        "430122{:04}{:02}{:02}{:03}",
        1950 + i % 40,
        1 + i % 12,
        1 + i % 28,
        100 + i
    );
    let check = relief_domain::resident_id::check_char(&first17).unwrap_or('0');
    format!("{first17}{check}")
}

struct Demo {
    clock: Arc<ManualClock>,
    minter: Minter,
    channel: Channel,
    seq: u64,
}

impl Demo {
    fn token(
        &self,
        subject: &str,
        name: &str,
        roles: &[Role],
        unit: Option<&str>,
    ) -> anyhow::Result<String> {
        Ok(self.minter.mint(&TokenSpec {
            subject: Subject::parse(subject)?,
            name: name.to_owned(),
            scope: Scope::District(DistrictId::parse(DISTRICT)?),
            roles: roles.to_vec(),
            unit: unit.map(UnitId::parse).transpose()?,
            ttl_secs: 3600,
            not_before: None,
        })?)
    }

    fn rid(&mut self) -> String {
        self.seq += 1;
        format!("demo-{}", self.seq)
    }

    fn set(&self, t: DateTime<Utc>) {
        self.clock.set(t);
    }
}

fn req<T>(message: T, token: &str) -> anyhow::Result<tonic::Request<T>> {
    let mut r = tonic::Request::new(message);
    r.metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse()?);
    Ok(r)
}

/// Runs the demo; writes the HTML report to `html_out` when given.
pub async fn run(html_out: Option<&Path>) -> anyhow::Result<Outcome> {
    let dir = tempfile::tempdir().context("temporary directory")?;
    let mut settings = Settings::from_toml(DEFAULT_CONFIG_TOML)?;
    settings.server.listen = "127.0.0.1:0".parse()?;
    settings.database.url = format!("sqlite://{}/demo.db", dir.path().display());
    let clock = Arc::new(ManualClock::new(at(YEAR, 1, 4, 1)));
    let app =
        Application::build_with_clock(settings.clone(), clock.clone() as Arc<dyn Clock>).await?;
    let addr = app.local_addr();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async move {
        let _ = stopped.await;
    }));
    let channel = Channel::from_shared(format!("http://{addr}"))?
        .connect()
        .await?;
    let minter = Minter::from_ed25519_pem(
        settings::DEV_SIGNING_KEY_PEM.as_bytes(),
        settings::DEV_KID,
        settings.auth.issuer.clone(),
        settings.auth.audience.clone(),
    )?;
    let mut demo = Demo {
        clock,
        minter,
        channel,
        seq: 0,
    };
    let result = year(&mut demo).await;
    let _ = stop.send(());
    let _ = server.await;
    let mut outcome = result?;
    if let Some(path) = html_out {
        std::fs::write(path, &outcome.html)
            .with_context(|| format!("writing {}", path.display()))?;
        outcome.html_path = Some(path.to_owned());
    }
    Ok(outcome)
}

async fn year(d: &mut Demo) -> anyhow::Result<Outcome> {
    let mut cases = CaseServiceClient::new(d.channel.clone());
    let mut approvals = ApprovalServiceClient::new(d.channel.clone());
    let mut pay = DisbursementServiceClient::new(d.channel.clone());
    let mut follow = FollowUpServiceClient::new(d.channel.clone());
    let mut reports = ReportServiceClient::new(d.channel.clone());
    let officer = d.token("liu-jingban", "刘经办", &[Role::CaseOfficer], None)?;
    let deputy = d.token("wang-fujuzhang", "王副局长", &[Role::DeputyLeader], None)?;
    let head = d.token("li-juzhang", "李局长", &[Role::BureauHead], None)?;
    let office = d.token("zhang-mishu", "张秘书", &[Role::BureauOffice], None)?;
    let leader = d.token("chen-fuquzhang", "陈副区长", &[Role::DistrictLeader], None)?;
    let finance = d.token("zhao-kuaiji", "赵会计", &[Role::Finance], None)?;

    // Two batches of 24, each decided at one party-group meeting.
    let batches = [
        (
            at(YEAR, 2, 7, 1),
            at(YEAR, 5, 20, 2),
            at(YEAR, 5, 26, 2),
            6u32,
        ),
        (
            at(YEAR, 7, 4, 1),
            at(YEAR, 10, 20, 2),
            at(YEAR, 10, 26, 2),
            11u32,
        ),
    ];
    let mut paid_count = 0;
    for (batch, (file_from, meeting_at, approve_at, pay_month)) in batches.iter().enumerate() {
        let mut ids = Vec::new();
        for k in 0..24 {
            let i = batch * 24 + k;
            let (unit, unit_name) = UNITS[i % UNITS.len()];
            let clerk = d.token(
                &format!("{unit}-clerk"),
                &format!("{unit_name}经办人"),
                &[Role::ApplicantUnit],
                Some(unit),
            )?;
            // 32 cases of 26,000 yuan and 16 of 28,000: 1,280,000 yuan in all.
            let amount_fen = if i % 3 == 2 { 2_800_000 } else { 2_600_000 };
            let filed = *file_from + Duration::days((k as i64) * 2);
            d.set(filed);
            let application = pb::Application {
                recipient: Some(pb::Recipient {
                    name: format!("救助对象{:02}", i + 1),
                    resident_id_number: resident_id(i),
                    phone: format!("1387310{:04}", 1000 + i),
                    address: format!("长沙市望城区{unit_name}"),
                }),
                basic_situation: "家庭生活困难，长期信访，影响生产生活".to_owned(),
                reason: "诉求于法无据但于情有理，救助后承诺息访罢诉".to_owned(),
                category_code: CATEGORIES[i % CATEGORIES.len()].to_owned(),
                requested_amount_fen: amount_fen,
                implementing_unit: unit_name.to_owned(),
                receiving_unit: Some(pb::ReceivingUnit {
                    name: format!("{unit_name}财政所"),
                    bank_name: "湖南望城农村商业银行".to_owned(),
                    bank_account: format!("62309012{:08}", 10_000 + i),
                }),
                petition: Some(pb::PetitionRef {
                    petition_number: format!("WC-{YEAR}-{:04}", i + 1),
                    summary: "反映生活困难，请求帮扶".to_owned(),
                }),
                seal: Some(pb::SealAttestation {
                    sealed: true,
                    sealed_by: unit_name.to_owned(),
                    sealed_time: None,
                }),
                fiscal_year: YEAR,
                ..Default::default()
            };
            let created = cases
                .create_case(req(
                    pb::CreateCaseRequest {
                        request_id: d.rid(),
                        application: Some(application),
                    },
                    &clerk,
                )?)
                .await?
                .into_inner()
                .case
                .context("created case")?;
            let id = created.case_id;
            cases
                .submit_case(req(
                    pb::SubmitCaseRequest {
                        request_id: d.rid(),
                        case_id: id.clone(),
                        expected_version: 0,
                    },
                    &clerk,
                )?)
                .await?;
            // Three reviews, a day or two apart.
            for (j, (token, step)) in [
                (&officer, "case_officer_review"),
                (&deputy, "deputy_leader_review"),
                (&head, "bureau_head_review"),
            ]
            .into_iter()
            .enumerate()
            {
                d.set(filed + Duration::days(1 + j as i64) + Duration::hours(2));
                let decide = pb::DecideCaseRequest {
                    request_id: d.rid(),
                    case_id: id.clone(),
                    step_id: step.to_owned(),
                    decision: pb::Decision::Approve as i32,
                    opinion: "材料齐全，情况属实，同意".to_owned(),
                    ..Default::default()
                };
                approvals.decide_case(req(decide, token)?).await?;
            }
            ids.push(id);
        }
        // The party-group meeting decides the batch.
        d.set(*meeting_at);
        let meeting = approvals
            .open_meeting(req(
                pb::OpenMeetingRequest {
                    request_id: d.rid(),
                    meeting_date: meeting_at.format("%Y-%m-%d").to_string(),
                    attendees: vec!["李局长".into(), "王副局长".into(), "党组成员".into()],
                    minutes_reference: format!("望信党组会纪要〔{YEAR}〕{}号", batch + 1),
                },
                &office,
            )?)
            .await?
            .into_inner()
            .meeting
            .context("meeting")?;
        approvals
            .add_meeting_cases(req(
                pb::AddMeetingCasesRequest {
                    request_id: d.rid(),
                    meeting_id: meeting.meeting_id.clone(),
                    case_ids: ids.clone(),
                },
                &office,
            )?)
            .await?;
        for id in &ids {
            approvals
                .record_meeting_decision(req(
                    pb::RecordMeetingDecisionRequest {
                        request_id: d.rid(),
                        meeting_id: meeting.meeting_id.clone(),
                        case_id: id.clone(),
                        decision: pb::Decision::Approve as i32,
                        opinion: "经局党组研究，同意救助".to_owned(),
                        ..Default::default()
                    },
                    &office,
                )?)
                .await?;
        }
        approvals
            .close_meeting(req(
                pb::CloseMeetingRequest {
                    request_id: d.rid(),
                    meeting_id: meeting.meeting_id.clone(),
                },
                &office,
            )?)
            .await?;
        // The district leader approves; finance pays within the month after.
        for (k, id) in ids.iter().enumerate() {
            d.set(*approve_at + Duration::hours(k as i64 % 8));
            approvals
                .decide_case(req(
                    pb::DecideCaseRequest {
                        request_id: d.rid(),
                        case_id: id.clone(),
                        step_id: "district_leader_approval".to_owned(),
                        decision: pb::Decision::Approve as i32,
                        opinion: "同意".to_owned(),
                        ..Default::default()
                    },
                    &leader,
                )?)
                .await?;
        }
        for (k, id) in ids.iter().enumerate() {
            let paid_on = NaiveDate::from_ymd_opt(YEAR, *pay_month, 1 + (k as u32 % 20))
                .context("pay date")?;
            d.set(paid_on.and_hms_opt(3, 0, 0).context("time")?.and_utc());
            let payment = pay
                .create_payment(req(
                    pb::CreatePaymentRequest {
                        request_id: d.rid(),
                        case_id: id.clone(),
                        voucher_number: format!("记{}-{:03}", pay_month, k + 1),
                        amount_fen: 0,
                    },
                    &finance,
                )?)
                .await?
                .into_inner()
                .payment
                .context("payment")?;
            pay.confirm_payment(req(
                pb::ConfirmPaymentRequest {
                    request_id: d.rid(),
                    payment_id: payment.payment_id,
                    bank_reference: format!("WCNSH{YEAR}{:02}{:04}", pay_month, paid_count + 1),
                    paid_date: paid_on.format("%Y-%m-%d").to_string(),
                },
                &finance,
            )?)
            .await?;
            paid_count += 1;
        }
    }

    // Follow-ups due within the year: visited, nobody petitioned again.
    let year_end = at(YEAR, 12, 31, 10);
    d.set(year_end);
    let due = follow
        .list_due_follow_ups(req(
            pb::ListDueFollowUpsRequest {
                due_on_or_before: format!("{YEAR}-12-31"),
                page_size: 500,
                page_token: String::new(),
            },
            &officer,
        )?)
        .await?
        .into_inner()
        .follow_ups;
    for f in due {
        follow
            .record_follow_up(req(
                pb::RecordFollowUpRequest {
                    request_id: d.rid(),
                    follow_up_id: f.follow_up_id,
                    done_date: f.due_date,
                    method: "入户回访".to_owned(),
                    petitioned_again: false,
                    notes: "生活基本稳定，未再上访".to_owned(),
                },
                &officer,
            )?)
            .await?;
    }
    for (section, text) in NARRATIVE {
        reports
            .update_report_narrative(req(
                pb::UpdateReportNarrativeRequest {
                    request_id: d.rid(),
                    fiscal_year: YEAR,
                    section: section.to_owned(),
                    text: text.to_owned(),
                },
                &head,
            )?)
            .await?;
    }
    let report = reports
        .render_self_evaluation(req(
            pb::RenderSelfEvaluationRequest { fiscal_year: YEAR },
            &head,
        )?)
        .await?
        .into_inner();
    let Some(indicators) = report.indicators else {
        bail!("the report carries no indicators");
    };
    Ok(Outcome {
        markdown: report.markdown,
        html: report.html,
        grade: report.grade,
        indicators,
        html_path: None,
    })
}
