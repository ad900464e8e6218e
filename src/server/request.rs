//! What a handler sees of a request, and the [`Handler`] trait itself.

use std::fmt;
use std::ops::Deref;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use amiquip::{AmqpProperties, AmqpValue, Delivery, FieldTable};

use crate::wire::{self, HeaderValue, RemoteError, TraceParent, TRACEPARENT_HEADER};

/// Serves one request: its [`Request`] in, the reply body out, or an error reply.
///
/// Implemented for closures, so a service can be a one-liner:
///
/// ```
/// use fib_rpc::{Handler, RemoteError, Request};
///
/// let shout = |request: &Request| -> Result<Vec<u8>, RemoteError> {
///     Ok(request.body().to_ascii_uppercase())
/// };
/// assert_eq!(shout.handle(&Request::new("hi")).unwrap(), b"HI");
/// ```
///
/// A handler may panic; the panic becomes an `internal` error reply and the worker goes on.
/// Handlers run on the server's worker threads, several at once, hence `Send + Sync`.
pub trait Handler: Send + Sync + 'static {
    /// Computes the reply to `request`.
    fn handle(&self, request: &Request) -> Result<Vec<u8>, RemoteError>;

    /// Computes the reply to `request` as the server publishes it: what the server calls. By
    /// default [`handle`](Self::handle)'s reply. A handler that keeps its replies (a cache)
    /// overrides it to return a [`ReplyBody::shared`] body, which the server publishes
    /// without copying it.
    fn reply(&self, request: &Request) -> Result<ReplyBody, RemoteError> {
        self.handle(request).map(ReplyBody::from)
    }
}

/// A reply body as the server publishes it: bytes the handler hands over, or bytes it keeps
/// and shares (a cached result), which the server reads in place.
///
/// ```
/// use fib_rpc::ReplyBody;
/// use std::sync::Arc;
///
/// let kept = Arc::new(b"832040".to_vec());
/// let shared = ReplyBody::shared(Arc::clone(&kept));
/// assert_eq!(&*shared, b"832040");
/// assert_eq!(&*ReplyBody::from(b"832040".to_vec()), &*shared);
/// assert_eq!(shared.into_vec(), *kept); // a copy: the bytes are still kept
/// ```
#[derive(Clone)]
pub struct ReplyBody(Bytes);

#[derive(Clone)]
enum Bytes {
    Owned(Vec<u8>),
    Shared(Arc<dyn AsRef<[u8]> + Send + Sync>),
}

impl ReplyBody {
    /// A body that shares `bytes` with whoever else holds them.
    pub fn shared<T: AsRef<[u8]> + Send + Sync + 'static>(bytes: Arc<T>) -> Self {
        ReplyBody(Bytes::Shared(bytes))
    }

    /// The bytes, as a vector: the body's own, or a copy of shared ones.
    pub fn into_vec(self) -> Vec<u8> {
        match self.0 {
            Bytes::Owned(bytes) => bytes,
            Bytes::Shared(bytes) => (*bytes).as_ref().to_vec(),
        }
    }
}

impl From<Vec<u8>> for ReplyBody {
    fn from(bytes: Vec<u8>) -> Self {
        ReplyBody(Bytes::Owned(bytes))
    }
}

impl From<String> for ReplyBody {
    fn from(text: String) -> Self {
        ReplyBody(Bytes::Owned(text.into_bytes()))
    }
}

impl Deref for ReplyBody {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match &self.0 {
            Bytes::Owned(bytes) => bytes,
            Bytes::Shared(bytes) => (**bytes).as_ref(),
        }
    }
}

impl fmt::Debug for ReplyBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let how = match self.0 {
            Bytes::Owned(_) => "owned",
            Bytes::Shared(_) => "shared",
        };
        write!(f, "ReplyBody({how} {})", wire::preview(self))
    }
}

impl<F> Handler for F
where
    F: Fn(&Request) -> Result<Vec<u8>, RemoteError> + Send + Sync + 'static,
{
    fn handle(&self, request: &Request) -> Result<Vec<u8>, RemoteError> {
        self(request)
    }
}

