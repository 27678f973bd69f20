//! What every handler shares: reading the caller off the request ([`handle!`]) and the one
//! path of every mutation ([`Mutation`]): the request id's key, the write opened behind the
//! district's other writers, the earlier response when the request id was already applied,
//! the body, and the commit that stores the response with the write.

use prost::Message;
use relief_domain::{DistrictId, Role};
use relief_proto::Rpc;
use relief_store::{IdempotencyKey, WriteTx};

use crate::ApiContext;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};

/// The longest request id a client may send.
pub const MAX_REQUEST_ID_CHARS: usize = 64;

/// Runs a handler body with the caller read from the request.
macro_rules! handle {
    ($self:ident, $req:ident, $method:ident) => {{
        let caller = $crate::auth::Caller::from_request(&$req)?;
        $self
            .$method(caller, $req.into_inner())
            .await
            .map(tonic::Response::new)
            .map_err(tonic::Status::from)
    }};
}
pub(crate) use handle;

/// When a mutation joins its district's queue of writers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Locking {
    /// Before it reads anything: what it reads cannot change before it commits.
    Queued,
    /// At its first write: it reads the case unqueued, and its write fails with
    /// [`ApiError::Conflict`] if anyone changed the case in between. A call that fails
    /// this way is run once more, queued.
    Optimistic,
}

/// One mutation of `R`, its request id checked and its key derived; [`Mutation::run`] applies
/// it. The method its key is scoped to is the request type's own ([`Rpc::METHOD`]).
pub(crate) struct Mutation<'a, R> {
    ctx: &'a ApiContext,
    caller: &'a Caller,
    key: IdempotencyKey,
    _request: std::marker::PhantomData<fn(&R)>,
}

impl ApiContext {
    /// Starts the mutation `request`: checks its request id and derives the key its response
    /// is kept under. The handler's own format checks come after, before [`Mutation::run`].
    pub(crate) fn mutation<'a, R: Rpc>(
        &'a self,
        caller: &'a Caller,
        request_id: &str,
        request: &R,
    ) -> ApiResult<Mutation<'a, R>> {
        check_request_id(request_id)?;
        Ok(Mutation {
            ctx: self,
            caller,
            key: IdempotencyKey::new(
                &caller.idempotency_scope(),
                caller.claims().subject().as_str(),
                request_id,
                R::METHOD,
                &request.encode_to_vec(),
            ),
            _request: std::marker::PhantomData,
        })
    }
}

impl<R: Rpc> Mutation<'_, R> {
    /// Applies the mutation in `district`'s write, attributed to the caller acting in `role`,
    /// queued behind the district's other writers: the earlier response if this request id
    /// was already applied, else `body`'s, committed with the write.
    pub(crate) async fn run(
        &self,
        district: Option<&DistrictId>,
        role: Role,
        body: impl AsyncFnOnce(&mut WriteTx) -> ApiResult<R::Response>,
    ) -> ApiResult<R::Response> {
        self.run_as(Locking::Queued, district, role, body).await
    }

    /// [`Mutation::run`], joining the district's queue only at the first write when
    /// `locking` is [`Locking::Optimistic`].
    pub(crate) async fn run_as(
        &self,
        locking: Locking,
        district: Option<&DistrictId>,
        role: Role,
        body: impl AsyncFnOnce(&mut WriteTx) -> ApiResult<R::Response>,
    ) -> ApiResult<R::Response> {
        let mut tx = self
            .ctx
            .store
            .begin_write(
                district,
                self.caller.actor(role),
                Some(self.key.request_id.clone()),
                self.ctx.clock.now(),
            )
            .await?;
        if locking == Locking::Queued {
            tx.lock().await?;
        }
        if let Some(bytes) = tx.replay(&self.key).await? {
            return R::Response::decode(bytes.as_slice())
                .map_err(|e| ApiError::Internal(format!("stored response does not decode: {e}")));
        }
        let response = body(&mut tx).await?;
        tx.commit(Some((&self.key, response.encode_to_vec())))
            .await?;
        Ok(response)
    }
}

/// Checks a client's request id: present, short, and of letters, digits and `-_.:`.
pub(crate) fn check_request_id(request_id: &str) -> ApiResult<()> {
    if request_id.is_empty() {
        return Err(ApiError::invalid(
            "request_id",
            "is required: a client-chosen id that makes retries safe",
        ));
    }
    let ok = request_id.len() <= MAX_REQUEST_ID_CHARS
        && request_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'));
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid(
            "request_id",
            format_args!(
                "must be at most {MAX_REQUEST_ID_CHARS} characters of letters, digits, '-', '_', '.', ':'"
            ),
        ))
    }
}
