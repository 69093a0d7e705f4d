//! A decision log service for tests: a real HTTP server on 127.0.0.1:0 (on
//! its own thread and runtime) that accepts OPA's uploads (`POST`, gzip'd
//! JSON arrays of events), records each request, and can be told to fail.

use std::io::Read;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use serde_json::Value;

use crate::support::spawn_test_server;

/// One upload as received.
#[derive(Clone, Debug)]
pub struct Upload {
    pub method: String,
    pub path: String,
    pub content_type: Option<String>,
    pub content_encoding: Option<String>,
    pub authorization: Option<String>,
    /// The gunzipped body, parsed (`Value::Null` if it was not gzip'd JSON).
    pub events: Value,
    /// What the service answered.
    pub status: u16,
}

#[derive(Default)]
struct State {
    failing: bool,
    uploads: Vec<Upload>,
}

pub struct LogService {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
}

impl LogService {
    pub fn start() -> LogService {
        let state = Arc::new(Mutex::new(State::default()));
        let shared = state.clone();
        let addr = spawn_test_server(None, move |req| receive(shared.clone(), req));
        LogService { addr, state }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `true`: answer every upload with 500.
    pub fn set_failing(&self, failing: bool) {
        self.state.lock().unwrap().failing = failing;
    }

    pub fn uploads(&self) -> Vec<Upload> {
        self.state.lock().unwrap().uploads.clone()
    }

    /// The events of every accepted upload, in order.
    pub fn accepted_events(&self) -> Vec<Value> {
        self.uploads()
            .into_iter()
            .filter(|u| u.status == 200)
            .flat_map(|u| u.events.as_array().cloned().unwrap_or_default())
            .collect()
    }

    /// Waits (10 s at most) until `pred` holds for the uploads so far.
    pub fn wait_for(&self, what: &str, pred: impl Fn(&[Upload]) -> bool) -> Vec<Upload> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let uploads = self.uploads();
            if pred(&uploads) {
                return uploads;
            }
            assert!(Instant::now() < deadline, "{what}: got {uploads:#?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

async fn receive(state: Arc<Mutex<State>>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let (method, path) = (req.method().to_string(), req.uri().path().to_string());
    let (content_type, content_encoding, authorization) = (
        header("content-type"),
        header("content-encoding"),
        header("authorization"),
    );
    let body = req.into_body().collect().await.unwrap().to_bytes();
    let mut text = String::new();
    let events = match flate2::read::GzDecoder::new(&body[..]).read_to_string(&mut text) {
        Ok(_) => serde_json::from_str(&text).unwrap_or(Value::Null),
        Err(_) => Value::Null,
    };
    let mut state = state.lock().unwrap();
    let status = if state.failing {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::OK
    };
    state.uploads.push(Upload {
        method,
        path,
        content_type,
        content_encoding,
        authorization,
        events,
        status: status.as_u16(),
    });
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = status;
    response
}
