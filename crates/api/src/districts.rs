//! DistrictService: the city creates districts; each district's administrator maintains its
//! fund rules, which are versioned so cases keep the rules they were filed under.

use relief_domain::{DistrictId, Role, Violation};
use relief_proto::v1 as pb;
use relief_proto::v1::district_service_server::DistrictService;
use tonic::{Request, Response, Status};

use crate::ApiContext;
use crate::auth::Caller;
use crate::convert::{district_to_pb, rules_from_pb, rules_to_pb, timestamp};
use crate::error::{ApiError, ApiResult};
use crate::paging::ListKey;
use crate::plumbing::handle;

const MAX_DISTRICT_NAME_CHARS: usize = 64;

#[derive(Debug, Clone)]
pub struct DistrictApi {
    ctx: ApiContext,
}

impl DistrictApi {
    pub fn new(ctx: ApiContext) -> Self {
        Self { ctx }
    }
}

fn parse_district(s: &str) -> ApiResult<DistrictId> {
    DistrictId::parse(s).map_err(|e| ApiError::invalid("district_id", e))
}

impl DistrictApi {
    async fn get(
        &self,
        caller: Caller,
        req: pb::GetDistrictRequest,
    ) -> ApiResult<pb::GetDistrictResponse> {
        let id = parse_district(&req.district_id)?;
        caller.check_district_reach(&id)?;
        let d = self
            .ctx
            .store
            .district(&id)
            .await?
            .ok_or(ApiError::NotFound("district"))?;
        Ok(pb::GetDistrictResponse {
            district: Some(district_to_pb(&d)),
        })
    }

    async fn list(
        &self,
        caller: Caller,
        req: pb::ListDistrictsRequest,
    ) -> ApiResult<pb::ListDistrictsResponse> {
        let limit = self.ctx.page_size(req.page_size)?;
        let key = ListKey::of("", &req);
        let after = key.cursor_as(&req.page_token, DistrictId::parse)?;
        if !(caller.is_city() && caller.has_role(Role::CityAdmin)) {
            // Everyone but the city administrator sees the district it acts in, only.
            let own = caller.district()?;
            let d = match after {
                Some(_) => None,
                None => self.ctx.store.district(own).await?,
            };
            return Ok(pb::ListDistrictsResponse {
                districts: d.iter().map(district_to_pb).collect(),
                next_page_token: String::new(),
                missing_district_ids: Vec::new(),
            });
        }
        let mut rows = self
            .ctx
            .store
            .list_districts(after.as_ref(), limit + 1)
            .await?;
        let next_page_token = key.next_page(&mut rows, limit, |d| d.id.as_str().to_owned());
        Ok(pb::ListDistrictsResponse {
            districts: rows.iter().map(district_to_pb).collect(),
            next_page_token,
            missing_district_ids: Vec::new(),
        })
    }

    async fn create(
        &self,
        caller: Caller,
        req: pb::CreateDistrictRequest,
    ) -> ApiResult<pb::CreateDistrictResponse> {
        if !caller.is_city() {
            return Err(ApiError::denied(
                "creating a district needs a city-scoped token",
            ));
        }
        caller.require_role(Role::CityAdmin)?;
        let m = self.ctx.mutation(&caller, &req.request_id, &req)?;
        let mut violations = Vec::new();
        let id = DistrictId::parse(&req.district_id)
            .map_err(|e| violations.push(Violation::new("district_id", e)))
            .ok();
        let name = req.name.trim();
        if name.is_empty() || name.chars().count() > MAX_DISTRICT_NAME_CHARS {
            violations.push(Violation::new(
                "name",
                format_args!("is required, at most {MAX_DISTRICT_NAME_CHARS} characters"),
            ));
        }
        let rules = rules_from_pb(req.rules.as_ref(), "rules")
            .map_err(|v| violations.extend(v))
            .ok();
        let (Some(id), Some(rules), true) = (id, rules, violations.is_empty()) else {
            return Err(ApiError::InvalidArgument(violations));
        };
        // Two retries of one creation may race on the district's key; the loser finds the
        // winner's stored response on its second pass.
        for attempt in 0..2 {
            let created = m
                .run(None, Role::CityAdmin, async |tx| {
                    let record = tx.insert_district(&id, name, &rules).await?;
                    tracing::info!(district = %id, "district created");
                    Ok(pb::CreateDistrictResponse {
                        district: Some(district_to_pb(&record)),
                    })
                })
                .await;
            match created {
                Err(ApiError::AlreadyExists(_)) if attempt == 0 => continue,
                Err(e) => return Err(e),
                Ok(resp) => {
                    self.ctx.labels.add_districts([id.as_str()]);
                    return Ok(resp);
                }
            }
        }
        Err(ApiError::AlreadyExists(format!(
            "district {id} already exists"
        )))
    }