/// One request as a handler sees it: the body, and what the caller sent with it.
///
/// The caller's deadline comes from the request's
/// [`DEADLINE_HEADER`](crate::DEADLINE_HEADER) (the caller's wall clock), converted to this
/// machine's monotonic clock when the request arrives, so a handler that calls another service
/// can pass the time left on:
///
/// ```no_run
/// use fib_rpc::{ClientOptions, RemoteError, Request, RpcClient};
/// use std::time::{Duration, Instant};
///
/// let upstream = RpcClient::connect_with(
///     "amqp://guest:guest@localhost:5672/%2f",
///     ClientOptions::default().queue("spelling"),
/// )?;
/// let handler = move |req: &Request| -> Result<Vec<u8>, RemoteError> {
///     // Our caller's deadline is upstream's too (or 5 s for callers that sent none).
///     let deadline = req.deadline().unwrap_or_else(|| Instant::now() + Duration::from_secs(5));
///     upstream
///         .call_deadline(req.body(), deadline)
///         .map_err(|err| RemoteError::internal(format!("spelling service: {err}")))
/// };
/// # let _ = handler;
/// # Ok::<(), fib_rpc::Error>(())
/// ```
///
/// [`Request::new`] builds one, for testing a handler without a broker.
pub struct Request {
    body: Vec<u8>,
    properties: AmqpProperties,
    deadline: Option<Instant>,
    /// How long ago the deadline passed when the request arrived, read from the wall clocks
    /// (exact even where the monotonic clock cannot reach that far back).
    late_by: Option<Duration>,
    redelivered: bool,
}

impl Request {
    /// A request with this body and nothing else: no deadline, no headers, not redelivered.
    ///
    /// ```
    /// use fib_rpc::Request;
    /// use std::time::{Duration, Instant};
    ///
    /// let deadline = Instant::now() + Duration::from_secs(1);
    /// let request = Request::new("30").with_deadline(deadline);
    /// assert_eq!(request.body(), b"30");
    /// assert_eq!(request.deadline(), Some(deadline));
    /// assert!(!request.redelivered());
    /// ```
    pub fn new(body: impl Into<Vec<u8>>) -> Self {
        Request {
            body: body.into(),
            properties: AmqpProperties::default(),
            deadline: None,
            late_by: None,
            redelivered: false,
        }
    }

    /// Sets the caller's deadline.
    pub fn with_deadline(mut self, deadline: Instant) -> Self {
        self.deadline = Some(deadline);
        self
    }

    /// Adds a header.
    ///
    /// ```
    /// use fib_rpc::{HeaderValue, Request};
    ///
    /// let request = Request::new("x").with_header("tenant", HeaderValue::Text("acme".into()));
    /// assert_eq!(request.header("tenant").as_ref().and_then(HeaderValue::as_str), Some("acme"));
    /// assert_eq!(request.header("missing"), None);
    /// ```
    pub fn with_header(mut self, name: impl Into<String>, value: HeaderValue) -> Self {
        let mut headers = self.properties.headers().clone().unwrap_or_default();
        headers.insert(name.into(), value.to_amqp());
        self.properties = self.properties.with_headers(headers);
        self
    }

    /// Sets the correlation id.
    pub fn with_correlation_id(mut self, id: impl Into<String>) -> Self {
        self.properties = self.properties.with_correlation_id(id.into());
        self
    }

    /// The request body, as the caller sent it.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// When the caller stops waiting, on this machine's monotonic clock; `None` when the
    /// caller sent no deadline (the tutorial's client does not). May already have passed by
    /// up to the server's [`deadline_grace`](crate::ServerOptions::deadline_grace).
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// The time left until [`deadline`](Self::deadline), zero once it has passed.
    pub fn remaining(&self) -> Option<Duration> {
        self.deadline
            .map(|deadline| deadline.saturating_duration_since(Instant::now()))
    }

