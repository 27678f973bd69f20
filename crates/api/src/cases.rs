//! CaseService: applicant units file, amend, submit and withdraw relief applications; the
//! bureau reads them. The district always comes from the caller, never from the request.

use chrono::Duration;
use relief_domain::approval::entry_step;
use relief_domain::case::{CaseState, check_submission};
use relief_domain::{CaseId, CategoryCode, Role, UnitId};
use relief_proto::v1 as pb;
use relief_proto::v1::case_service_server::CaseService;
use relief_store::{CaseFilter, CaseRecord};
use tonic::{Request, Response, Status};

use crate::ApiContext;
use crate::access::{check_length, check_version, parse_case_id, visible};
use crate::auth::{Caller, CaseVisibility};
use crate::convert::{application_from_pb, case_to_pb, state_from_pb};
use crate::error::{ApiError, ApiResult};
use crate::paging::ListKey;
use crate::plumbing::{check_request_id, handle};

/// The longest recipient-name search text.
const MAX_SEARCH_CHARS: usize = 64;
const MAX_REASON_CHARS: usize = 2000;

#[derive(Debug, Clone)]
pub struct CaseApi {
    ctx: ApiContext,
}

impl CaseApi {
    pub fn new(ctx: ApiContext) -> Self {
        Self { ctx }
    }
}

/// The application, with every problem of it and of the request id at once.
fn application_with_request_id(
    request_id: &str,
    application: Option<&pb::Application>,
) -> ApiResult<relief_domain::Application> {
    match (
        check_request_id(request_id),
        application_from_pb(application),
    ) {
        (Ok(()), Ok(a)) => Ok(a),
        (Err(ApiError::InvalidArgument(mut v)), Err(more)) => {
            v.extend(more);
            Err(ApiError::InvalidArgument(v))
        }
        (Err(e), _) => Err(e),
        (Ok(()), Err(v)) => Err(ApiError::InvalidArgument(v)),
    }
}

/// The filter of a ListCases request; every field it cannot read is reported at once.
fn case_filter_from_pb(req: &pb::ListCasesRequest) -> ApiResult<CaseFilter> {
    let mut violations = Vec::new();
    let state = state_from_pb(req.state, "state").unwrap_or_else(|v| {
        violations.push(v);
        None
    });
    let mut filter = CaseFilter {
        state,
        fiscal_year: (req.fiscal_year != 0).then_some(req.fiscal_year),
        ..CaseFilter::default()
    };
    if !req.applicant_unit_id.is_empty() {
        match UnitId::parse(&req.applicant_unit_id) {
            Ok(u) => filter.applicant_unit = Some(u),
            Err(e) => violations.push(relief_domain::Violation::new("applicant_unit_id", e)),
        }
    }
    if !req.category_code.is_empty() {
        match CategoryCode::parse(&req.category_code) {
            Ok(c) => filter.category = Some(c),
            Err(e) => violations.push(relief_domain::Violation::new("category_code", e)),
        }
    }
    let text = req.recipient_name_contains.trim();
    if text.chars().count() > MAX_SEARCH_CHARS {
        violations.push(relief_domain::Violation::new(
            "recipient_name_contains",
            format_args!("must be at most {MAX_SEARCH_CHARS} characters"),
        ));
    } else if !text.is_empty() {
        filter.recipient_name_contains = Some(text.to_owned());
    }
    if !violations.is_empty() {
        return Err(ApiError::InvalidArgument(violations));
    }
    Ok(filter)
}

impl CaseApi {
    async fn create(
        &self,
        caller: Caller,
        req: pb::CreateCaseRequest,
    ) -> ApiResult<pb::CreateCaseResponse> {
        let district = caller.require_district_role(Role::ApplicantUnit)?.clone();
        let unit = caller.unit()?.clone();
        let application = application_with_request_id(&req.request_id, req.application.as_ref())?;
        let m = self.ctx.mutation(&caller, &req.request_id, &req)?;
        m.run(Some(&district), Role::ApplicantUnit, async |tx| {
            let d = tx
                .district(&district)
                .await?
                .ok_or(ApiError::NotFound("district"))?;
            let now = tx.now();
            let record = CaseRecord {
                id: CaseId::new_v7(),
                district_id: district.clone(),
                applicant_unit_id: unit,
                state: CaseState::Draft,
                application,
                rules_version: d.rules_version,
                over_cap: false,
                repeat_relief: false,
                approved_amount: None,
                step_role: None,
                step_entered_at: None,
                step_deadline_at: None,
                petitioned_again: false,
                version: 1,
                created_by: caller.claims().subject().to_string(),
                created_at: now,
                updated_at: now,
                submitted_at: None,
            };
            tx.insert_case(&record).await?;
            tracing::info!(district = %district, case = %record.id, "case created");
            Ok(pb::CreateCaseResponse {
                case: Some(case_to_pb(&record, &caller.case_view(&record))),
            })
        })
        .await
    }

