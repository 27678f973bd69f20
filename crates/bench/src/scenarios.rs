//! What the load harness drives: real calls through the generated clients, each a whole gRPC
//! call with a real signed token, against the built-in 望城区 with its five-step chain
//! (officer, deputy, head, party-group meeting, district leader).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use relief_domain::case::{PetitionRef, ReceivingUnit, Recipient, Seal};
use relief_domain::{Application, CategoryCode, Money, ResidentId, Role};
use relief_proto::v1 as pb;
use relief_proto::v1::approval_service_client::ApprovalServiceClient;
use relief_proto::v1::case_service_client::CaseServiceClient;
use relief_proto::v1::disbursement_service_client::DisbursementServiceClient;
use relief_proto::v1::district_service_client::DistrictServiceClient;
use relief_proto::v1::report_service_client::ReportServiceClient;
use tonic::Status;
use tonic::transport::Channel;

use crate::gateway::dev_token;

pub const DISTRICT: &str = "430112";
/// Small, so that the year's budget (1,280,000 yuan) lasts for 128,000 approvals.
pub const AMOUNT_FEN: i64 = 1_000;
const YEAR: i32 = 2022;
/// The review steps before the meeting, with who decides them.
pub const REVIEWS: [(&str, Role); 3] = [
    ("case_officer_review", Role::CaseOfficer),
    ("deputy_leader_review", Role::DeputyLeader),
    ("bureau_head_review", Role::BureauHead),
];

/// Everyone a case's life needs, with their tokens.
#[derive(Clone)]
pub struct People {
    pub applicant: Arc<str>,
    pub officer: Arc<str>,
    pub deputy: Arc<str>,
    pub head: Arc<str>,
    pub office: Arc<str>,
    pub leader: Arc<str>,
    pub finance: Arc<str>,
    pub auditor: Arc<str>,
}

impl People {
    /// The people of `district`.
    pub fn of_district(district: &str) -> anyhow::Result<Self> {
        let t = |role, who: &str| -> anyhow::Result<Arc<str>> {
            Ok(dev_token(district, role, None, who)?.into())
        };
        Ok(Self {
            applicant: dev_token(district, Role::ApplicantUnit, Some("gaotangling"), "clerk")?
                .into(),
            officer: t(Role::CaseOfficer, "officer")?,
            deputy: t(Role::DeputyLeader, "deputy")?,
            head: t(Role::BureauHead, "head")?,
            office: t(Role::BureauOffice, "office")?,
            leader: t(Role::DistrictLeader, "leader")?,
            finance: t(Role::Finance, "finance")?,
            auditor: t(Role::Auditor, "auditor")?,
        })
    }

    pub fn of(&self, role: Role) -> &str {
        match role {
            Role::DeputyLeader => &self.deputy,
            Role::BureauHead => &self.head,
            _ => &self.officer,
        }
    }
}

fn call<T>(message: T, token: &str) -> Result<tonic::Request<T>, Status> {
    let mut r = tonic::Request::new(message);
    let value = format!("Bearer {token}")
        .parse()
        .map_err(|_| Status::internal("token is not a header value"))?;
    r.metadata_mut().insert("authorization", value);
    Ok(r)
}

static NEXT: AtomicU64 = AtomicU64::new(0);

fn request_id() -> String {
    format!("bench-{}", uuid::Uuid::now_v7().simple())
}

