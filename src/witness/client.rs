//! Calling a witness's `add-checkpoint` (c2sp.org/tlog-witness) over HTTP/1.1: what a log, or a
//! test, sends, and the answer classified by its status code.
//!
//! Bounded: connecting and the whole exchange within [`TIMEOUT`], answers at most
//! [`MAX_ANSWER_BYTES`].

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use thiserror::Error;

use super::{AddCheckpoint, SIZE_CONTENT_TYPE};

/// Time allowed for connecting, sending and reading the answer.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// Largest answer read (a few cosignature lines are ~150 bytes each).
pub const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// A witness's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// 200: the cosignature lines (each ending with a newline).
    Cosigned(String),
    /// 409: the witness last cosigned this size; send a proof from it.
    Conflict {
        /// The size in the answer's body.
        latest: u64,
    },
    /// Any other status, with the body (escaped, for a person to read).
    Refused {
        /// The HTTP status.
        status: u16,
        /// The body.
        message: String,
    },
}

/// The witness could not be asked.
#[derive(Debug, Error)]
pub enum ClientError {
    /// Connecting, sending or reading failed.
    #[error("witness {addr}: {reason}")]
    Transport {
        /// The witness's address.
        addr: String,
        /// What failed.
        reason: String,
    },
    /// A 409 answer without a size body.
    #[error("witness {addr}: a 409 answer whose body is not a size: {body:?}")]
    BadConflict {
        /// The witness's address.
        addr: String,
        /// The body.
        body: String,
    },
}

/// Sends `request` to the witness at `addr` (`host:port`, plain HTTP).
pub async fn add_checkpoint(addr: &str, request: &AddCheckpoint) -> Result<Answer, ClientError> {
    let transport = |reason: String| ClientError::Transport {
        addr: addr.to_owned(),
        reason,
    };
    let exchange = async {
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| transport(format!("connect: {e}")))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| transport(format!("handshake: {e}")))?;
        let driver = tokio::spawn(connection);
        let http_request = http::Request::post("/add-checkpoint")
            .header(http::header::HOST, addr)
            .header(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")
            .body(Full::new(Bytes::from(request.encode())))
            .map_err(|e| transport(format!("request: {e}")))?;
        let response = sender
            .send_request(http_request)
            .await
            .map_err(|e| transport(format!("send: {e}")))?;
        let status = response.status().as_u16();
        let is_size = response
            .headers()
            .get(http::header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes() == SIZE_CONTENT_TYPE.as_bytes());
        let body = Limited::new(response.into_body(), MAX_ANSWER_BYTES)
            .collect()
            .await
            .map_err(|e| transport(format!("answer body: {e}")))?
            .to_bytes();
        driver.abort();
        let body = String::from_utf8_lossy(&body).into_owned();
        Ok::<_, ClientError>(match status {
            200 => Answer::Cosigned(body),
            409 => {
                let latest = body
                    .strip_suffix('\n')
                    .filter(|_| is_size)
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| ClientError::BadConflict {
                        addr: addr.to_owned(),
                        body: crate::text::escape_control(&body).into_owned(),
                    })?;
                Answer::Conflict { latest }
            }
            status => Answer::Refused {
                status,
                message: crate::text::escape_control(body.trim_end()).into_owned(),
            },
        })
    };
    tokio::time::timeout(TIMEOUT, exchange)
        .await
        .map_err(|_| transport(format!("no answer within {} s", TIMEOUT.as_secs())))?
}
