//! Decision log uploads, as OPA's `decision_logs` plugin sends them: events
//! are buffered, and every `min_delay_seconds` to `max_delay_seconds`
//! (uniformly random) the buffer is sent to `<service url><resource>` as
//! `POST`s of gzip'd JSON arrays (`Content-Type: application/json`,
//! `Content-Encoding: gzip`), each at most `upload_size_limit_bytes`
//! compressed. A 2xx is a success. On a failure the chunk and those after it
//! go back to the front of the buffer and are retried after OPA's backoff
//! (at once, then 100 ms x 1.6^n up to the max delay); an event that does not
//! fit in a chunk on its own is dropped, as OPA drops it. The buffer is
//! bounded like OPA's: by bytes (`buffer_type: size`, unbounded unless
//! `buffer_size_limit_bytes` is set) or by events (`buffer_type: event`,
//! `buffer_size_limit_events`, 10000 by default); when full, the oldest
//! events go. On shutdown the buffer is flushed within the grace period.
//! How a request body is cut from the buffer is `upload/chunk.rs`.

mod chunk;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{CONTENT_ENCODING, CONTENT_TYPE};
use hyper::Request;

use crate::bundle::configured::{service_endpoint, ServiceEndpoint};
use crate::bundle::download::{backoff, join_url, random_delay};
use crate::bundle::fetch::{chain, client, with_credentials, HttpClient};
use crate::bundle::status::PluginError;
use crate::opa_config::{
    OpaConfig, DEFAULT_BUFFER_SIZE_LIMIT_EVENTS, DEFAULT_UPLOAD_SIZE_LIMIT_BYTES,
};
use chunk::{next_chunk, Next};

/// Everything the uploader needs, resolved from the configuration.
#[derive(Clone, Debug)]
pub struct UploadConfig {
    pub service: ServiceEndpoint,
    /// The service URL joined with the resource.
    pub url: String,
    pub min_delay: Duration,
    pub max_delay: Duration,
    /// Compressed bytes per request.
    pub upload_limit: usize,
    pub buffer_limit: BufferLimit,
}

/// How much the buffer holds before it drops its oldest events.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BufferLimit {
    /// Bytes of events (`None`: unbounded, OPA's default).
    Bytes(Option<usize>),
    Events(usize),
}

/// The upload settings of `config`, or `None` when decision logs do not go
/// to a service. Call after [`crate::opa_config::load`], which checks the
/// section and fills in OPA's defaults.
pub fn configured_upload(config: &OpaConfig) -> Result<Option<UploadConfig>> {
    let Some(logs) = &config.decision_logs else {
        return Ok(None);
    };
    let Some(name) = &logs.service else {
        return Ok(None);
    };
    let service =
        service_endpoint(config, name).map_err(|e| anyhow!("decision_logs.service: {e:#}"))?;
    let reporting = &logs.reporting;
    let seconds = |s: Option<u64>| Duration::from_secs(s.unwrap_or_default());
    let size = |n: Option<i64>| n.and_then(|n| usize::try_from(n).ok());
    Ok(Some(UploadConfig {
        url: join_url(&service.url, logs.resource.as_deref().unwrap_or("/logs")),
        service,
        min_delay: seconds(reporting.min_delay_seconds),
        max_delay: seconds(reporting.max_delay_seconds),
        upload_limit: size(reporting.upload_size_limit_bytes)
            .or(size(Some(DEFAULT_UPLOAD_SIZE_LIMIT_BYTES)))
            .unwrap_or_default(),
        buffer_limit: match reporting.buffer_type.as_deref() {
            Some("event") => BufferLimit::Events(
                size(reporting.buffer_size_limit_events)
                    .or(size(Some(DEFAULT_BUFFER_SIZE_LIMIT_EVENTS)))
                    .unwrap_or_default(),
            ),
            _ => BufferLimit::Bytes(size(reporting.buffer_size_limit_bytes)),
        },
    }))
}

