//! Test helpers: a fault-injecting OpenAI-compatible server on raw TCP (so it can reset
//! connections and cut bodies short), and small problem-set writers.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the server does on one attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Fault {
    ServerError,
    Reset,
    RateLimited,
    Truncated,
    Slow,
}

const FAULTS: [Fault; 5] = [
    Fault::ServerError,
    Fault::Reset,
    Fault::RateLimited,
    Fault::Truncated,
    Fault::Slow,
];

/// Server behaviour.
#[derive(Clone, Debug)]
pub struct FaultPlan {
    /// Inject faults (each request key fails its first 0–3 attempts).
    pub faults: bool,
    /// Delay before every answer.
    pub delay: Duration,
    /// How long a `Slow` fault stalls (longer than the client's timeout).
    pub slow: Duration,
}

impl Default for FaultPlan {
    fn default() -> Self {
        FaultPlan {
            faults: true,
            delay: Duration::ZERO,
            slow: Duration::from_secs(3),
        }
    }
}

/// Counters the tests assert on.
#[derive(Default)]
pub struct Stats {
    pub attempts: Mutex<HashMap<String, u32>>,
    pub requests: AtomicUsize,
    pub faults: Mutex<HashMap<String, usize>>,
    pub successes: AtomicUsize,
    pub bad_requests: AtomicUsize,
}

pub struct FaultServer {
    pub addr: SocketAddr,
    pub stats: Arc<Stats>,
    _rt: tokio::runtime::Runtime,
}

impl FaultServer {
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }
    pub fn fault_count(&self, f: Fault) -> usize {
        *self
            .stats
            .faults
            .lock()
            .unwrap()
            .get(&format!("{f:?}"))
            .unwrap_or(&0)
    }
}

fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100000001b3)
    })
}

/// Starts the server on its own runtime (so sync tests and other runtimes can use it).
pub fn start(plan: FaultPlan) -> FaultServer {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let stats = Arc::new(Stats::default());
    let listener = rt.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
    let addr = listener.local_addr().unwrap();
    let st = stats.clone();
    rt.spawn(async move {
        loop {
            let Ok((sock, _)) = listener.accept().await else {
                continue;
            };
            let (st, plan) = (st.clone(), plan.clone());
            tokio::spawn(async move {
                let _ = handle(sock, st, plan).await;
            });
        }
    });
    FaultServer {
        addr,
        stats,
        _rt: rt,
    }
}

async fn read_request(sock: &mut TcpStream) -> std::io::Result<Option<Value>> {
    let mut buf = Vec::new();
    let mut tmp = [0u8; 8192];
    let head_end = loop {
        let n = sock.read(&mut tmp).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&tmp[..n]);
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + len {
        let n = sock.read(&mut tmp).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&tmp[..n]);
    }
    Ok(serde_json::from_slice(&buf[head_end..head_end + len]).ok())
}

async fn write_response(
    sock: &mut TcpStream,
    status: &str,
    extra: &str,
    body: &str,
) -> std::io::Result<()> {
    let msg = format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n{extra}\r\n{body}",
        body.len()
    );
    sock.write_all(msg.as_bytes()).await?;
    sock.shutdown().await
}