    async fn get(&self, caller: Caller, req: pb::GetCaseRequest) -> ApiResult<pb::GetCaseResponse> {
        let district = caller.district()?;
        let visibility = caller.case_visibility()?;
        let id = parse_case_id(&req.case_id)?;
        let case = visible(self.ctx.store.case(district, id).await?, &visibility)?;
        Ok(pb::GetCaseResponse {
            case: Some(case_to_pb(&case, &caller.case_view(&case))),
        })
    }

    async fn list(
        &self,
        caller: Caller,
        req: pb::ListCasesRequest,
    ) -> ApiResult<pb::ListCasesResponse> {
        let district = caller.district()?;
        let visibility = caller.case_visibility()?;
        let limit = self.ctx.page_size(req.page_size)?;
        let key = ListKey::of(district.as_str(), &req);
        let before = key.cursor_as(&req.page_token, CaseId::parse)?;
        let mut filter = case_filter_from_pb(&req)?;
        if let CaseVisibility::Unit(own) = &visibility {
            // An applicant unit lists only its own cases; asking for another unit's finds none.
            if filter.applicant_unit.as_ref().is_some_and(|u| u != own) {
                return Ok(pb::ListCasesResponse::default());
            }
            filter.applicant_unit = Some(own.clone());
        }
        let mut rows = self
            .ctx
            .store
            .list_cases(district, &filter, before, limit + 1)
            .await?;
        let next_page_token = key.next_page(&mut rows, limit, |c| c.id.to_string());
        Ok(pb::ListCasesResponse {
            cases: rows
                .iter()
                .map(|c| case_to_pb(c, &caller.case_view(c)))
                .collect(),
            next_page_token,
        })
    }

    async fn update(
        &self,
        caller: Caller,
        req: pb::UpdateCaseRequest,
    ) -> ApiResult<pb::UpdateCaseResponse> {
        let district = caller.require_district_role(Role::ApplicantUnit)?.clone();
        let unit = caller.unit()?.clone();
        let application = application_with_request_id(&req.request_id, req.application.as_ref())?;
        let m = self.ctx.mutation(&caller, &req.request_id, &req)?;
        let id = parse_case_id(&req.case_id)?;
        m.run(Some(&district), Role::ApplicantUnit, async |tx| {
            let before = visible(tx.case(&district, id).await?, &CaseVisibility::Unit(unit))?;
            check_version(req.expected_version, &before)?;
            before.state.check_editable()?;
            let mut after = CaseRecord {
                application,
                ..before.clone()
            };
            tx.update_case("case.updated", None, &before, &mut after)
                .await?;
            tracing::info!(district = %district, case = %id, "case updated");
            Ok(pb::UpdateCaseResponse {
                case: Some(case_to_pb(&after, &caller.case_view(&after))),
            })
        })
        .await
    }

