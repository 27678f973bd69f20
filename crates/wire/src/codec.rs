//! The codec the generated services and clients use: tonic-prost's, with the wire check in
//! front of decoding a request. Responses are encoded and decoded exactly as prost does.

use std::fmt;
use std::marker::PhantomData;

use bytes::Buf as _;
use prost::{Message, Name};
use tonic::codec::{Codec, DecodeBuf, Decoder};
use tonic::{Code, Status};
use tonic_prost::{ProstDecoder, ProstEncoder};
use tonic_types::ErrorDetails;

use crate::scan::{Refusal, rewrite, scan};
use crate::status::{invalid_argument, with_reason};
use crate::{Contract, current_limits};

/// Names types without owning values of them, so the codec is `Send` and `Sync` whatever
/// they are.
type Marker<T> = PhantomData<fn() -> T>;

/// `T` out, `U` in, checked against the contract `C` when `U` is one of its requests.
pub struct WireCodec<T, U, C> {
    _types: Marker<(T, U, C)>,
}

impl<T, U, C> Default for WireCodec<T, U, C> {
    fn default() -> Self {
        Self {
            _types: PhantomData,
        }
    }
}

impl<T, U, C> fmt::Debug for WireCodec<T, U, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WireCodec")
    }
}

impl<T, U, C> Codec for WireCodec<T, U, C>
where
    T: Message + Send + 'static,
    U: Message + Name + Default + Send + 'static,
    C: Contract,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = WireDecoder<U, C>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::default()
    }

    fn decoder(&mut self) -> Self::Decoder {
        WireDecoder {
            _types: PhantomData,
        }
    }
}

/// Decodes `U`, after the wire check when `U` is a request of the contract `C`.
pub struct WireDecoder<U, C> {
    _types: Marker<(U, C)>,
}

impl<U, C> fmt::Debug for WireDecoder<U, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WireDecoder")
    }
}

impl<U, C> Decoder for WireDecoder<U, C>
where
    U: Message + Name + Default + Send + 'static,
    C: Contract,
{
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        let schema = match C::schema() {
            Ok(schema) => schema,
            Err(e) => {
                // Fails closed: nothing is decoded unchecked.
                tracing::error!(error = %e, "the wire check has no schema");
                return Err(with_reason(
                    Code::Internal,
                    "internal error",
                    "INTERNAL",
                    [],
                    ErrorDetails::new(),
                ));
            }
        };
        let Some(root) = schema.request(U::PACKAGE, U::NAME) else {
            // A response, read by a client: nothing to check.
            return ProstDecoder::<U>::default().decode(buf);
        };
        // The whole message is buffered by now; taking it from tonic's buffer copies nothing.
        let bytes = buf.copy_to_bytes(buf.remaining());
        let limits = current_limits();
        let undecodable = |problem: String| {
            with_reason(
                Code::Internal,
                format!("{} could not be decoded: {problem}", U::full_name()),
                "MALFORMED_MESSAGE",
                [],
                ErrorDetails::new(),
            )
        };
        let passed = scan(schema, root, &bytes, limits).map_err(|refusal| match refusal {
            Refusal::Malformed(problem) => undecodable(problem),
            Refusal::Invalid {
                violations,
                omitted,
            } => invalid_argument(violations, omitted),
        })?;
        let decoded = if passed.rewrite {
            let normalised = rewrite(schema, root, &bytes, limits)
                .map_err(|_| undecodable("its text could not be normalised".to_owned()))?;
            U::decode(normalised.as_slice())
        } else {
            U::decode(bytes)
        };
        decoded.map(Some).map_err(|e| undecodable(e.to_string()))
    }
}
