//! Storage of payments, follow-ups, fiscal-year closures and the ledger's entries as read
//! back for verification.

use chrono::{DateTime, NaiveDate, Utc};
use relief_domain::ledger::EntryKind;
use relief_domain::payment::PaymentState;
use relief_domain::{CaseId, DistrictId, Money};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, IntoActiveModel, PaginatorTrait, QueryFilter,
    QueryOrder, QuerySelect,
};
use serde::Serialize;

use crate::entity::case;
use crate::entity::{fiscal_year_closure, follow_up, ledger_entry, payment};
use crate::error::{Error, Result};
use crate::records::CaseRecord;
use crate::{Store, WriteTx};

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

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FollowUpRecord {
    pub id: String,
    pub district_id: DistrictId,
    pub case_id: CaseId,
    pub sequence: i32,
    pub due_date: NaiveDate,
    pub done: bool,
    pub done_date: Option<NaiveDate>,
    pub method: Option<String>,
    pub petitioned_again: bool,
    pub notes: Option<String>,
    pub recorded_by: Option<String>,
    pub recorded_at: Option<DateTime<Utc>>,
    /// The fiscal year of the case, for the report.
    pub fiscal_year: Option<i32>,
}

impl FollowUpRecord {
    /// The `sequence`th follow-up of `case`, due on `due_date`, not yet done.
    pub fn due(id: String, case: &CaseRecord, sequence: i32, due_date: NaiveDate) -> Self {
        Self {
            id,
            district_id: case.district_id.clone(),
            case_id: case.id,
            sequence,
            due_date,
            done: false,
            done_date: None,
            method: None,
            petitioned_again: false,
            notes: None,
            recorded_by: None,
            recorded_at: None,
            fiscal_year: case.application.fiscal_year,
        }
    }
}

/// One ledger entry as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerEntryRecord {
    pub id: i64,
    pub kind: EntryKind,
    pub amount: Money,
    pub case_id: Option<CaseId>,
    pub actor_subject: String,
    pub created_at: DateTime<Utc>,
    /// Written by an import, recording history rather than moving money here.
    pub imported: bool,
}

const DATE: &str = "%Y-%m-%d";

fn corrupt<E: std::fmt::Display>(what: &'static str) -> impl FnOnce(E) -> Error {
    move |e| Error::corrupt(what, e)
}