/// The last upload's outcome, as OPA's status reports it: empty after a
/// success.
pub type UploadStatus = PluginError;

pub(super) struct Upload {
    config: UploadConfig,
    buffer: Mutex<Buffer>,
    status: Mutex<UploadStatus>,
    /// Held for a whole upload: the periodic one and the shutdown flush take
    /// turns.
    turn: tokio::sync::Mutex<()>,
    /// Built by [`Upload::spawn`]; the shutdown flush reuses it (and its
    /// open connections).
    client: OnceLock<HttpClient<Full<Bytes>>>,
}

/// The shortest pause between two uploads.
const MIN_PAUSE: Duration = Duration::from_millis(100);

/// Events taken for an upload and not sent yet; dropped (after a failure,
/// or with the upload cancelled), it puts them back in the buffer.
struct Unsent<'a> {
    upload: &'a Upload,
    events: VecDeque<Vec<u8>>,
}

impl Drop for Unsent<'_> {
    fn drop(&mut self) {
        if !self.events.is_empty() {
            self.upload.requeue(std::mem::take(&mut self.events));
        }
    }
}

#[derive(Default)]
struct Buffer {
    events: VecDeque<Vec<u8>>,
    bytes: usize,
    /// Events dropped (buffer full) since the last upload.
    dropped: u64,
}

impl Buffer {
    fn push_back(&mut self, event: Vec<u8>) {
        self.bytes += event.len();
        self.events.push_back(event);
    }

    /// Drops the oldest events while over `limit`.
    fn shed(&mut self, limit: BufferLimit) {
        loop {
            let over = match limit {
                BufferLimit::Bytes(Some(max)) => self.bytes > max,
                BufferLimit::Bytes(None) => false,
                BufferLimit::Events(max) => self.events.len() > max,
            };
            let Some(oldest) = over.then(|| self.events.pop_front()).flatten() else {
                return;
            };
            self.bytes -= oldest.len();
            self.dropped += 1;
        }
    }
}

/// Why a request did not go through.
struct Failed {
    message: String,
    http_code: Option<u16>,
}

impl Upload {
    pub(super) fn new(config: UploadConfig) -> Upload {
        Upload {
            config,
            buffer: Mutex::new(Buffer::default()),
            status: Mutex::new(UploadStatus::default()),
            turn: tokio::sync::Mutex::new(()),
            client: OnceLock::new(),
        }
    }

    /// Buffers one event (JSON), dropping the oldest when full.
    pub(super) fn push(&self, event: Vec<u8>) {
        if event.is_empty() {
            return; // not rendered: nothing to send
        }
        let mut buffer = lock(&self.buffer);
        buffer.push_back(event);
        buffer.shed(self.config.buffer_limit);
    }

    pub(super) fn status(&self) -> UploadStatus {
        lock(&self.status).clone()
    }

    pub(super) fn spawn(self: Arc<Self>) -> Result<()> {
        let client = self.client()?;
        tokio::spawn(async move { self.run(client).await });
        Ok(())
    }

    /// The uploads' HTTP client, built once.
    fn client(&self) -> Result<HttpClient<Full<Bytes>>> {
        if let Some(client) = self.client.get() {
            return Ok(client.clone());
        }
        let service = &self.config.service;
        let built = client(service.ca_cert.as_deref(), service.system_ca_required)
            .map_err(|e| anyhow!("decision log uploads: {e:#}"))?;
        Ok(self.client.get_or_init(|| built).clone())
    }

