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

use std::collections::VecDeque;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};
use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{CONTENT_ENCODING, CONTENT_TYPE};
use hyper::Request;

use crate::bundle::configured::{service_endpoint, ServiceEndpoint};
use crate::bundle::download::{backoff, join_url, random_delay};
use crate::bundle::fetch::{chain, client, with_credentials, HttpClient};
use crate::bundle::status::PluginError;
use crate::opa_config::OpaConfig;

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
        upload_limit: size(reporting.upload_size_limit_bytes).unwrap_or(32768),
        buffer_limit: match reporting.buffer_type.as_deref() {
            Some("event") => {
                BufferLimit::Events(size(reporting.buffer_size_limit_events).unwrap_or(10000))
            }
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

/// An upload that did not go through: what is left goes back to the buffer.
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
        }
    }

    /// Buffers one event (JSON), dropping the oldest when full.
    pub(super) fn push(&self, event: Vec<u8>) {
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

    fn client(&self) -> Result<HttpClient<Full<Bytes>>> {
        let service = &self.config.service;
        client(service.ca_cert.as_deref(), service.system_ca_required)
            .map_err(|e| anyhow!("decision log uploads: {e:#}"))
    }

    /// The periodic trigger: a random delay between the bounds after a
    /// success (an empty buffer is one), OPA's backoff after a failure.
    async fn run(&self, client: HttpClient<Full<Bytes>>) {
        let mut retries: u32 = 0;
        loop {
            let delay = match self.upload_once(&client).await {
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
            tokio::time::sleep(delay).await;
        }
    }

    /// Sends everything buffered; records the outcome in the status.
    async fn upload_once(&self, client: &HttpClient<Full<Bytes>>) -> Result<(), ()> {
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
        if events.is_empty() {
            *lock(&self.status) = UploadStatus::default();
            return Ok(());
        }
        let events = Vec::from(events);
        let encoded = encode(&events, self.config.upload_limit);
        if !encoded.too_large.is_empty() {
            tracing::warn!(
                dropped = encoded.too_large.len(),
                limit = self.config.upload_limit,
                "decision log events larger than upload_size_limit_bytes were dropped"
            );
        }
        for chunk in &encoded.chunks {
            if let Err(failed) = self.post(client, chunk.body.clone()).await {
                tracing::warn!(error = %failed.message, "decision log upload failed");
                self.requeue(&events, &encoded, chunk.start);
                *lock(&self.status) = UploadStatus {
                    code: Some("decision_log_error"),
                    message: Some(failed.message),
                    http_code: failed.http_code,
                };
                return Err(());
            }
        }
        tracing::debug!(
            events = events.len(),
            chunks = encoded.chunks.len(),
            "decision logs uploaded"
        );
        *lock(&self.status) = UploadStatus::default();
        Ok(())
    }

    /// Puts the events of the chunk starting at `from` and of every later
    /// chunk back in front of what was buffered meanwhile.
    fn requeue(&self, events: &[Vec<u8>], encoded: &Encoded, from: usize) {
        let mut buffer = lock(&self.buffer);
        let newer = std::mem::take(&mut buffer.events);
        buffer.bytes = 0;
        for (i, event) in events.iter().enumerate().skip(from) {
            if !encoded.too_large.contains(&i) {
                buffer.push_back(event.clone());
            }
        }
        for event in newer {
            buffer.push_back(event);
        }
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

/// One request body: the gzip'd JSON array of `events[start..end]`.
#[derive(Debug)]
struct Chunk {
    start: usize,
    body: Bytes,
}

#[derive(Debug)]
struct Encoded {
    chunks: Vec<Chunk>,
    /// Events that do not fit in `limit` compressed bytes on their own.
    too_large: Vec<usize>,
}

/// Splits `events` into gzip'd JSON arrays of at most `limit` compressed
/// bytes, in order. Chunks are cut by an uncompressed budget that grows
/// while chunks come out well under the limit and halves a chunk that comes
/// out over it (OPA's encoder adapts its uncompressed limit the same way).
fn encode(events: &[Vec<u8>], limit: usize) -> Encoded {
    let mut out = Encoded {
        chunks: Vec::new(),
        too_large: Vec::new(),
    };
    let mut budget = limit.saturating_mul(4);
    let mut start = 0;
    while start < events.len() {
        let mut end = start + 1;
        let mut size = events[start].len() + 2;
        while end < events.len() && size + events[end].len() < budget {
            size += events[end].len() + 1;
            end += 1;
        }
        loop {
            let body = gzip_array(&events[start..end]);
            if body.len() <= limit {
                if body.len() < limit / 10 * 9 && end < events.len() {
                    budget = budget.saturating_add(budget / 2);
                }
                out.chunks.push(Chunk {
                    start,
                    body: Bytes::from(body),
                });
                start = end;
                break;
            }
            if end - start == 1 {
                out.too_large.push(start);
                start = end;
                break;
            }
            end = start + (end - start) / 2;
            budget = (budget / 2).max(limit);
        }
    }
    out
}

fn gzip_array(events: &[Vec<u8>]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    // Writes to a Vec cannot fail.
    let _ = gz.write_all(b"[");
    for (i, event) in events.iter().enumerate() {
        if i > 0 {
            let _ = gz.write_all(b",");
        }
        let _ = gz.write_all(event);
    }
    let _ = gz.write_all(b"]");
    gz.finish().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gunzip(body: &[u8]) -> serde_json::Value {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(body), &mut text).unwrap();
        serde_json::from_str(&text).unwrap()
    }

    fn event(i: usize, pad: usize) -> Vec<u8> {
        // Pseudo-random padding (xorshift), so that gzip cannot squeeze it away.
        let mut x = (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let noise: String = (0..pad)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                char::from(b'a' + (x % 26) as u8)
            })
            .collect();
        format!(r#"{{"decision_id":"{i}","input":"{noise}"}}"#).into_bytes()
    }

    #[test]
    fn chunks_stay_under_the_limit_and_keep_every_event_in_order() {
        let events: Vec<Vec<u8>> = (0..500).map(|i| event(i, 200)).collect();
        let encoded = encode(&events, 4096);
        assert!(encoded.too_large.is_empty());
        assert!(encoded.chunks.len() > 1, "{}", encoded.chunks.len());
        let mut ids = Vec::new();
        let mut next = 0;
        for chunk in &encoded.chunks {
            assert!(chunk.body.len() <= 4096, "{}", chunk.body.len());
            assert_eq!(chunk.start, next);
            let array = gunzip(&chunk.body);
            next += array.as_array().unwrap().len();
            for e in array.as_array().unwrap() {
                ids.push(e["decision_id"].as_str().unwrap().parse::<usize>().unwrap());
            }
        }
        assert_eq!(ids, (0..500).collect::<Vec<_>>());
    }

    #[test]
    fn an_event_too_large_for_any_chunk_is_dropped_alone() {
        let events = vec![event(0, 10), event(1, 5000), event(2, 10)];
        let encoded = encode(&events, 500);
        assert_eq!(encoded.too_large, vec![1]);
        let ids: Vec<String> = encoded
            .chunks
            .iter()
            .flat_map(|c| gunzip(&c.body).as_array().unwrap().clone())
            .map(|e| e["decision_id"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(ids, ["0", "2"]);
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