    /// Submits a case, or resubmits a returned one: checked against the rules it was filed
    /// under and the recipient's recent relief, it enters its chain's first applicable step
    /// or the step that returned it.
    ///
    /// The write is queued behind the district's other writers before anything is read, so
    /// the recipient's recent cases (in review, approved or paid within the rules' waiting
    /// period) include those of a submission racing this one. [`check_submission`] reports
    /// every problem of the application at once; its flags (over the cap, repeat relief)
    /// are kept on the case, [`entry_step`] picks the step, and [`CaseRecord::enter`] sets
    /// the step's role, arrival and deadline, which the inbox and the overdue list read. The
    /// row is written with its version check, so a case changed meanwhile answers ABORTED.
    async fn submit(
        &self,
        caller: Caller,
        req: pb::SubmitCaseRequest,
    ) -> ApiResult<pb::SubmitCaseResponse> {
        let district = caller.require_district_role(Role::ApplicantUnit)?.clone();
        let unit = caller.unit()?.clone();
        let m = self.ctx.mutation(&caller, &req.request_id, &req)?;
        let id = parse_case_id(&req.case_id)?;
        m.run(Some(&district), Role::ApplicantUnit, async |tx| {
            let before = visible(tx.case(&district, id).await?, &CaseVisibility::Unit(unit))?;
            check_version(req.expected_version, &before)?;
            before.state.check_submittable()?;
            // The case is judged by the rules it was filed under, not by later changes.
            let rules = tx.case_rules(&before).await?;
            let app = &before.application;
            let recent = match &app.recipient.resident_id {
                Some(rid) => {
                    let since = tx.now() - Duration::days(i64::from(rules.repeat_relief_wait_days));
                    tx.recent_cases_for_recipient(&district, rid.as_str(), since, before.id)
                        .await?
                }
                None => Vec::new(),
            };
            let flags =
                check_submission(app, &rules, &recent).map_err(ApiError::InvalidArgument)?;
            let entry = entry_step(
                &rules.approval_chain,
                &before.state,
                app.requested_amount,
                flags.over_cap,
            )
            .ok_or_else(|| {
                ApiError::Internal("the approval chain has no step for this case".to_owned())
            })?;
            let mut after = CaseRecord {
                over_cap: flags.over_cap,
                repeat_relief: flags.repeat_relief,
                submitted_at: Some(tx.now()),
                approved_amount: Some(app.requested_amount),
                ..before.clone()
            };
            after.enter(before.state.submit(entry.id.clone())?, Some(entry), tx.now());
            tx.update_case("case.submitted", None, &before, &mut after)
                .await?;
            tracing::info!(district = %district, case = %id, over_cap = flags.over_cap, "case submitted");
            Ok(pb::SubmitCaseResponse {
                case: Some(case_to_pb(&after, &caller.case_view(&after))),
            })
        })
        .await
    }

    /// Withdraws a case the applicant unit still holds or that is still in review; after
    /// final approval only the bureau undoes the approval (`CancelApproval`).
    async fn withdraw(
        &self,
        caller: Caller,
        req: pb::WithdrawCaseRequest,
    ) -> ApiResult<pb::WithdrawCaseResponse> {
        let district = caller.require_district_role(Role::ApplicantUnit)?.clone();
        let unit = caller.unit()?.clone();
        let m = self.ctx.mutation(&caller, &req.request_id, &req)?;
        let id = parse_case_id(&req.case_id)?;
        if req.reason.trim().is_empty() {
            return Err(ApiError::invalid("reason", "a withdrawal must say why"));
        }
        check_length("reason", &req.reason, MAX_REASON_CHARS)?;
        m.run(Some(&district), Role::ApplicantUnit, async |tx| {
            let before = visible(tx.case(&district, id).await?, &CaseVisibility::Unit(unit))?;
            check_version(req.expected_version, &before)?;
            let mut after = before.clone();
            after.enter(before.state.withdraw()?, None, tx.now());
            let reason = req.reason.trim();
            tx.update_case("case.withdrawn", Some(reason), &before, &mut after)
                .await?;
            tracing::info!(district = %district, case = %id, "case withdrawn");
            Ok(pb::WithdrawCaseResponse {
                case: Some(case_to_pb(&after, &caller.case_view(&after))),
            })
        })
        .await
    }
}

#[tonic::async_trait]
impl CaseService for CaseApi {
    async fn create_case(
        &self,
        request: Request<pb::CreateCaseRequest>,
    ) -> Result<Response<pb::CreateCaseResponse>, Status> {
        handle!(self, request, create)
    }

    async fn get_case(
        &self,
        request: Request<pb::GetCaseRequest>,
    ) -> Result<Response<pb::GetCaseResponse>, Status> {
        handle!(self, request, get)
    }

    async fn list_cases(
        &self,
        request: Request<pb::ListCasesRequest>,
    ) -> Result<Response<pb::ListCasesResponse>, Status> {
        handle!(self, request, list)
    }

    async fn update_case(
        &self,
        request: Request<pb::UpdateCaseRequest>,
    ) -> Result<Response<pb::UpdateCaseResponse>, Status> {
        handle!(self, request, update)
    }

    async fn submit_case(
        &self,
        request: Request<pb::SubmitCaseRequest>,
    ) -> Result<Response<pb::SubmitCaseResponse>, Status> {
        handle!(self, request, submit)
    }

    async fn withdraw_case(
        &self,
        request: Request<pb::WithdrawCaseRequest>,
    ) -> Result<Response<pb::WithdrawCaseResponse>, Status> {
        handle!(self, request, withdraw)
    }
}