    /// The periodic trigger: a random delay between the bounds after a
    /// success (an empty buffer is one), OPA's backoff after a failure. The
    /// first upload comes after the first delay (OPA uploads at once, but
    /// its buffer is empty then too).
    async fn run(&self, client: HttpClient<Full<Bytes>>) {
        let mut retries: u32 = 0;
        let mut delay = random_delay(self.config.min_delay, self.config.max_delay);
        loop {
            // Zero delays are accepted, as by OPA; a floor keeps them from
            // spinning on the buffer or hammering a failing service.
            tokio::time::sleep(delay.max(MIN_PAUSE)).await;
            delay = match self.upload_once(&client).await {
                Ok(()) => {
                    retries = 0;
                    random_delay(self.config.min_delay, self.config.max_delay)
                }
                Err(()) => {
                    let delay = backoff(retries, self.config.max_delay);
                    retries = retries.saturating_add(1);
                    delay
                }
            };
        }
    }

    /// Sends everything buffered, a chunk at a time; records the outcome in
    /// the status. One upload runs at a time (the periodic one or the
    /// shutdown flush), so events are sent in order; whatever is not sent
    /// when it fails, or when it is cancelled, goes back to the buffer.
    async fn upload_once(&self, client: &HttpClient<Full<Bytes>>) -> Result<(), ()> {
        let _turn = self.turn.lock().await;
        let (events, dropped) = {
            let mut buffer = lock(&self.buffer);
            buffer.bytes = 0;
            (
                std::mem::take(&mut buffer.events),
                std::mem::take(&mut buffer.dropped),
            )
        };
        if dropped > 0 {
            tracing::warn!(
                dropped,
                "decision log buffer full: the oldest events were dropped"
            );
        }
        let mut unsent = Unsent {
            upload: self,
            events,
        };
        let (mut sent, mut too_large) = (0, 0);
        let mut budget = self.config.upload_limit.saturating_mul(4);
        while !unsent.events.is_empty() {
            let (body, count) = match next_chunk(
                unsent.events.make_contiguous(),
                self.config.upload_limit,
                &mut budget,
            ) {
                Next::Chunk { body, events } => (body, events),
                Next::TooLarge => {
                    unsent.events.pop_front();
                    too_large += 1;
                    continue;
                }
            };
            if let Err(failed) = self.post(client, Bytes::from(body)).await {
                tracing::warn!(error = %failed.message, "decision log upload failed");
                *lock(&self.status) = UploadStatus {
                    code: Some("decision_log_error"),
                    message: Some(failed.message),
                    http_code: failed.http_code,
                };
                return Err(());
            }
            unsent.events.drain(..count);
            sent += count;
        }
        if too_large > 0 {
            tracing::warn!(
                dropped = too_large,
                limit = self.config.upload_limit,
                "decision log events larger than upload_size_limit_bytes were dropped"
            );
        }
        if sent > 0 {
            tracing::debug!(events = sent, "decision logs uploaded");
        }
        *lock(&self.status) = UploadStatus::default();
        Ok(())
    }

    /// Puts `events` (older) back in front of what was buffered meanwhile.
    fn requeue(&self, mut events: VecDeque<Vec<u8>>) {
        let mut buffer = lock(&self.buffer);
        events.append(&mut buffer.events);
        buffer.bytes = events.iter().map(Vec::len).sum();
        buffer.events = events;
        buffer.shed(self.config.buffer_limit);
    }

    async fn post(&self, client: &HttpClient<Full<Bytes>>, body: Bytes) -> Result<(), Failed> {
        let failed = |message: String| Failed {
            message,
            http_code: None,
        };
        let service = &self.config.service;
        let request = with_credentials(
            Request::post(&self.config.url),
            &service.headers,
            service.bearer.as_ref(),
        )
        .and_then(|b| {
            b.header(CONTENT_TYPE, "application/json")
                .header(CONTENT_ENCODING, "gzip")
                .body(Full::new(body))
                .map_err(|e| anyhow!("bad decision log URL {}: {e}", self.config.url))
        })
        .map_err(|e| failed(format!("{e:#}")))?;
        let response = match service.response_header_timeout {
            Some(limit) => tokio::time::timeout(limit, client.request(request))
                .await
                .map_err(|_| failed(format!("log upload failed: no response within {limit:?}")))?,
            None => client.request(request).await,
        }
        .map_err(|e| failed(format!("log upload failed: {}", chain(&e))))?;
        let status = response.status();
        // Read (a bounded amount of) the answer, so the connection is reused.
        let _ = tokio::time::timeout(
            Duration::from_secs(10),
            http_body_util::Limited::new(response.into_body(), 64 << 10).collect(),
        )
        .await;
        if status.is_success() {
            return Ok(());
        }
        Err(Failed {
            message: format!(
                "log upload failed, server replied with HTTP {} {}",
                status.as_u16(),
                status.canonical_reason().unwrap_or_default()
            ),
            http_code: Some(status.as_u16()),
        })
    }