    async fn update_rules(
        &self,
        caller: Caller,
        req: pb::UpdateFundRulesRequest,
    ) -> ApiResult<pb::UpdateFundRulesResponse> {
        let id = parse_district(&req.district_id)?;
        if caller.is_city() {
            return Err(ApiError::denied(
                "fund rules are changed by the district's administrator",
            ));
        }
        caller.check_district(&id)?;
        caller.require_role(Role::DistrictAdmin)?;
        let m = self.ctx.mutation(&caller, &req.request_id, &req)?;
        let rules =
            rules_from_pb(req.rules.as_ref(), "rules").map_err(ApiError::InvalidArgument)?;
        let expected = (req.expected_rules_version != 0).then_some(req.expected_rules_version);
        m.run(Some(&id), Role::DistrictAdmin, async |tx| {
            let record = tx.update_rules(&id, &rules, expected).await?;
            tracing::info!(district = %id, rules_version = record.rules_version, "fund rules updated");
            Ok(pb::UpdateFundRulesResponse {
                district: Some(district_to_pb(&record)),
            })
        })
        .await
    }

    async fn get_rules_version(
        &self,
        caller: Caller,
        req: pb::GetFundRulesVersionRequest,
    ) -> ApiResult<pb::GetFundRulesVersionResponse> {
        let id = parse_district(&req.district_id)?;
        caller.check_district_reach(&id)?;
        if req.rules_version <= 0 {
            return Err(ApiError::invalid("rules_version", "must be positive"));
        }
        let v = self
            .ctx
            .store
            .rules_version(&id, req.rules_version)
            .await?
            .ok_or(ApiError::NotFound("rules version"))?;
        Ok(pb::GetFundRulesVersionResponse {
            rules: Some(rules_to_pb(&v.rules)),
            rules_version: v.version,
            create_time: Some(timestamp(v.created_at)),
            created_by: v.created_by,
        })
    }
}

#[tonic::async_trait]
impl DistrictService for DistrictApi {
    async fn get_district(
        &self,
        request: Request<pb::GetDistrictRequest>,
    ) -> Result<Response<pb::GetDistrictResponse>, Status> {
        handle!(self, request, get)
    }

    async fn list_districts(
        &self,
        request: Request<pb::ListDistrictsRequest>,
    ) -> Result<Response<pb::ListDistrictsResponse>, Status> {
        handle!(self, request, list)
    }

    async fn create_district(
        &self,
        request: Request<pb::CreateDistrictRequest>,
    ) -> Result<Response<pb::CreateDistrictResponse>, Status> {
        handle!(self, request, create)
    }

    async fn update_fund_rules(
        &self,
        request: Request<pb::UpdateFundRulesRequest>,
    ) -> Result<Response<pb::UpdateFundRulesResponse>, Status> {
        handle!(self, request, update_rules)
    }

    async fn get_fund_rules_version(
        &self,
        request: Request<pb::GetFundRulesVersionRequest>,
    ) -> Result<Response<pb::GetFundRulesVersionResponse>, Status> {
        handle!(self, request, get_rules_version)
    }
}