fn date(s: &str) -> Result<NaiveDate> {
    NaiveDate::parse_from_str(s, DATE).map_err(corrupt("date"))
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

impl FollowUpRecord {
    fn from_row(r: follow_up::Model) -> Result<Self> {
        Ok(Self {
            id: r.id,
            district_id: DistrictId::parse(&r.district_id).map_err(corrupt("district id"))?,
            case_id: CaseId::parse(&r.case_id).map_err(corrupt("case id"))?,
            sequence: r.sequence,
            due_date: date(&r.due_date)?,
            done: r.done,
            done_date: r.done_date.as_deref().map(date).transpose()?,
            method: r.method,
            petitioned_again: r.petitioned_again,
            notes: r.notes,
            recorded_by: r.recorded_by,
            recorded_at: r.recorded_at,
            fiscal_year: r.fiscal_year,
        })
    }

    fn to_row(&self) -> follow_up::Model {
        follow_up::Model {
            id: self.id.clone(),
            district_id: self.district_id.to_string(),
            case_id: self.case_id.to_string(),
            sequence: self.sequence,
            due_date: self.due_date.format(DATE).to_string(),
            done: self.done,
            done_date: self.done_date.map(|d| d.format(DATE).to_string()),
            method: self.method.clone(),
            petitioned_again: self.petitioned_again,
            notes: self.notes.clone(),
            recorded_by: self.recorded_by.clone(),
            recorded_at: self.recorded_at,
            fiscal_year: self.fiscal_year,
        }
    }
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

async fn follow_up<C: ConnectionTrait>(
    conn: &C,
    district: &DistrictId,
    id: &str,
) -> Result<Option<FollowUpRecord>> {
    follow_up::Entity::find_by_id(id.to_owned())
        .filter(follow_up::Column::DistrictId.eq(district.as_str()))
        .one(conn)
        .await?
        .map(FollowUpRecord::from_row)
        .transpose()
}

async fn year_closed<C: ConnectionTrait>(
    conn: &C,
    district: &DistrictId,
    year: i32,
) -> Result<bool> {
    Ok(
        fiscal_year_closure::Entity::find_by_id((district.to_string(), year))
            .count(conn)
            .await?
            > 0,
    )
}

impl WriteTx {
    pub async fn year_closed(&self, district: &DistrictId, year: i32) -> Result<bool> {
        year_closed(self.conn().await?, district, year).await
    }

    pub async fn close_year(
        &mut self,
        district: &DistrictId,
        year: i32,
        unused: Money,
    ) -> Result<()> {
        let row = fiscal_year_closure::Model {
            district_id: district.to_string(),
            fiscal_year: year,
            unused_fen: unused.fen(),
            closed_by: self.actor().subject.to_string(),
            closed_at: self.now(),
        };
        fiscal_year_closure::Entity::insert(row.into_active_model())
            .exec(self.conn().await?)
            .await
            .map_err(|e| Error::on_insert(e, format!("closure of fiscal year {year}")))?;
        #[derive(Serialize)]
        struct Closed {
            fiscal_year: i32,
            unused_fen: i64,
        }
        self.record(
            district,
            "fiscal_year.closed",
            "fiscal_year",
            &year.to_string(),
            None::<&()>,
            Some(&Closed {
                fiscal_year: year,
                unused_fen: unused.fen(),
            }),
        )
    }

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

    pub async fn insert_follow_up(&mut self, f: &FollowUpRecord) -> Result<()> {
        follow_up::Entity::insert(f.to_row().into_active_model())
            .exec(self.conn().await?)
            .await
            .map_err(|e| Error::on_insert(e, "follow-up"))?;
        Ok(())
    }

    pub async fn follow_up(
        &self,
        district: &DistrictId,
        id: &str,
    ) -> Result<Option<FollowUpRecord>> {
        follow_up(self.conn().await?, district, id).await
    }

    /// Cancels the case's follow-ups not yet done (its payment was returned).
    pub async fn cancel_open_follow_ups(
        &mut self,
        district: &DistrictId,
        case: CaseId,
    ) -> Result<u64> {
        let res = follow_up::Entity::delete_many()
            .filter(follow_up::Column::DistrictId.eq(district.as_str()))
            .filter(follow_up::Column::CaseId.eq(case.to_string()))
            .filter(follow_up::Column::Done.eq(false))
            .exec(self.conn().await?)
            .await?;
        Ok(res.rows_affected)
    }

    pub async fn record_follow_up(
        &mut self,
        before: &FollowUpRecord,
        after: &FollowUpRecord,
    ) -> Result<()> {
        let row = after.to_row();
        follow_up::Entity::update_many()
            .col_expr(follow_up::Column::Done, Expr::value(row.done))
            .col_expr(follow_up::Column::DoneDate, Expr::value(row.done_date))
            .col_expr(follow_up::Column::Method, Expr::value(row.method))
            .col_expr(
                follow_up::Column::PetitionedAgain,
                Expr::value(row.petitioned_again),
            )
            .col_expr(follow_up::Column::Notes, Expr::value(row.notes))
            .col_expr(follow_up::Column::RecordedBy, Expr::value(row.recorded_by))
            .col_expr(follow_up::Column::RecordedAt, Expr::value(row.recorded_at))
            .filter(follow_up::Column::Id.eq(before.id.as_str()))
            .exec(self.conn().await?)
            .await?;
        self.record(
            &before.district_id,
            "follow_up.recorded",
            "follow_up",
            &before.id,
            Some(before),
            Some(after),
        )
    }
}

impl Store {
    pub async fn payment(&self, district: &DistrictId, id: &str) -> Result<Option<PaymentRecord>> {
        payment(&self.db, district, id).await
    }

    /// Payments of the district, newest first, optionally of one case or year.
    pub async fn payments(
        &self,
        district: &DistrictId,
        case: Option<CaseId>,
        fiscal_year: Option<i32>,
        offset: u64,
        limit: u64,
    ) -> Result<Vec<PaymentRecord>> {
        let mut q = payment::Entity::find()
            .filter(payment::Column::DistrictId.eq(district.as_str()))
            .order_by_desc(payment::Column::CreatedAt)
            .order_by_desc(payment::Column::Id)
            .offset(offset)
            .limit(limit);
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

    pub async fn year_closed(&self, district: &DistrictId, year: i32) -> Result<bool> {
        year_closed(&self.db, district, year).await
    }

    /// Follow-ups not yet recorded, due on or before `due_by`, earliest first.
    pub async fn due_follow_ups(
        &self,
        district: &DistrictId,
        due_by: NaiveDate,
        offset: u64,
        limit: u64,
    ) -> Result<Vec<FollowUpRecord>> {
        follow_up::Entity::find()
            .filter(follow_up::Column::DistrictId.eq(district.as_str()))
            .filter(follow_up::Column::Done.eq(false))
            .filter(follow_up::Column::DueDate.lte(due_by.format(DATE).to_string()))
            .order_by_asc(follow_up::Column::DueDate)
            .order_by_asc(follow_up::Column::Id)
            .offset(offset)
            .limit(limit)
            .all(&self.db)
            .await?
            .into_iter()
            .map(FollowUpRecord::from_row)
            .collect()
    }

    pub async fn case_follow_ups(
        &self,
        district: &DistrictId,
        case: CaseId,
    ) -> Result<Vec<FollowUpRecord>> {
        follow_up::Entity::find()
            .filter(follow_up::Column::DistrictId.eq(district.as_str()))
            .filter(follow_up::Column::CaseId.eq(case.to_string()))
            .order_by_asc(follow_up::Column::Sequence)
            .all(&self.db)
            .await?
            .into_iter()
            .map(FollowUpRecord::from_row)
            .collect()
    }

    /// The year's ledger entries in order, from `offset`.
    pub async fn ledger_entries(
        &self,
        district: &DistrictId,
        fiscal_year: i32,
        offset: u64,
        limit: u64,
    ) -> Result<Vec<LedgerEntryRecord>> {
        ledger_entry::Entity::find()
            .filter(ledger_entry::Column::DistrictId.eq(district.as_str()))
            .filter(ledger_entry::Column::FiscalYear.eq(fiscal_year))
            .order_by_asc(ledger_entry::Column::Id)
            .offset(offset)
            .limit(limit)
            .all(&self.db)
            .await?
            .into_iter()
            .map(|r| {
                Ok(LedgerEntryRecord {
                    id: r.id,
                    kind: EntryKind::parse(&r.kind)
                        .ok_or_else(|| Error::corrupt("ledger entry", r.kind.clone()))?,
                    amount: Money::from_fen(r.amount_fen).map_err(corrupt("ledger amount"))?,
                    case_id: r
                        .case_id
                        .as_deref()
                        .map(CaseId::parse)
                        .transpose()
                        .map_err(corrupt("case id"))?,
                    actor_subject: r.actor_subject,
                    created_at: r.created_at,
                    imported: r.imported,
                })
            })
            .collect()
    }

    /// The cases of a fiscal year in id order after `after`, at most `limit`: the exports
    /// read a year this way, a batch at a time.
    pub async fn cases_of_year_after(
        &self,
        district: &DistrictId,
        fiscal_year: i32,
        after: Option<CaseId>,
        limit: u64,
    ) -> Result<Vec<CaseRecord>> {
        let mut q = case::Entity::find()
            .filter(case::Column::DistrictId.eq(district.as_str()))
            .filter(case::Column::FiscalYear.eq(fiscal_year))
            .order_by_asc(case::Column::Id)
            .limit(limit);
        if let Some(after) = after {
            q = q.filter(case::Column::Id.gt(after.to_string()));
        }
        q.all(&self.db)
            .await?
            .into_iter()
            .map(CaseRecord::from_row)
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

    /// The cases charged to a fiscal year, for ledger verification.
    pub async fn cases_of_year(
        &self,
        district: &DistrictId,
        fiscal_year: i32,
    ) -> Result<Vec<CaseRecord>> {
        case::Entity::find()
            .filter(case::Column::DistrictId.eq(district.as_str()))
            .filter(case::Column::FiscalYear.eq(fiscal_year))
            .all(&self.db)
            .await?
            .into_iter()
            .map(CaseRecord::from_row)
            .collect()
    }
}