    /// The header called `name`, if the request carries it.
    pub fn header(&self, name: &str) -> Option<HeaderValue> {
        self.header_table()?.get(name).map(HeaderValue::from_amqp)
    }

    /// Every header the request carries, by name.
    pub fn headers(&self) -> impl Iterator<Item = (&str, HeaderValue)> + '_ {
        self.header_table()
            .into_iter()
            .flatten()
            .map(|(name, value)| (name.as_str(), HeaderValue::from_amqp(value)))
    }

    /// The caller's W3C trace context ([`TRACEPARENT_HEADER`](crate::TRACEPARENT_HEADER)),
    /// when the request carries a valid one; see [`CallOptions::traceparent`](crate::CallOptions::traceparent).
    ///
    /// ```
    /// use fib_rpc::{HeaderValue, Request, TRACEPARENT_HEADER};
    ///
    /// let text = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    /// let request = Request::new("42").with_header(TRACEPARENT_HEADER, HeaderValue::Text(text.into()));
    /// assert_eq!(request.traceparent().unwrap().to_string(), text);
    /// assert_eq!(Request::new("42").traceparent(), None);
    /// ```
    pub fn traceparent(&self) -> Option<TraceParent> {
        match self.header_table()?.get(TRACEPARENT_HEADER)? {
            AmqpValue::LongString(text) => text.parse().ok(),
            _ => None,
        }
    }

    /// The request's `correlation_id`, which its reply carries back.
    pub fn correlation_id(&self) -> Option<&str> {
        self.properties.correlation_id().as_deref()
    }

    /// Where the reply goes (`reply_to`).
    pub fn reply_to(&self) -> Option<&str> {
        self.properties.reply_to().as_deref()
    }

    /// True when the broker delivered this request before, to this server or another, which
    /// did not acknowledge it (it died, or lost its connection): the handler may have run on
    /// it already.
    pub fn redelivered(&self) -> bool {
        self.redelivered
    }

    /// Takes the body and properties out of a delivery (the worker keeps the rest, to ack
    /// it), reading the deadline with the two clocks read at the same moment.
    pub(crate) fn from_delivery(
        delivery: &mut Delivery,
        wall_now: SystemTime,
        now: Instant,
    ) -> Self {
        let properties = std::mem::take(&mut delivery.properties);
        let deadline = wire::request::local_deadline(properties.headers().as_ref(), wall_now, now);
        Request {
            body: std::mem::take(&mut delivery.body),
            properties,
            deadline: deadline.map(|deadline| deadline.at),
            late_by: deadline.and_then(|deadline| deadline.late_by),
            redelivered: delivery.redelivered,
        }
    }

    /// The request as log lines name it: its body (cut short), correlation id and trace
    /// context, e.g. `request "42" (correlation_id "7f…", traceparent 00-…-01)`.
    pub(crate) fn describe(&self) -> Described<'_> {
        Described(self)
    }

    /// How long ago the caller's deadline had passed when the request arrived, if it had.
    pub(crate) fn late_by(&self) -> Option<Duration> {
        self.late_by
    }

    fn header_table(&self) -> Option<&FieldTable> {
        self.properties.headers().as_ref()
    }
}

/// See [`Request::describe`].
pub(crate) struct Described<'a>(&'a Request);

impl fmt::Display for Described<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let request = self.0;
        write!(f, "request {}", wire::preview(request.body()))?;
        match request.correlation_id() {
            Some(id) => write!(f, " (correlation_id {id:?}")?,
            None => write!(f, " (no correlation_id")?,
        }
        if let Some(traceparent) = request.traceparent() {
            write!(f, ", traceparent {traceparent}")?;
        }
        write!(f, ")")
    }
}

impl fmt::Debug for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Request")
            .field("body", &wire::preview(&self.body))
            .field("correlation_id", &self.correlation_id())
            .field("deadline", &self.deadline)
            .field("redelivered", &self.redelivered)
            .finish_non_exhaustive()
    }
}
