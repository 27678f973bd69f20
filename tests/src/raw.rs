//! A bare HTTP/2 client for the tests that need what tonic's client hides: a flow-control
//! window that stays shut, the server's SETTINGS, and whether the server has closed the
//! connection.

use std::net::SocketAddr;

use bytes::{Buf as _, Bytes, BytesMut};
use h2::client::SendRequest;
use prost::Message;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

/// One HTTP/2 connection; its frames are driven by a task of its own.
#[derive(Debug)]
pub struct RawConn {
    pub send: SendRequest<Bytes>,
    driver: JoinHandle<()>,
}

impl RawConn {
    /// Connects to `addr`; `window` is the initial stream window the client advertises
    /// (`Some(0)`: the server may send no data at all).
    pub async fn connect(addr: SocketAddr, window: Option<u32>) -> RawConn {
        Self::try_connect(addr, window)
            .await
            .expect("an HTTP/2 connection")
    }

    /// [`RawConn::connect`], failing instead of panicking.
    pub async fn try_connect(addr: SocketAddr, window: Option<u32>) -> anyhow::Result<RawConn> {
        let tcp = TcpStream::connect(addr).await?;
        let mut builder = h2::client::Builder::new();
        if let Some(window) = window {
            builder.initial_window_size(window);
        }
        let (send, connection) = builder.handshake::<_, Bytes>(tcp).await?;
        let driver = tokio::spawn(async move {
            let _ = connection.await;
        });
        let send = send.ready().await?;
        Ok(RawConn { send, driver })
    }

    /// Asks the standard health service, as a load balancer would; true when it answers
    /// SERVING.
    pub async fn health(&mut self) -> anyhow::Result<bool> {
        use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};
        let response = self
            .call(
                "/grpc.health.v1.Health/Check",
                None,
                None,
                &HealthCheckRequest::default(),
            )
            .await?;
        let mut reader = GrpcReader::new(response.into_body());
        let answer: Option<HealthCheckResponse> = reader.next().await?;
        Ok(answer.is_some_and(|a| a.status == 1))
    }

    /// Whether the connection has ended (the server closed it).
    pub fn is_closed(&self) -> bool {
        self.driver.is_finished()
    }

    /// Sends a unary or server-streaming gRPC call and returns its response.
    pub async fn call<M: Message>(
        &mut self,
        path: &str,
        token: Option<&str>,
        district: Option<&str>,
        message: &M,
    ) -> Result<http::Response<h2::RecvStream>, h2::Error> {
        let mut request = http::Request::post(format!("http://localhost{path}"))
            .header("content-type", "application/grpc")
            .header("te", "trailers");
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        if let Some(district) = district {
            request = request.header(relief_auth::DISTRICT_HEADER, district);
        }
        let request = request.body(()).expect("a valid request");
        let mut send = self.send.clone().ready().await?;
        let (response, mut body) = send.send_request(request, false)?;
        body.send_data(grpc_frame(message), true)?;
        response.await
    }
}

/// A message framed as gRPC sends it: uncompressed, its length, its bytes.
pub fn grpc_frame<M: Message>(message: &M) -> Bytes {
    let encoded = message.encode_to_vec();
    let mut frame = BytesMut::with_capacity(encoded.len() + 5);
    frame.extend_from_slice(&[0]);
    frame.extend_from_slice(&u32::try_from(encoded.len()).expect("small").to_be_bytes());
    frame.extend_from_slice(&encoded);
    frame.freeze()
}

/// Reads the gRPC messages of a response body one at a time, giving the window back as it
/// reads.
#[derive(Debug)]
pub struct GrpcReader {
    body: h2::RecvStream,
    buf: BytesMut,
}

impl GrpcReader {
    pub fn new(body: h2::RecvStream) -> Self {
        Self {
            body,
            buf: BytesMut::new(),
        }
    }

    /// The next message, `Ok(None)` at the end of the body, or the stream's error.
    pub async fn next<M: Message + Default>(&mut self) -> Result<Option<M>, h2::Error> {
        loop {
            if self.buf.len() >= 5 {
                let len = u32::from_be_bytes(self.buf[1..5].try_into().expect("4 bytes")) as usize;
                if self.buf.len() >= 5 + len {
                    self.buf.advance(5);
                    let message = self.buf.split_to(len);
                    return Ok(Some(M::decode(message).expect("a valid message")));
                }
            }
            match self.body.data().await {
                Some(Ok(data)) => {
                    let _ = self.body.flow_control().release_capacity(data.len());
                    self.buf.extend_from_slice(&data);
                }
                Some(Err(e)) => return Err(e),
                None => return Ok(None),
            }
        }
    }

    /// The trailers, once the messages have been read.
    pub async fn trailers(&mut self) -> Result<Option<http::HeaderMap>, h2::Error> {
        self.body.trailers().await
    }
}