fn prompt_text(req: &Value) -> String {
    if let Some(m) = req.get("messages").and_then(Value::as_array) {
        m.iter()
            .filter_map(|m| m.get("content").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n")
    } else {
        req.get("prompt").map(|p| p.to_string()).unwrap_or_default()
    }
}

async fn handle(mut sock: TcpStream, st: Arc<Stats>, plan: FaultPlan) -> std::io::Result<()> {
    let Some(req) = read_request(&mut sock).await? else {
        return Ok(());
    };
    st.requests.fetch_add(1, Ordering::SeqCst);
    let prompt = prompt_text(&req);
    let seed = req.get("seed").and_then(Value::as_u64).unwrap_or(0);
    let key = format!("{prompt}#{seed}");
    let attempt = {
        let mut a = st.attempts.lock().unwrap();
        let e = a.entry(key.clone()).or_insert(0);
        *e += 1;
        *e
    };
    if prompt.contains("BADREQUEST") {
        st.bad_requests.fetch_add(1, Ordering::SeqCst);
        let body = json!({"error": {"message": "prompt rejected: BADREQUEST", "type": "invalid_request_error", "param": "messages", "code": null}});
        return write_response(&mut sock, "400 Bad Request", "", &body.to_string()).await;
    }
    let h = fnv(&key);
    let n_faults = if plan.faults { (h % 4) as u32 } else { 0 };
    let stream = req.get("stream").and_then(Value::as_bool).unwrap_or(false);
    if attempt <= n_faults {
        let fault = FAULTS[((h >> 8) as usize + attempt as usize) % FAULTS.len()];
        *st.faults
            .lock()
            .unwrap()
            .entry(format!("{fault:?}"))
            .or_insert(0) += 1;
        return match fault {
            Fault::ServerError => {
                write_response(
                    &mut sock,
                    "503 Service Unavailable",
                    "",
                    r#"{"error":{"message":"overloaded"}}"#,
                )
                .await
            }
            Fault::RateLimited => {
                write_response(
                    &mut sock,
                    "429 Too Many Requests",
                    "retry-after: 0.05\r\n",
                    r#"{"error":{"message":"slow down"}}"#,
                )
                .await
            }
            Fault::Reset => {
                // Close without answering: the client sees the connection drop mid-request.
                // SO_LINGER 0 turns the close into a TCP RST (blocking on drop is moot then).
                #[allow(deprecated)]
                let _ = sock.set_linger(Some(Duration::ZERO));
                drop(sock);
                Ok(())
            }
            Fault::Truncated => {
                if stream {
                    let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n";
                    let chunk = json!({"choices": [{"index": 0, "delta": {"content": "partial"}, "finish_reason": null}]});
                    sock.write_all(format!("{head}data: {chunk}\n\n").as_bytes())
                        .await?;
                    sock.shutdown().await
                } else {
                    let body = r#"{"id":"x","choices":[{"index":0,"message":{"role":"assistant","content":"cut"#;
                    let msg = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len() + 100
                    );
                    sock.write_all(msg.as_bytes()).await?;
                    sock.shutdown().await
                }
            }
            Fault::Slow => {
                tokio::time::sleep(plan.slow).await;
                write_response(&mut sock, "200 OK", "", &ok_body(&key, h)).await
            }
        };
    }
    if !plan.delay.is_zero() {
        tokio::time::sleep(plan.delay).await;
    }
    st.successes.fetch_add(1, Ordering::SeqCst);
    if stream {
        let head =
            "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n";
        let mut out = String::from(head);
        let ev = |v: Value| format!("data: {v}\n\n");
        out += &ev(
            json!({"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": null}]}),
        );
        out += &ev(
            json!({"choices": [{"index": 0, "delta": {"reasoning_content": "thinking about "}, "finish_reason": null}]}),
        );
        out += &ev(
            json!({"choices": [{"index": 0, "delta": {"reasoning_content": format!("{seed}")}, "finish_reason": null}]}),
        );
        out += &ev(
            json!({"choices": [{"index": 0, "delta": {"content": "The answer is "}, "finish_reason": null}]}),
        );
        out += &ev(
            json!({"choices": [{"index": 0, "delta": {"content": "\\boxed{42}."}, "finish_reason": "stop"}]}),
        );
        out += &ev(json!({"choices": [], "usage": {"prompt_tokens": 11, "completion_tokens": 13}}));
        out += "data: [DONE]\n\n";
        sock.write_all(out.as_bytes()).await?;
        return sock.shutdown().await;
    }
    write_response(&mut sock, "200 OK", "", &ok_body(&key, h)).await
}

/// A successful body; half the keys use `reasoning_content`, half `<think>` tags.
fn ok_body(key: &str, h: u64) -> String {
    let seed = key.rsplit('#').next().unwrap_or("0");
    let message = if h.is_multiple_of(2) {
        json!({"role": "assistant", "content": "The answer is \\boxed{42}.", "reasoning_content": format!("thinking about {seed}")})
    } else {
        json!({"role": "assistant", "content": format!("<think>\nthinking about {seed}\n</think>\n\nThe answer is \\boxed{{42}}.")})
    };
    json!({"id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": "fault-teacher",
           "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
           "usage": {"prompt_tokens": 11, "completion_tokens": 13, "total_tokens": 24}})
    .to_string()
}

/// Writes `n` problems: answers alternate 42 (graded correct) and 7 (incorrect); problem
/// `bad` (if any) asks the server for a 400.
pub fn write_problems(path: &Path, n: usize, bad: Option<usize>) {
    let mut f = std::fs::File::create(path).unwrap();
    for i in 0..n {
        let text = if Some(i) == bad {
            format!("BADREQUEST problem {i}")
        } else {
            format!("What is problem {i}?")
        };
        let answer = if i % 2 == 0 { "42" } else { "7" };
        writeln!(
            f,
            "{}",
            json!({"id": format!("p{i}"), "problem": text, "answer": answer, "source": "test"})
        )
        .unwrap();
    }
}

/// A minimal config text for an openai run.
pub fn config_toml(
    problems: &Path,
    out: &Path,
    base_urls: &[String],
    samples: u32,
    extra: &str,
) -> String {
    let urls: Vec<String> = base_urls.iter().map(|u| format!("\"{u}\"")).collect();
    format!(
        "problems = {:?}\nout_dir = {:?}\n[sampling]\nsamples = {samples}\nmax_tokens = 64\n[run]\nconcurrency = 8\nshard_size = 5\nprogress = false\n[openai]\nbase_urls = [{}]\nmodel = \"fault-teacher\"\ntimeout_s = 0.5\nbackoff_initial_ms = 5\nbackoff_max_ms = 50\nmax_retries = 8\n{extra}",
        problems.display().to_string(),
        out.display().to_string(),
        urls.join(", ")
    )
}