/// A valid application for a recipient no other bench case has (so no repeat-relief check
/// stops it).
fn application() -> pb::Application {
    let i = NEXT.fetch_add(1, Ordering::Relaxed) + u64::from(std::process::id()) * 1_000_000;
    let day = chrono::NaiveDate::from_ymd_opt(1940, 1, 1)
        .and_then(|d| d.checked_add_days(chrono::Days::new(i / 1000 % 25_000)))
        .unwrap_or_default();
    let first17 = format!("430112{}{:03}", day.format("%Y%m%d"), i % 1000);
    let check = relief_domain::resident_id::check_char(&first17).unwrap_or('0');
    let app = Application {
        recipient: Recipient {
            name: format!("对象{i}"),
            resident_id: ResidentId::parse(&format!("{first17}{check}")).ok(),
            phone: "13800000000".into(),
            address: "望城区".into(),
        },
        basic_situation: "生活困难".into(),
        reason: "于法无据、于情有理".into(),
        category: CategoryCode::parse("reasonable_without_legal_basis").ok(),
        requested_amount: Money::from_fen(AMOUNT_FEN).unwrap_or(Money::ZERO),
        implementing_unit: "高塘岭街道".into(),
        receiving_unit: ReceivingUnit {
            name: "高塘岭街道财政所".into(),
            bank_name: "长沙农商银行".into(),
            bank_account: "6230901234561234".into(),
        },
        petition: PetitionRef {
            number: format!("WC-{i}"),
            summary: "生活困难".into(),
        },
        seal: Seal {
            sealed: true,
            sealed_by: "高塘岭街道".into(),
            sealed_at: None,
        },
        attachments: vec![],
        fiscal_year: Some(YEAR),
        over_cap_justification: String::new(),
        repeat_relief_justification: String::new(),
    };
    relief_api::convert::application_to_pb(&app, &relief_domain::privacy::View::EVERYTHING)
}

/// Districts of Changsha besides 望城区, for runs over several districts.
const MORE_DISTRICTS: [(&str, &str); 7] = [
    ("430102", "芙蓉区"),
    ("430103", "天心区"),
    ("430104", "岳麓区"),
    ("430105", "开福区"),
    ("430111", "雨花区"),
    ("430121", "长沙县"),
    ("430181", "浏阳市"),
];

/// The most districts a run may spread over.
pub const MAX_DISTRICTS: usize = MORE_DISTRICTS.len() + 1;

/// 望城区 and `n - 1` more districts, created by a city administrator with 望城区's rules;
/// returns their ids, 望城区 first.
pub async fn districts(channel: Channel, n: usize) -> anyhow::Result<Vec<String>> {
    let mut ids = vec![DISTRICT.to_owned()];
    if n <= 1 {
        return Ok(ids);
    }
    anyhow::ensure!(n <= MAX_DISTRICTS, "at most {MAX_DISTRICTS} districts");
    let admin = dev_token("city", Role::CityAdmin, None, "city-admin")?;
    let mut client = DistrictServiceClient::new(channel);
    let rules = client
        .get_district(call(
            pb::GetDistrictRequest {
                district_id: DISTRICT.to_owned(),
            },
            &admin,
        )?)
        .await?
        .into_inner()
        .district
        .and_then(|d| d.rules)
        .ok_or_else(|| anyhow::anyhow!("望城区 has no rules"))?;
    for (id, name) in MORE_DISTRICTS.iter().take(n - 1) {
        client
            .create_district(call(
                pb::CreateDistrictRequest {
                    request_id: request_id(),
                    district_id: (*id).to_owned(),
                    name: (*name).to_owned(),
                    rules: Some(rules.clone()),
                },
                &admin,
            )?)
            .await?;
        ids.push((*id).to_owned());
    }
    Ok(ids)
}

/// The clients of one connection.
#[derive(Clone)]
pub struct Clients {
    pub cases: CaseServiceClient<Channel>,
    pub approvals: ApprovalServiceClient<Channel>,
    pub pay: DisbursementServiceClient<Channel>,
    pub reports: ReportServiceClient<Channel>,
}

impl Clients {
    pub fn new(channel: Channel) -> Self {
        Self {
            cases: CaseServiceClient::new(channel.clone()),
            approvals: ApprovalServiceClient::new(channel.clone()),
            pay: DisbursementServiceClient::new(channel.clone()),
            reports: ReportServiceClient::new(channel),
        }
    }

    /// Files and submits a case; returns its id.
    pub async fn submitted_case(&mut self, people: &People) -> Result<String, Status> {
        let case = self
            .cases
            .create_case(call(
                pb::CreateCaseRequest {
                    request_id: request_id(),
                    application: Some(application()),
                },
                &people.applicant,
            )?)
            .await?
            .into_inner()
            .case
            .ok_or_else(|| Status::internal("no case in the answer"))?;
        self.cases
            .submit_case(call(
                pb::SubmitCaseRequest {
                    request_id: request_id(),
                    case_id: case.case_id.clone(),
                    expected_version: 0,
                },
                &people.applicant,
            )?)
            .await?;
        Ok(case.case_id)
    }

