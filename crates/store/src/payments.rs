//! Storage of payments (核拨): one row for each attempt to pay a case.

use chrono::{DateTime, NaiveDate, Utc};
use relief_domain::payment::PaymentState;
use relief_domain::{CaseId, DistrictId, Money};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, IntoActiveModel, QueryFilter, QueryOrder,
    QuerySelect,
};
use serde::Serialize;

use crate::entity::payment;
use crate::error::{Error, Result, corrupt};
use crate::keyset::after_descending;
use crate::{Store, WriteTx};

/// How dates are stored.
pub(crate) const DATE: &str = "%Y-%m-%d";

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PaymentRecord {
    pub id: String,
    pub district_id: DistrictId,
    pub case_id: CaseId,
    pub fiscal_year: i32,
    pub amount: Money,
    pub receiving_unit_name: String,
    pub bank_name: String,
    pub bank_account: String,
    pub voucher_number: String,
    pub state: PaymentState,
    /// Once paid: from the case's submission to the payment date (noon), for the report.
    pub secs_to_payment: Option<i64>,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl PaymentRecord {
    fn from_row(r: payment::Model) -> Result<Self> {
        let state = match r.state.as_str() {
            "pending" => PaymentState::Pending,
            "paid" => PaymentState::Paid {
                bank_reference: r.bank_reference.clone().unwrap_or_default(),
                paid_on: date(r.paid_date.as_deref().unwrap_or_default())?,
            },
            "failed" => PaymentState::Failed {
                reason: r.failure_reason.clone().unwrap_or_default(),
            },
            "reversed" => PaymentState::Reversed {
                bank_reference: r.bank_reference.clone().unwrap_or_default(),
                paid_on: date(r.paid_date.as_deref().unwrap_or_default())?,
                reason: r.failure_reason.clone().unwrap_or_default(),
            },
            other => return Err(Error::corrupt("payment state", other)),
        };
        Ok(Self {
            id: r.id,
            district_id: DistrictId::parse(&r.district_id).map_err(corrupt("district id"))?,
            case_id: CaseId::parse(&r.case_id).map_err(corrupt("case id"))?,
            fiscal_year: r.fiscal_year,
            amount: Money::from_fen(r.amount_fen).map_err(corrupt("amount"))?,
            receiving_unit_name: r.receiving_unit_name,
            bank_name: r.bank_name,
            bank_account: r.bank_account,
            voucher_number: r.voucher_number,
            state,
            secs_to_payment: r.secs_to_payment,
            created_by: r.created_by,
            created_at: r.created_at,
            updated_at: r.updated_at,
        })
    }

    pub(crate) fn to_row(&self) -> payment::Model {
        let (bank_reference, paid_date, failure_reason) = match &self.state {
            PaymentState::Pending => (None, None, None),
            PaymentState::Paid {
                bank_reference,
                paid_on,
            } => (
                Some(bank_reference.clone()),
                Some(paid_on.format(DATE).to_string()),
                None,
            ),
            PaymentState::Failed { reason } => (None, None, Some(reason.clone())),
            PaymentState::Reversed {
                bank_reference,
                paid_on,
                reason,
            } => (
                Some(bank_reference.clone()),
                Some(paid_on.format(DATE).to_string()),
                Some(reason.clone()),
            ),
        };
        payment::Model {
            id: self.id.clone(),
            district_id: self.district_id.to_string(),
            case_id: self.case_id.to_string(),
            fiscal_year: self.fiscal_year,
            amount_fen: self.amount.fen(),
            receiving_unit_name: self.receiving_unit_name.clone(),
            bank_name: self.bank_name.clone(),
            bank_account: self.bank_account.clone(),
            voucher_number: self.voucher_number.clone(),
            state: self.state.as_str().to_owned(),
            bank_reference,
            paid_date,
            failure_reason,
            secs_to_payment: self.secs_to_payment,
            created_by: self.created_by.clone(),
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
    }
}

pub(crate) fn date(s: &str) -> Result<NaiveDate> {
    NaiveDate::parse_from_str(s, DATE).map_err(corrupt("date"))
}

async fn payments_of_case<C: ConnectionTrait>(
    conn: &C,
    district: &DistrictId,
    case: CaseId,
) -> Result<Vec<PaymentRecord>> {
    payment::Entity::find()
        .filter(payment::Column::DistrictId.eq(district.as_str()))
        .filter(payment::Column::CaseId.eq(case.to_string()))
        .order_by_asc(payment::Column::CreatedAt)
        .order_by_asc(payment::Column::Id)
        .all(conn)
        .await?
        .into_iter()
        .map(PaymentRecord::from_row)
        .collect()
}

async fn payment<C: ConnectionTrait>(
    conn: &C,
    district: &DistrictId,
    id: &str,
) -> Result<Option<PaymentRecord>> {
    payment::Entity::find_by_id(id.to_owned())
        .filter(payment::Column::DistrictId.eq(district.as_str()))
        .one(conn)
        .await?
        .map(PaymentRecord::from_row)
        .transpose()
}

impl WriteTx {
    pub async fn payments_of_case(
        &self,
        district: &DistrictId,
        case: CaseId,
    ) -> Result<Vec<PaymentRecord>> {
        payments_of_case(self.conn().await?, district, case).await
    }

    pub async fn payment(&self, district: &DistrictId, id: &str) -> Result<Option<PaymentRecord>> {
        payment(self.conn().await?, district, id).await
    }

    pub async fn insert_payment(&mut self, p: &PaymentRecord) -> Result<()> {
        payment::Entity::insert(p.to_row().into_active_model())
            .exec(self.conn().await?)
            .await
            .map_err(|e| Error::on_insert(e, "payment"))?;
        self.record(
            &p.district_id,
            "payment.created",
            "payment",
            &p.id,
            None::<&()>,
            Some(p),
        )
    }

    /// Stores a payment's new state and records `action`.
    pub async fn update_payment(
        &mut self,
        action: &'static str,
        note: Option<&str>,
        before: &PaymentRecord,
        after: &mut PaymentRecord,
    ) -> Result<()> {
        after.updated_at = self.now();
        let row = after.to_row();
        let res = payment::Entity::update_many()
            .col_expr(payment::Column::State, Expr::value(row.state))
            .col_expr(
                payment::Column::BankReference,
                Expr::value(row.bank_reference),
            )
            .col_expr(payment::Column::PaidDate, Expr::value(row.paid_date))
            .col_expr(
                payment::Column::FailureReason,
                Expr::value(row.failure_reason),
            )
            .col_expr(
                payment::Column::SecsToPayment,
                Expr::value(row.secs_to_payment),
            )
            .col_expr(payment::Column::UpdatedAt, Expr::value(row.updated_at))
            .filter(payment::Column::Id.eq(before.id.as_str()))
            .filter(payment::Column::State.eq(before.state.as_str()))
            .exec(self.conn().await?)
            .await?;
        if res.rows_affected != 1 {
            return Err(Error::Stale {
                what: "payment",
                expected: 0,
                actual: 1,
            });
        }
        self.record_with_note(
            &before.district_id,
            action,
            "payment",
            &before.id,
            note,
            Some(before),
            Some(&*after),
        )
    }
}

impl Store {
    pub async fn payment(&self, district: &DistrictId, id: &str) -> Result<Option<PaymentRecord>> {
        payment(&self.db, district, id).await
    }

    /// Payments of the district, newest first (by creation, then id), optionally of one case
    /// or year; when paging, those after `after` (creation time, id) in that order.
    pub async fn payments(
        &self,
        district: &DistrictId,
        case: Option<CaseId>,
        fiscal_year: Option<i32>,
        after: Option<(DateTime<Utc>, String)>,
        limit: u64,
    ) -> Result<Vec<PaymentRecord>> {
        let mut q = payment::Entity::find()
            .filter(payment::Column::DistrictId.eq(district.as_str()))
            .order_by_desc(payment::Column::CreatedAt)
            .order_by_desc(payment::Column::Id)
            .limit(limit);
        if let Some((created, id)) = after {
            q = q.filter(after_descending(
                payment::Column::CreatedAt,
                created,
                payment::Column::Id,
                id,
            ));
        }
        if let Some(c) = case {
            q = q.filter(payment::Column::CaseId.eq(c.to_string()));
        }
        if let Some(y) = fiscal_year {
            q = q.filter(payment::Column::FiscalYear.eq(y));
        }
        q.all(&self.db)
            .await?
            .into_iter()
            .map(PaymentRecord::from_row)
            .collect()
    }

    /// Every confirmed payment of the district, for reconciliation.
    pub async fn paid_payments(&self, district: &DistrictId) -> Result<Vec<PaymentRecord>> {
        payment::Entity::find()
            .filter(payment::Column::DistrictId.eq(district.as_str()))
            .filter(payment::Column::State.eq("paid"))
            .all(&self.db)
            .await?
            .into_iter()
            .map(PaymentRecord::from_row)
            .collect()
    }

    /// The payments of a fiscal year in creation order (then id) after `after`, at most
    /// `limit`: the export reads a year this way, a batch at a time.
    pub async fn payments_of_year_after(
        &self,
        district: &DistrictId,
        fiscal_year: i32,
        after: Option<(DateTime<Utc>, String)>,
        limit: u64,
    ) -> Result<Vec<PaymentRecord>> {
        let mut q = payment::Entity::find()
            .filter(payment::Column::DistrictId.eq(district.as_str()))
            .filter(payment::Column::FiscalYear.eq(fiscal_year))
            .order_by_asc(payment::Column::CreatedAt)
            .order_by_asc(payment::Column::Id)
            .limit(limit);
        if let Some((created_at, id)) = after {
            q = q.filter(
                sea_orm::Condition::any()
                    .add(payment::Column::CreatedAt.gt(created_at))
                    .add(
                        sea_orm::Condition::all()
                            .add(payment::Column::CreatedAt.eq(created_at))
                            .add(payment::Column::Id.gt(id)),
                    ),
            );
        }
        q.all(&self.db)
            .await?
            .into_iter()
            .map(PaymentRecord::from_row)
            .collect()
    }
}
