//! Helpers for the CLI tests: temporary folders, running the binary, a tiny HTTP/1.1 client.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A folder removed when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(name: &str) -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let p = std::env::temp_dir().join(format!(
            "waymark-cli-{name}-{}-{nanos}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, text).expect("write file");
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn waymark() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_waymark"));
    c.env_remove("WAYMARK_WRITE_KEY")
        .env_remove("WAYMARK_ADMIN_KEY")
        .env_remove("WAYMARK_SIGNING_SECRET")
        .env_remove("WAYMARK_API_URL")
        .env("RUST_LOG", "warn");
    c
}

pub fn run(args: &[&str]) -> Output {
    waymark().args(args).output().expect("run waymark")
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// One HTTP/1.1 request with `Connection: close`; returns (status, body).
pub fn http(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> std::io::Result<(u16, String)> {
    http_with_headers(method, url, headers, body).map(|(status, _, body)| (status, body))
}

/// [`http`], with the answer's header lines (lowercased) too.
pub fn http_with_headers(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> std::io::Result<(u16, String, String)> {
    let rest = url.strip_prefix("http://").expect("http url");
    let (host, path) = rest
        .split_once('/')
        .map_or((rest, "/".to_string()), |(h, p)| (h, format!("/{p}")));
    let mut s = TcpStream::connect(host)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let status = raw
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    Ok((status, head.to_ascii_lowercase(), body.to_string()))
}

/// HTTP Basic credentials for a key (Segment's convention: the key as user, no password).
pub fn basic(key: &str) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let input = format!("{key}:");
    let bytes = input.as_bytes();
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    format!("Basic {out}")
}

/// A `waymark dev` data folder whose queue holds one message the engine gave up on (taken five
/// times, never acknowledged), made with the same queue `waymark dev` runs on.
pub fn data_with_a_dead_letter(dir: &TempDir) -> std::path::PathBuf {
    use std::sync::Arc;
    use waymark::clock::ManualClock;
    use waymark::local::{self, LocalQueue};
    use waymark::queue::{Message, Outbound, Queue, QueueName};

    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).expect("data folder");
    let at: jiff::Timestamp = "2026-12-01T10:00:00Z".parse().expect("time");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio");
    rt.block_on(async {
        let db = local::open(&data.join("store.redb")).expect("store");
        let q = LocalQueue::new(db, Arc::new(ManualClock::new(at)))
            .with_lease(jiff::SignedDuration::from_secs(1));
        let wake = Message::Wake {
            user_id: "ann".into(),
            journey: "welcome".into(),
            enrollment: "welcome:ann:1".into(),
            seq: 1,
            at,
        };
        q.send(
            QueueName::Steps,
            &[Outbound {
                message: wake,
                delay_secs: 0,
            }],
        )
        .await
        .expect("send");
        for i in 0..6 {
            q.take_due(at + jiff::SignedDuration::from_secs(i * 10))
                .await
                .expect("take");
        }
        assert_eq!(q.dead_letters().expect("dead letters").len(), 1);
    });
    data
}

/// `waymark dead-letters --data DATA`, which must succeed: its lines, each parsed as JSON.
pub fn dead_letter_lines(data: &Path) -> Vec<serde_json::Value> {
    let out = run(&["dead-letters", "--data", &data.display().to_string()]);
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

/// A running `waymark dev`, killed when dropped.
pub struct Dev {
    pub child: Child,
    pub url: String,
    /// What it printed so far (on stdout and stderr), line by line.
    pub printed: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Dev {
    pub fn printed(&self) -> Vec<String> {
        self.printed.lock().map(|l| l.clone()).unwrap_or_default()
    }
}

impl Drop for Dev {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `waymark dev` on `journeys` and `data` at 3600× speed on a free port, once it has
/// printed the URL it listens at.
pub fn start(journeys: &Path, data: &Path) -> Dev {
    start_with_env(journeys, data, &[])
}

/// [`start`], with these environment variables set for it (`WAYMARK_SECRET_<NAME>`).
pub fn start_with_env(journeys: &Path, data: &Path, env: &[(&str, &str)]) -> Dev {
    let mut child = waymark()
        .args(["dev", "--port", "0", "--speed", "3600", "--journeys"])
        .arg(journeys)
        .arg("--data")
        .arg(data)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start waymark dev");
    let stdout = child.stdout.take().expect("stdout");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = mpsc::channel();
    let printed = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let keep = printed.clone();
    // Keep reading so the pipe never fills; hand over the URL line, keep every line.
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(url) = line.trim().strip_prefix("API") {
                let _ = tx.send(url.trim().to_string());
            }
            if let Ok(mut l) = keep.lock() {
                l.push(line);
            }
        }
    });
    // Its errors too (a file's problems), shown as they come as well.
    let keep = printed.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            eprintln!("{line}");
            if let Ok(mut l) = keep.lock() {
                l.push(line);
            }
        }
    });
    let url = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("waymark dev printed its URL");
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    Dev {
        child,
        url,
        printed,
    }
}

/// Waits until `dev` has printed a line holding `said` (at most 15 s).
pub fn wait_for(dev: &Dev, said: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !dev.printed().iter().any(|l| l.contains(said)) {
        assert!(Instant::now() < deadline, "{said}: {:#?}", dev.printed());
        std::thread::sleep(Duration::from_millis(100));
    }
}
