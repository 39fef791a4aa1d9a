//! The gRPC server metrics of the usual conventions, from one tower layer around every
//! service: `grpc_server_started_total`, `grpc_server_handled_total` (by code) and the
//! `grpc_server_handling_seconds` histogram, labelled by `grpc_service` and `grpc_method`.
//!
//! A call is handled when its status is known: the `grpc-status` header of a trailers-only
//! answer, else the response trailers once the last message is sent (a stream is timed to its
//! end). A response dropped before its status (the client went away) counts as `Cancelled`.
//! Only the methods this hub serves become label values; any other path is `unknown`, so a
//! client cannot grow the label set.

use http_body::{Body, Frame};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};
use std::time::Instant;
use tonic::Code;

/// The layer: wrap the server's routes once (`Server::builder().layer(GrpcMetricsLayer)`).
#[derive(Clone, Copy, Debug, Default)]
pub struct GrpcMetricsLayer;

impl<S> tower::Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetrics<S>;
    fn layer(&self, inner: S) -> Self::Service {
        GrpcMetrics { inner }
    }
}

/// The service the layer builds.
#[derive(Clone, Debug)]
pub struct GrpcMetrics<S> {
    inner: S,
}

/// A method's labels: `(grpc_service, grpc_method)`.
type Labels = (&'static str, &'static str);

const UNKNOWN: Labels = ("unknown", "unknown");

/// Every method this hub serves, by its HTTP/2 path (`/package.Service/Method`): the hub's own
/// services, health, and reflection v1 and v1alpha.
fn methods() -> &'static HashMap<String, Labels> {
    static METHODS: OnceLock<HashMap<String, Labels>> = OnceLock::new();
    METHODS.get_or_init(|| {
        use prost::Message;
        let sets = [
            crate::pb::FILE_DESCRIPTOR_SET,
            tonic_health::pb::FILE_DESCRIPTOR_SET,
            tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
            tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
        ];
        let mut methods = HashMap::new();
        for set in sets {
            // Compiled into the binary: a set that does not decode only loses its labels.
            let Ok(set) = prost_types::FileDescriptorSet::decode(set) else {
                continue;
            };
            for file in set.file {
                for service in &file.service {
                    let full = match file.package() {
                        "" => service.name().to_owned(),
                        package => format!("{package}.{}", service.name()),
                    };
                    // Built once per process; a few dozen short strings.
                    let service_label: &'static str = Box::leak(full.clone().into_boxed_str());
                    for method in &service.method {
                        let name: &'static str =
                            Box::leak(method.name().to_owned().into_boxed_str());
                        methods.insert(format!("/{full}/{name}"), (service_label, name));
                    }
                }
            }
        }
        methods
    })
}

fn labels_of(path: &str) -> Labels {
    methods().get(path).copied().unwrap_or(UNKNOWN)
}

/// The conventional name of a status code (`OK`, `InvalidArgument`, …).
fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "Canceled",
        Code::Unknown => "Unknown",
        Code::InvalidArgument => "InvalidArgument",
        Code::DeadlineExceeded => "DeadlineExceeded",
        Code::NotFound => "NotFound",
        Code::AlreadyExists => "AlreadyExists",
        Code::PermissionDenied => "PermissionDenied",
        Code::ResourceExhausted => "ResourceExhausted",
        Code::FailedPrecondition => "FailedPrecondition",
        Code::Aborted => "Aborted",
        Code::OutOfRange => "OutOfRange",
        Code::Unimplemented => "Unimplemented",
        Code::Internal => "Internal",
        Code::Unavailable => "Unavailable",
        Code::DataLoss => "DataLoss",
        Code::Unauthenticated => "Unauthenticated",
    }
}

fn status_in(headers: &http::HeaderMap) -> Option<Code> {
    headers
        .get("grpc-status")
        .map(|v| Code::from_bytes(v.as_bytes()))
}

/// One call in progress; records `handled` and its duration once.
struct Call {
    labels: Labels,
    start: Instant,
    done: bool,
}

impl Call {
    fn start(labels: Labels) -> Call {
        metrics::counter!("grpc_server_started_total", "grpc_service" => labels.0, "grpc_method" => labels.1)
            .increment(1);
        Call {
            labels,
            start: Instant::now(),
            done: false,
        }
    }

    fn finish(&mut self, code: Code) {
        if std::mem::replace(&mut self.done, true) {
            return;
        }
        let (service, method) = self.labels;
        metrics::counter!("grpc_server_handled_total", "grpc_service" => service, "grpc_method" => method, "grpc_code" => code_name(code))
            .increment(1);
        metrics::histogram!("grpc_server_handling_seconds", "grpc_service" => service, "grpc_method" => method)
            .record(self.start.elapsed().as_secs_f64());
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        // The response went away before its status: the client cancelled, or the connection
        // broke.
        self.finish(Code::Cancelled);
    }
}

impl<S, B, RB> tower::Service<http::Request<B>> for GrpcMetrics<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<RB>>,
    S::Future: Send + 'static,
    RB: Body + Unpin,
{
    type Response = http::Response<MeteredBody<RB>>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let mut call = Call::start(labels_of(request.uri().path()));
        let answer = self.inner.call(request);
        Box::pin(async move {
            let response = match answer.await {
                Ok(response) => response,
                Err(e) => {
                    call.finish(Code::Unknown);
                    return Err(e);
                }
            };
            // A trailers-only answer (every refusal) carries its status in the headers.
            if let Some(code) = status_in(response.headers()) {
                call.finish(code);
            }
            Ok(response.map(|inner| MeteredBody { inner, call }))
        })
    }
}

/// A response body that records its call as handled when the trailers pass.
pub struct MeteredBody<B> {
    inner: B,
    call: Call,
}

impl<B: Body + Unpin> Body for MeteredBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(code) = frame.trailers_ref().and_then(status_in) {
                    this.call.finish(code);
                }
            }
            Poll::Ready(Some(Err(_))) => this.call.finish(Code::Unknown),
            Poll::Ready(None) => this.call.finish(Code::Unknown),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_served_methods_become_labels() {
        assert_eq!(
            labels_of("/coalition.v1.Hub/Submit"),
            ("coalition.v1.Hub", "Submit")
        );
        assert_eq!(
            labels_of("/grpc.health.v1.Health/Check"),
            ("grpc.health.v1.Health", "Check")
        );
        assert_eq!(
            labels_of("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"),
            (
                "grpc.reflection.v1alpha.ServerReflection",
                "ServerReflectionInfo"
            )
        );
        assert_eq!(labels_of("/coalition.v1.Hub/NoSuchMethod"), UNKNOWN);
        assert_eq!(labels_of("/x/y"), UNKNOWN);
        assert_eq!(labels_of(""), UNKNOWN);
    }
}
