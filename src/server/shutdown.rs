//! Graceful shutdown: the one signal every open stream of the server hears, a way to wait until
//! they have all stopped, and the process signals (SIGTERM, SIGINT) that start it.
//!
//! `serve` owns the [`Shutdown`]. When it begins, the transport stops accepting connections and
//! sends HTTP/2 GOAWAY on the open ones; every `Sync` and `GetEntries` stream ends at once with
//! [`shutting_down`] (`UNAVAILABLE`), while unary calls in flight run to their answer. The
//! stream tasks each hold a [`Listener`]; [`Shutdown::drained`] returns once every one is gone.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::sync::watch;
use tokio_stream::Stream;
use tonic::Status;

/// What a stream ended by the shutdown says: the client resumes from its cursor, here after a
/// restart or at another server. `coalition sync` recognises this message.
pub const SHUTTING_DOWN: &str =
    "the hub is shutting down; resume from your cursor (here or at another server)";

/// The status that ends every open stream when the hub shuts down.
pub fn shutting_down() -> Status {
    Status::unavailable(SHUTTING_DOWN)
}

/// The server's shutdown: begun once, heard by every [`Listener`].
#[derive(Debug)]
pub struct Shutdown {
    begun: watch::Sender<bool>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Self::new()
    }
}

impl Shutdown {
    /// A shutdown not yet begun.
    pub fn new() -> Self {
        Shutdown {
            begun: watch::Sender::new(false),
        }
    }

    /// A listener: a task that holds one hears the shutdown, and [`Shutdown::drained`] waits
    /// for it to be dropped.
    pub fn listener(&self) -> Listener {
        Listener {
            begun: self.begun.subscribe(),
        }
    }

    /// Begins the shutdown (idempotent).
    pub fn begin(&self) {
        self.begun.send_replace(true);
    }

    /// Waits until every listener is gone: every stream task has stopped.
    pub async fn drained(&self) {
        self.begun.closed().await;
    }
}

/// A task's view of the [`Shutdown`]. Cheap to clone; hold it for as long as the task runs.
#[derive(Clone, Debug)]
pub struct Listener {
    begun: watch::Receiver<bool>,
}

impl Listener {
    /// Whether the shutdown has begun.
    pub fn is_shutting_down(&self) -> bool {
        *self.begun.borrow()
    }

    /// Completes once the shutdown has begun (at once if it already has, or if the
    /// [`Shutdown`] is gone).
    pub async fn begun(&mut self) {
        let _ = self.begun.wait_for(|begun| *begun).await;
    }

    /// `stream`, ended with [`shutting_down`] as soon as the shutdown begins, whatever it
    /// still holds. The wrapped stream and this listener are dropped then.
    pub fn end_stream<S, T>(self, stream: S) -> EndOnShutdown<S>
    where
        S: Stream<Item = Result<T, Status>> + Unpin,
    {
        let mut waker = self.clone();
        EndOnShutdown {
            open: Some(Open {
                stream,
                listener: self,
                begun: Box::pin(async move { waker.begun().await }),
            }),
        }
    }
}

/// A response stream that ends with `UNAVAILABLE` when the hub shuts down
/// ([`Listener::end_stream`]).
pub struct EndOnShutdown<S> {
    /// `None` once ended.
    open: Option<Open<S>>,
}

struct Open<S> {
    stream: S,
    /// Read at every poll: the task feeding `stream` may see the shutdown, stop and close the
    /// stream before `begun` is woken, and the stream must not then end as if complete.
    listener: Listener,
    /// Wakes the stream when the shutdown begins.
    begun: Pin<Box<dyn Future<Output = ()> + Send>>,
}

impl<S, T> Stream for EndOnShutdown<S>
where
    S: Stream<Item = Result<T, Status>> + Unpin,
{
    type Item = Result<T, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let Some(open) = self.open.as_mut() else {
            return Poll::Ready(None);
        };
        // The shutdown first: a stream with messages still queued ends all the same.
        let woken = open.begun.as_mut().poll(cx).is_ready();
        if woken || open.listener.is_shutting_down() {
            self.open = None;
            return Poll::Ready(Some(Err(shutting_down())));
        }
        let next = Pin::new(&mut open.stream).poll_next(cx);
        if let Poll::Ready(None) = next {
            // Ended meanwhile, by a feeder that saw the shutdown first?
            let status = open.listener.is_shutting_down().then(shutting_down);
            self.open = None;
            return Poll::Ready(status.map(Err));
        }
        next
    }
}

/// The process signals that stop `coalition serve`: SIGTERM (what service managers send) and
/// SIGINT (Ctrl-C); elsewhere than Unix, Ctrl-C only. Installed when made, so that a signal
/// arriving afterwards never takes the default action (killing the process undrained).
pub struct Signals {
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
}

impl Signals {
    /// Starts listening for the stop signals.
    pub fn install() -> std::io::Result<Signals> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Signals {
                terminate: signal(SignalKind::terminate())?,
                interrupt: signal(SignalKind::interrupt())?,
            })
        }
        #[cfg(not(unix))]
        {
            Ok(Signals {})
        }
    }

    /// The next stop signal received.
    pub async fn recv(&mut self) -> StopSignal {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.terminate.recv() => StopSignal::Terminate,
                _ = self.interrupt.recv() => StopSignal::Interrupt,
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            StopSignal::Interrupt
        }
    }
}

/// A signal that stops the hub.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopSignal {
    /// SIGTERM.
    Terminate,
    /// SIGINT (Ctrl-C).
    Interrupt,
}

impl StopSignal {
    /// The exit code of a process this signal stopped without draining: 128 + the signal
    /// number, as a shell reports it.
    pub fn exit_code(self) -> u8 {
        match self {
            StopSignal::Terminate => 128 + 15,
            StopSignal::Interrupt => 128 + 2,
        }
    }
}

impl std::fmt::Display for StopSignal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            StopSignal::Terminate => "SIGTERM",
            StopSignal::Interrupt => "SIGINT",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_stream::StreamExt;

    #[tokio::test]
    async fn a_stream_ends_with_unavailable_once_the_shutdown_begins() {
        let shutdown = Shutdown::new();
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<u32, Status>>(4);
        let mut stream = shutdown
            .listener()
            .end_stream(tokio_stream::wrappers::ReceiverStream::new(rx));
        tx.send(Ok(1)).await.expect("send");
        assert_eq!(stream.next().await.map(|r| r.ok()), Some(Some(1)));
        tx.send(Ok(2)).await.expect("send");
        shutdown.begin();
        let end = stream.next().await.expect("a final status");
        let status = end.expect_err("UNAVAILABLE");
        assert_eq!(status.code(), tonic::Code::Unavailable);
        assert_eq!(status.message(), SHUTTING_DOWN);
        assert!(stream.next().await.is_none(), "nothing after the status");
        assert!(tx.is_closed(), "the wrapped stream is dropped");
        drop(stream);
        tokio::time::timeout(std::time::Duration::from_secs(5), shutdown.drained())
            .await
            .expect("drained once every listener is gone");
    }

    #[tokio::test]
    async fn drained_waits_for_every_listener() {
        let shutdown = Shutdown::new();
        let mut listener = shutdown.listener();
        let task = tokio::spawn(async move { listener.begun().await });
        shutdown.begin();
        task.await.expect("the task heard the shutdown");
        tokio::time::timeout(std::time::Duration::from_secs(5), shutdown.drained())
            .await
            .expect("drained");
    }
}