    /// One approval-step transaction.
    pub async fn approve(&mut self, token: &str, case_id: &str, step: &str) -> Result<(), Status> {
        self.approvals
            .decide_case(call(
                pb::DecideCaseRequest {
                    request_id: request_id(),
                    case_id: case_id.to_owned(),
                    step_id: step.to_owned(),
                    decision: pb::Decision::Approve as i32,
                    opinion: "同意".to_owned(),
                    ..Default::default()
                },
                token,
            )?)
            .await?;
        Ok(())
    }

    /// The whole life of one case: filed, submitted, three reviews, a party-group meeting,
    /// the district leader's approval, a payment and its confirmation (13 calls).
    pub async fn case_life(&mut self, people: &People) -> Result<(), Status> {
        let id = self.submitted_case(people).await?;
        for (step, role) in REVIEWS {
            self.approve(people.of(role), &id, step).await?;
        }
        let office = &people.office;
        let meeting = self
            .approvals
            .open_meeting(call(
                pb::OpenMeetingRequest {
                    request_id: request_id(),
                    meeting_date: "2022-06-15".to_owned(),
                    attendees: vec!["局长".to_owned(), "副局长".to_owned()],
                    minutes_reference: "党组会纪要".to_owned(),
                },
                office,
            )?)
            .await?
            .into_inner()
            .meeting
            .ok_or_else(|| Status::internal("no meeting in the answer"))?;
        self.approvals
            .add_meeting_cases(call(
                pb::AddMeetingCasesRequest {
                    request_id: request_id(),
                    meeting_id: meeting.meeting_id.clone(),
                    case_ids: vec![id.clone()],
                },
                office,
            )?)
            .await?;
        self.approvals
            .record_meeting_decision(call(
                pb::RecordMeetingDecisionRequest {
                    request_id: request_id(),
                    meeting_id: meeting.meeting_id.clone(),
                    case_id: id.clone(),
                    decision: pb::Decision::Approve as i32,
                    opinion: "党组研究同意".to_owned(),
                    ..Default::default()
                },
                office,
            )?)
            .await?;
        self.approvals
            .close_meeting(call(
                pb::CloseMeetingRequest {
                    request_id: request_id(),
                    meeting_id: meeting.meeting_id,
                },
                office,
            )?)
            .await?;
        self.approve(&people.leader, &id, "district_leader_approval")
            .await?;
        let payment = self
            .pay
            .create_payment(call(
                pb::CreatePaymentRequest {
                    request_id: request_id(),
                    case_id: id.clone(),
                    voucher_number: "记-bench".to_owned(),
                    amount_fen: 0,
                },
                &people.finance,
            )?)
            .await?
            .into_inner()
            .payment
            .ok_or_else(|| Status::internal("no payment in the answer"))?;
        self.pay
            .confirm_payment(call(
                pb::ConfirmPaymentRequest {
                    request_id: request_id(),
                    payment_id: payment.payment_id,
                    bank_reference: "BR-bench".to_owned(),
                    paid_date: "2022-12-20".to_owned(),
                },
                &people.finance,
            )?)
            .await?;
        Ok(())
    }

    /// A read: a case by id, the officer's inbox, or a page of the district's cases.
    pub async fn read(&mut self, people: &People, case_id: &str, k: u64) -> Result<(), Status> {
        match k % 3 {
            0 => {
                self.cases
                    .get_case(call(
                        pb::GetCaseRequest {
                            case_id: case_id.to_owned(),
                        },
                        &people.officer,
                    )?)
                    .await?;
            }
            1 => {
                self.approvals
                    .list_my_tasks(call(
                        pb::ListMyTasksRequest {
                            page_size: 20,
                            page_token: String::new(),
                        },
                        &people.officer,
                    )?)
                    .await?;
            }
            _ => {
                self.cases
                    .list_cases(call(
                        pb::ListCasesRequest {
                            page_size: 20,
                            ..Default::default()
                        },
                        &people.officer,
                    )?)
                    .await?;
            }
        }
        Ok(())
    }

    /// The year's indicators.
    pub async fn report(&mut self, people: &People) -> Result<(), Status> {
        self.reports
            .get_indicators(call(
                pb::GetIndicatorsRequest { fiscal_year: YEAR },
                &people.auditor,
            )?)
            .await?;
        Ok(())
    }
}