    /// Uploads until the buffer is empty or `grace` has passed, once a
    /// second after a failure.
    pub(super) async fn flush(&self, grace: Duration) {
        let Ok(client) = self.client() else { return };
        let deadline = Instant::now() + grace;
        loop {
            let pending = tokio::time::timeout_at(deadline.into(), self.upload_once(&client)).await;
            match pending {
                Ok(Ok(())) if lock(&self.buffer).events.is_empty() => return,
                Ok(_) if Instant::now() + Duration::from_secs(1) < deadline => {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                _ => {
                    tracing::warn!("Plugin stopped with decisions possibly still in buffer.");
                    return;
                }
            }
        }
    }
}

/// A poisoned lock still holds a usable buffer: logging never panics twice.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsent_events_go_back_in_front_of_newer_ones() {
        let upload = Upload::new(UploadConfig {
            service: ServiceEndpoint {
                name: "logs".into(),
                url: "http://127.0.0.1:9".into(),
                headers: Vec::new(),
                bearer: None,
                response_header_timeout: None,
                ca_cert: None,
                system_ca_required: false,
            },
            url: "http://127.0.0.1:9/logs".into(),
            min_delay: Duration::ZERO,
            max_delay: Duration::ZERO,
            upload_limit: 1000,
            buffer_limit: BufferLimit::Events(3),
        });
        let contents = |u: &Upload| {
            let buffer = lock(&u.buffer);
            let events: Vec<Vec<u8>> = buffer.events.iter().cloned().collect();
            (events, buffer.bytes)
        };
        upload.push(b"1".to_vec());
        upload.push(b"22".to_vec());
        upload.push(Vec::new()); // nothing rendered: not buffered
        let taken = std::mem::take(&mut lock(&upload.buffer).events);
        lock(&upload.buffer).bytes = 0;
        upload.push(b"333".to_vec());
        // A failed (or cancelled) upload drops its unsent events.
        drop(Unsent {
            upload: &upload,
            events: taken,
        });
        assert_eq!(
            contents(&upload),
            (vec![b"1".to_vec(), b"22".to_vec(), b"333".to_vec()], 6)
        );
        upload.push(b"4444".to_vec());
        assert_eq!(
            contents(&upload),
            (vec![b"22".to_vec(), b"333".to_vec(), b"4444".to_vec()], 9)
        );
    }

    #[test]
    fn a_full_buffer_drops_its_oldest_events() {
        let mut buffer = Buffer::default();
        for i in 0..5 {
            buffer.push_back(vec![b'x'; 10 + i]);
            buffer.shed(BufferLimit::Events(3));
        }
        assert_eq!(buffer.events.len(), 3);
        assert_eq!(buffer.events[0].len(), 12);
        assert_eq!(buffer.dropped, 2);
        assert_eq!(buffer.bytes, 12 + 13 + 14);
        buffer.shed(BufferLimit::Bytes(Some(27)));
        assert_eq!(buffer.events.len(), 2);
        assert_eq!(buffer.bytes, 27);
        buffer.shed(BufferLimit::Bytes(None));
        assert_eq!(buffer.events.len(), 2);
    }
}
