//! The local outbox: a provider that delivers messages as JSON lines (to a file for `waymark dev`,
//! to memory for `waymark simulate`) instead of to SES and SNS. Each line carries its send's
//! ledger key, and a send whose key the outbox holds already is not written again: a crash
//! between writing a line and recording the send (which `waymark dev`'s batched disk commits make
//! wider) then cannot put the message in the outbox twice. For `waymark dev` a line first waits
//! in the store beside the writes that decided it ([`Staging`]), and a batch's lines go out
//! together once that store's commit is on disk ([`OutboxSender::flush`]); it never writes a line
//! whose decision a crash could still undo.

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::clock::Clock;
use crate::engine::{Content, Outgoing};
use crate::journey::Channel;
use crate::profile::Address;
use crate::provider::{Receipt, SendError, Sender};
use crate::secrets::{shown, LocalSecrets, WebhookSecrets};
use crate::webhook::webhook_headers_sent;

/// One delivered message, as the outbox file holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutboxLine {
    /// The send's ledger key: `{enrollment}#{step}#{visit}`.
    pub id: String,
    pub at: Timestamp,
    pub channel: Channel,
    pub user_id: Arc<str>,
    pub journey: Arc<str>,
    pub step: Arc<str>,
    pub to: Address,
    pub content: Arc<Content>,
    /// The send's `locales` key the message was written in, when the user's locale chose one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locale: Option<Arc<str>>,
    /// The id of the store whose send this is (`waymark dev`'s, see [`OutboxSender::for_store`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store: Option<Arc<str>>,
}

/// Where outbox lines go.
#[derive(Clone)]
pub enum Sink {
    File(PathBuf),
    Memory(Arc<Mutex<Vec<OutboxLine>>>),
}

pub struct OutboxSender {
    sink: Sink,
    clock: Arc<dyn Clock>,
    /// Print a one-line summary of each message (for `waymark dev`'s console).
    echo: bool,
    /// What the outbox holds, read from the sink at the first send.
    written: Mutex<Option<Written>>,
    /// The store the sends are this one's: only its lines count as written already.
    store: Option<Arc<str>>,
    /// Where lines wait for the store's durable commit before they are written
    /// ([`OutboxSender::staged`]).
    staging: Option<Arc<dyn Staging>>,
    /// The webhook secrets a call must have values for, as the deployed sender's (the line
    /// shows each as `{{ secrets.NAME }}`, never its value).
    secrets: Arc<dyn WebhookSecrets>,
}

/// Where `waymark dev` and `waymark simulate` take a webhook secret's value from.
const LOCAL_SECRETS_WHERE: &str = "set it in the environment of `waymark dev` or `waymark simulate` as `WAYMARK_SECRET_<NAME>` (`WAYMARK_SECRET_API_KEY` for `{{ secrets.API_KEY }}`)";

/// Where a sender's lines wait until the store whose writes decided them has committed those
/// writes to disk ([`OutboxSender::staged`]): a table of that store (`waymark dev`'s, see
/// `local::StagedLines`), so that a line waits, and survives a crash, exactly when the writes
/// before it do.
pub trait Staging: Send + Sync {
    /// Keeps `line` among the waiting ones, as one of the store's writes that its next durable
    /// commit makes durable (a crash before that commit loses it with them).
    fn stage(&self, line: &OutboxLine) -> Result<(), String>;
    /// The lines waiting, once a durable commit stamped `now` (for a restart's clock to start
    /// there at least) has made them and every write before them durable. No commit, and
    /// `None`, when none waits.
    fn commit(&self, now: Timestamp) -> Result<Option<Waiting>, String>;
    /// Lets go of the lines up to place `through`, written to the outbox (made durable by the
    /// store's next commit: one kept by a crash is found in the outbox and not written again).
    fn release(&self, through: u64) -> Result<(), String>;
}

/// The lines waiting in a [`Staging`], in the order they were staged, and the place of the last.
#[derive(Debug, Default)]
pub struct Waiting {
    pub lines: Vec<OutboxLine>,
    pub through: u64,
}

/// How the outbox file ends, as read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// With a newline (or empty): the next line is appended as it is.
    Whole,
    /// With a whole line but no newline after it: the next line starts with one.
    Unended,
    /// With the start of a line a crash cut short in the middle of a write, after `len` bytes
    /// of whole lines: the file is cut back to them before the next write, so that every line
    /// of the outbox is a whole message once (the cut message's line is written again whole,
    /// its send not being in the outbox).
    Torn { len: u64 },
}

/// The ids of the lines in the outbox, and how it ends ([`End`]).
struct Written {
    /// Hashed with foldhash (seeded per process), several times faster than std's SipHash on
    /// these short keys.
    /// With when each line says it was written (`None` for a line without a readable `at`).
    ids: HashMap<String, Option<Timestamp>, foldhash::fast::RandomState>,
    end: End,
    /// The lines staged by this process and not written yet, with their times: a send asked
    /// for again meanwhile is one of them.
    staged: HashMap<String, Timestamp, foldhash::fast::RandomState>,
}

impl OutboxSender {
    pub fn new(sink: Sink, clock: Arc<dyn Clock>, echo: bool) -> Self {
        OutboxSender {
            sink,
            clock,
            echo,
            written: Mutex::new(None),
            store: None,
            staging: None,
            secrets: Arc::new(LocalSecrets::from_env()),
        }
    }

    /// A sender whose webhook calls take their secrets from `secrets` (by default the
    /// process's `WAYMARK_SECRET_<NAME>` variables, read when it is made).
    pub fn with_secrets(mut self, secrets: Arc<dyn WebhookSecrets>) -> Self {
        self.secrets = secrets;
        self
    }

    /// A sender whose lines wait in `staging` (the store that defers its writes: `waymark
    /// dev`'s engine) until [`flush`](OutboxSender::flush) commits that store to disk and
    /// writes them, a batch's lines with one commit and one flush of the outbox file. The
    /// transition that decided a send and the send's claim and record in the ledger are then on
    /// disk before the message is out. A crash that lost them would have the message that made
    /// them run again at another time, which may decide otherwise (a send now in quiet hours
    /// takes another visit number, and so another ledger key), and the send would go out a
    /// second time under the new key; a crash after the commit finds the line staged, and the
    /// next flush writes it (unless the outbox holds it already).
    pub fn staged(mut self, staging: Arc<dyn Staging>) -> Self {
        self.staging = Some(staging);
        self
    }

    /// A sender for the sends of the store `id`: its lines carry the id, and a line another
    /// store wrote (the outbox file outlived the data folder, or two engines share it) is not
    /// taken for one of its sends, whose ledger keys (`cart:ann:1#push#3`) a store started over
    /// makes again.
    pub fn for_store(mut self, id: &str) -> Self {
        self.store = Some(id.into());
        self
    }

    /// A sender that keeps lines in memory, and the handle to read them.
    pub fn memory(clock: Arc<dyn Clock>) -> (Self, Arc<Mutex<Vec<OutboxLine>>>) {
        let lines = Arc::new(Mutex::new(Vec::new()));
        (
            OutboxSender::new(Sink::Memory(lines.clone()), clock, false),
            lines,
        )
    }
}

/// The message as the deployed sender would send it: a webhook with the headers it adds
/// ([`webhook_headers_sent`]), each secret shown as `{{ secrets.NAME }}` (never its value);
/// anything else as it was rendered.
fn as_sent(content: &Arc<Content>, ledger_key: &str) -> Arc<Content> {
    match content.as_ref() {
        Content::Webhook {
            url,
            method,
            headers,
            body,
            secrets,
        } => Arc::new(Content::Webhook {
            url: shown(url, secrets).into_owned(),
            method: method.clone(),
            headers: webhook_headers_sent(headers, body.is_some(), ledger_key)
                .into_iter()
                .map(|(k, v)| (k, shown(&v, secrets).into_owned()))
                .collect(),
            body: body.as_deref().map(|b| shown(b, secrets).into_owned()),
            secrets: secrets.clone(),
        }),
        _ => content.clone(),
    }
}

/// The short human summary `waymark dev` prints for a message.
pub fn summary(line: &OutboxLine) -> String {
    let what = match line.content.as_ref() {
        Content::Email { subject, .. } => format!("subject {subject:?}"),
        Content::Sms { body, .. } => format!("{body:?}"),
        // A silent push shows nothing: what the app gets is its data.
        Content::Push {
            silent: true, data, ..
        } => format!(
            "silent, data {}",
            serde_json::to_string(data).unwrap_or_default()
        ),
        Content::Push { title, body, .. } if title.is_empty() => format!("{body:?}"),
        Content::Push { title, .. } | Content::InApp { title, .. } => format!("{title:?}"),
        Content::Webhook { method, url, .. } => format!("{method} {url}"),
    };
    let language = line
        .locale
        .as_deref()
        .map(|l| format!(" [{l}]"))
        .unwrap_or_default();
    format!(
        "{} {}{language} → user {} ({}/{}): {}",
        line.at.strftime("%Y-%m-%d %H:%M:%S"),
        line.channel,
        line.user_id,
        line.journey,
        line.step,
        what
    )
}

#[async_trait]
impl Sender for OutboxSender {
    fn wants_in_app(&self) -> bool {
        true
    }

    async fn send(&self, message: &Outgoing) -> Result<Receipt, SendError> {
        // A call whose secrets the deployed sender could not put in (one without a value, a
        // line break in a header's) does not go out here either; the values go nowhere.
        if let Content::Webhook {
            url,
            headers,
            body,
            secrets,
            ..
        } = message.content.as_ref()
        {
            crate::secrets::substitute(
                url,
                headers,
                body.as_deref(),
                secrets,
                self.secrets.as_ref(),
                LOCAL_SECRETS_WHERE,
            )
            .await?;
        }
        let id = message.ledger_key();
        let mut guard = self.written.lock().unwrap_or_else(|p| p.into_inner());
        if guard.is_none() {
            *guard = Some(self.read_sink()?);
        }
        let Some(written) = guard.as_mut() else {
            return Err(SendError::Retryable("outbox not read".into()));
        };
        let known = match written.ids.get(&id) {
            Some(sent_at) => Some(*sent_at),
            None => written.staged.get(&id).map(|at| Some(*at)),
        };
        if let Some(sent_at) = known {
            tracing::info!(id = %id, "already in the outbox; not written again");
            return Ok(Receipt {
                sent_at,
                ..Receipt::default()
            });
        }
        let at = self.clock.now();
        let line = OutboxLine {
            id: id.clone(),
            at,
            channel: message.channel,
            user_id: message.user_id.clone(),
            journey: message.journey.clone(),
            step: message.step.clone(),
            to: message.to.clone(),
            content: as_sent(&message.content, &id),
            locale: message.locale.clone(),
            store: self.store.clone(),
        };
        if let Some(staging) = &self.staging {
            staging
                .stage(&line)
                .map_err(|e| SendError::Retryable(format!("outbox line not staged: {e}")))?;
            written.staged.insert(id, at);
            return Ok(Receipt::default());
        }
        // Said on the console once written (a write that fails is retried, and said then).
        let said = self.echo.then(|| summary(&line));
        match &self.sink {
            Sink::Memory(lines) => lines.lock().unwrap_or_else(|p| p.into_inner()).push(line),
            Sink::File(path) => {
                let mut text = serde_json::to_string(&line)
                    .map_err(|e| SendError::Permanent(e.to_string()))?;
                text.push('\n');
                if let Err(e) = append(path, written.end, &text, false) {
                    // Some of it may be in the file: read what it holds again before the retry.
                    *guard = None;
                    return Err(SendError::Retryable(format!(
                        "outbox {}: {e}",
                        path.display()
                    )));
                }
                written.end = End::Whole;
            }
        }
        written.ids.insert(id, Some(at));
        if let Some(said) = said {
            // A console no one reads any more (closed, or piped to `head`) is not the engine's
            // failure: the message is in the outbox all the same.
            use std::io::Write as _;
            let _ = writeln!(std::io::stdout(), "{said}");
        }
        Ok(Receipt::default())
    }
}

/// Appends `text` (whole lines) to the outbox file at `path`, which ends as `end` says: after
/// a newline first when its last line has none, or cut back to its whole lines first when a
/// crash tore its last one. With `durable`, flushed to disk before it returns (and the folder,
/// when this write creates the file: a power cut must not take the file back).
fn append(path: &std::path::Path, end: End, text: &str, durable: bool) -> std::io::Result<()> {
    let creating = durable && !path.exists();
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    match end {
        End::Whole => {}
        End::Unended => f.write_all(b"\n")?,
        // Appends go to the file's end whatever the cursor: cutting it is enough.
        End::Torn { len } => f.set_len(len)?,
    }
    f.write_all(text.as_bytes())?;
    if durable {
        f.sync_data()?;
        if creating {
            sync_folder_of(path)?;
        }
    }
    Ok(())
}

/// Flushes the folder holding `path` to disk, so that a file just created there stays after a
/// power cut (`fsync` on the file alone keeps its data, not its name).
fn sync_folder_of(path: &std::path::Path) -> std::io::Result<()> {
    let folder = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => std::path::Path::new("."),
    };
    std::fs::File::open(folder)?.sync_all()
}

impl OutboxSender {
    /// Writes the staged lines ([`OutboxSender::staged`]): one durable commit of the store they
    /// wait in (stamped `now`), then every line the outbox does not hold yet in one write and
    /// one flush of the file to disk, then they are let go. Returns how many were written. A
    /// failure leaves them staged for the next flush; nothing to do for a sender that does not
    /// stage. `waymark dev` flushes after each batch the engine handles, before it acknowledges
    /// the batch's messages, and at start (what a crash left staged).
    pub fn flush(&self, now: Timestamp) -> Result<usize, SendError> {
        let Some(staging) = &self.staging else {
            return Ok(0);
        };
        let mut guard = self.written.lock().unwrap_or_else(|p| p.into_inner());
        let Some(Waiting {
            lines: staged,
            through,
        }) = staging
            .commit(now)
            .map_err(|e| SendError::Retryable(format!("store not durable: {e}")))?
        else {
            return Ok(0);
        };
        if guard.is_none() {
            *guard = Some(self.read_sink()?);
        }
        let Some(written) = guard.as_mut() else {
            return Err(SendError::Retryable("outbox not read".into()));
        };
        // Not the lines the outbox holds already (written before a crash let them go), nor a
        // line staged twice (asked for again after a crash, before this flush).
        let mut fresh = Vec::with_capacity(staged.len());
        let mut taken = std::collections::HashSet::<&str>::new();
        for line in &staged {
            if !written.ids.contains_key(&line.id) && taken.insert(&line.id) {
                fresh.push(line);
            }
        }
        match &self.sink {
            Sink::Memory(lines) => lines
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .extend(fresh.iter().map(|l| (*l).clone())),
            // Nothing to write: the file is left as it is.
            Sink::File(_) if fresh.is_empty() => {}
            Sink::File(path) => {
                let mut text = String::new();
                for line in &fresh {
                    text.push_str(
                        &serde_json::to_string(line)
                            .map_err(|e| SendError::Permanent(e.to_string()))?,
                    );
                    text.push('\n');
                }
                let failed = |e: std::io::Error| {
                    SendError::Retryable(format!("outbox {}: {e}", path.display()))
                };
                // Flushed to disk before the lines are let go below.
                if let Err(e) = append(path, written.end, &text, true) {
                    // Some of it may be in the file: read what it holds again before the retry.
                    *guard = None;
                    return Err(failed(e));
                }
                written.end = End::Whole;
            }
        }
        for line in &fresh {
            written.ids.insert(line.id.clone(), Some(line.at));
            if self.echo {
                // A console no one reads any more (closed, or piped to `head`) is not the
                // engine's failure: the message is in the outbox all the same.
                let _ = writeln!(std::io::stdout(), "{}", summary(line));
            }
        }
        for line in &staged {
            written.staged.remove(&line.id);
        }
        let count = fresh.len();
        // Let go once written; a failure here leaves them staged, and the next flush finds
        // them in the outbox.
        staging
            .release(through)
            .map_err(|e| SendError::Retryable(format!("outbox lines not let go: {e}")))?;
        Ok(count)
    }

    /// What the sink holds (a line that does not read, such as one cut short by a crash, has
    /// no id). A missing file holds nothing; a file that cannot be read fails the send as
    /// retryable, since taking it for empty would turn the duplicate check off. Bytes that are
    /// not UTF-8 (a crash can cut a character in two) are read as replacement characters.
    fn read_sink(&self) -> Result<Written, SendError> {
        #[derive(Deserialize)]
        struct Id {
            #[serde(default)]
            id: String,
            /// Read as any value: a line whose `at` is not a time keeps its id in the
            /// duplicate check all the same.
            #[serde(default)]
            at: Option<serde_json::Value>,
            #[serde(default)]
            store: Option<String>,
        }
        let ours = |l: &Id| match &self.store {
            Some(store) => l.store.as_deref() == Some(&**store),
            None => true,
        };
        match &self.sink {
            Sink::Memory(lines) => Ok(Written {
                ids: lines
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .iter()
                    .map(|l| (l.id.clone(), Some(l.at)))
                    .collect(),
                end: End::Whole,
                staged: Default::default(),
            }),
            Sink::File(path) => {
                let bytes = match std::fs::read(path) {
                    Ok(bytes) => bytes,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
                    Err(e) => {
                        return Err(SendError::Retryable(format!(
                            "outbox {}: {e}",
                            path.display()
                        )))
                    }
                };
                // The bytes after the last newline: a whole line whose newline a crash kept
                // from the file, or the start of one it cut short.
                let whole = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
                let last = &bytes[whole..];
                let end = if last.is_empty() {
                    End::Whole
                } else if serde_json::from_slice::<serde_json::Value>(last).is_ok() {
                    End::Unended
                } else {
                    End::Torn { len: whole as u64 }
                };
                let kept = match end {
                    End::Torn { .. } => &bytes[..whole],
                    _ => &bytes[..],
                };
                let text = String::from_utf8_lossy(kept);
                Ok(Written {
                    ids: text
                        .lines()
                        .filter_map(|l| serde_json::from_str::<Id>(l).ok())
                        .filter(ours)
                        .filter(|l| !l.id.is_empty())
                        .map(|l| {
                            let at = l.at.and_then(|a| serde_json::from_value(a).ok());
                            (l.id, at)
                        })
                        .collect(),
                    end,
                    staged: Default::default(),
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    /// A push's summary is its title; a push with a body alone, its body; the outbox line of
    /// one leaves the empty title out.
    #[test]
    fn a_push_with_a_body_alone_is_summed_up_by_its_body() {
        let line = |title: &str| OutboxLine {
            id: "welcome:ann:1#hello#1".into(),
            at: Timestamp::UNIX_EPOCH,
            channel: Channel::Push,
            user_id: "ann".into(),
            journey: "welcome".into(),
            step: "hello".into(),
            to: Address::One("tok".into()),
            content: Arc::new(Content::Push {
                title: title.into(),
                body: "On its way".into(),
                silent: false,
                data: Default::default(),
                expires: None,
            }),
            locale: None,
            store: None,
        };
        assert!(
            summary(&line("Hi")).ends_with(": \"Hi\""),
            "{}",
            summary(&line("Hi"))
        );
        let alone = line("");
        assert!(
            summary(&alone).ends_with(": \"On its way\""),
            "{}",
            summary(&alone)
        );
        let json = serde_json::to_value(&alone).unwrap_or_default();
        assert_eq!(
            json["content"],
            serde_json::json!({"kind": "push", "body": "On its way"})
        );
    }

    fn push(seq: u64) -> Outgoing {
        Outgoing {
            enrollment: "welcome:ann:1".into(),
            journey: "welcome".into(),
            version: 1,
            user_id: "ann".into(),
            step: "hello".into(),
            seq,
            channel: Channel::Push,
            to: Address::One("tok".into()),
            content: Arc::new(Content::Push {
                title: "Hi".into(),
                body: "there".into(),
                silent: false,
                data: Default::default(),
                expires: None,
            }),
            transactional: false,
            locale: None,
            timezone: None,
        }
    }

    /// Writes message 1 to a fresh outbox file, then `tail` as a crash would leave it; a new
    /// sender (the restarted server) is then asked for message 1 again and for message 2 twice.
    /// Returns the ids of the lines the file holds, and how many times message 1's id appears in
    /// it at all (a copy glued to the cut line does not read as a line of its own).
    async fn restart_after_a_cut_line(name: &str, tail: &[u8]) -> (Vec<String>, usize) {
        let (ids, first, unread) = restart_after_a_cut_line_reading(name, tail).await;
        assert!(
            unread.is_empty(),
            "every line of the outbox is a whole message: {unread:?}"
        );
        (ids, first)
    }

    /// [`restart_after_a_cut_line`], with the lines of the file that do not read as a message.
    async fn restart_after_a_cut_line_reading(
        name: &str,
        tail: &[u8],
    ) -> (Vec<String>, usize, Vec<String>) {
        let dir =
            std::env::temp_dir().join(format!("waymark-outbox-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("outbox.jsonl");
        let _ = std::fs::remove_file(&path);
        let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(Timestamp::UNIX_EPOCH));
        let first = OutboxSender::new(Sink::File(path.clone()), clock.clone(), false);
        first.send(&push(1)).await.expect("sent");
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .expect("open");
        f.write_all(tail).expect("write");
        drop(f);
        let again = OutboxSender::new(Sink::File(path.clone()), clock, false);
        again.send(&push(1)).await.expect("sent");
        again.send(&push(2)).await.expect("sent");
        again.send(&push(2)).await.expect("sent");
        let bytes = std::fs::read(&path).expect("read");
        let _ = std::fs::remove_dir_all(&dir);
        let text = String::from_utf8_lossy(&bytes);
        let ids = text
            .lines()
            .filter_map(|l| serde_json::from_str::<OutboxLine>(l).ok())
            .map(|l| l.id)
            .collect();
        let unread = text
            .lines()
            .filter(|l| serde_json::from_str::<OutboxLine>(l).is_err())
            .map(String::from)
            .collect();
        (ids, text.matches("welcome:ann:1#hello#1").count(), unread)
    }

    /// Lines staged in memory, as `local::StagedLines` keeps them in the store: what a crash
    /// before [`Staging::release`] leaves staged is written again by the next start's flush.
    #[derive(Default)]
    struct MemoryStaging {
        lines: Mutex<Vec<OutboxLine>>,
    }

    impl Staging for MemoryStaging {
        fn stage(&self, line: &OutboxLine) -> Result<(), String> {
            self.lines
                .lock()
                .map_err(|e| e.to_string())?
                .push(line.clone());
            Ok(())
        }
        fn commit(&self, _now: Timestamp) -> Result<Option<Waiting>, String> {
            let lines = self.lines.lock().map_err(|e| e.to_string())?.clone();
            let through = lines.len() as u64;
            Ok((!lines.is_empty()).then_some(Waiting { lines, through }))
        }
        fn release(&self, through: u64) -> Result<(), String> {
            let mut lines = self.lines.lock().map_err(|e| e.to_string())?;
            let through = (through as usize).min(lines.len());
            lines.drain(..through);
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_line_a_crash_tore_in_the_middle_of_a_flush_is_written_again_whole_and_once() {
        let dir = std::env::temp_dir().join(format!("waymark-outbox-torn-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("outbox.jsonl");
        let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(Timestamp::UNIX_EPOCH));
        let staging = Arc::new(MemoryStaging::default());
        let sender = || {
            OutboxSender::new(Sink::File(path.clone()), clock.clone(), false)
                .staged(staging.clone())
        };
        // given message 1 written and let go, then message 2 staged and its flush killed
        // halfway through its line (before the lines were let go)
        let first = sender();
        first.send(&push(1)).await.expect("sent");
        assert_eq!(first.flush(Timestamp::UNIX_EPOCH).expect("flush"), 1);
        first.send(&push(2)).await.expect("sent");
        let whole = std::fs::read(&path).expect("read");
        let line = serde_json::to_string(&staging.lines.lock().expect("staged")[0]).expect("json");
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .expect("open");
        f.write_all(&line.as_bytes()[..line.len() / 2])
            .expect("write");
        drop(f);
        // when the next start flushes what is staged
        let again = sender();
        assert_eq!(again.flush(Timestamp::UNIX_EPOCH).expect("flush"), 1);
        // then the torn start is gone, and each message is one whole line
        let text = std::fs::read_to_string(&path).expect("read");
        let _ = std::fs::remove_dir_all(&dir);
        assert!(text.as_bytes().starts_with(&whole), "{text}");
        let ids: Vec<String> = text
            .lines()
            .map(|l| serde_json::from_str::<OutboxLine>(l).map(|l| l.id))
            .collect::<Result<_, _>>()
            .unwrap_or_else(|e| panic!("a line that is no message ({e}): {text}"));
        assert_eq!(ids, ["welcome:ann:1#hello#1", "welcome:ann:1#hello#2"]);
    }

    #[tokio::test]
    async fn a_whole_last_line_without_its_newline_is_kept_and_the_next_goes_on_a_line_of_its_own()
    {
        // given message 1 written, then message 2's whole line without its newline: it reads as
        // a message, so it is kept (not written again), and the next line starts after it
        let line = |seq| {
            let mut l = serde_json::to_value(OutboxLine {
                id: format!("welcome:ann:1#hello#{seq}"),
                at: Timestamp::UNIX_EPOCH,
                channel: Channel::Push,
                user_id: "ann".into(),
                journey: "welcome".into(),
                step: "hello".into(),
                to: Address::One("tok".into()),
                content: Arc::new(Content::Push {
                    title: "Hi".into(),
                    body: "there".into(),
                    silent: false,
                    data: Default::default(),
                    expires: None,
                }),
                locale: None,
                store: None,
            })
            .expect("json");
            l.as_object_mut().map(|o| o.remove("store"));
            l.to_string()
        };
        let (ids, first, unread) =
            restart_after_a_cut_line_reading("unended", line(3).as_bytes()).await;
        assert_eq!(
            ids,
            [
                "welcome:ann:1#hello#1",
                "welcome:ann:1#hello#3",
                "welcome:ann:1#hello#2"
            ]
        );
        assert_eq!(first, 1);
        assert!(unread.is_empty(), "{unread:?}");
    }

    #[tokio::test]
    async fn the_console_line_names_the_language_a_message_went_out_in() {
        let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(Timestamp::UNIX_EPOCH));
        let (sender, lines) = OutboxSender::memory(clock);
        let mut spanish = push(2);
        spanish.locale = Some("es".into());
        sender.send(&push(1)).await.expect("sent");
        sender.send(&spanish).await.expect("sent");
        let said: Vec<String> = lines.lock().expect("lines").iter().map(summary).collect();
        assert_eq!(
            said,
            [
                "1970-01-01 00:00:00 push → user ann (welcome/hello): \"Hi\"",
                "1970-01-01 00:00:00 push [es] → user ann (welcome/hello): \"Hi\"",
            ]
        );
    }

    #[tokio::test]
    async fn a_send_already_in_the_outbox_file_is_not_written_again_after_a_restart() {
        // given a message written, and a line cut short by a crash; then each is in the outbox
        // once, the next line on a line of its own
        let (ids, first) = restart_after_a_cut_line("cut", b"{\"id\":\"welc").await;
        assert_eq!(ids, ["welcome:ann:1#hello#1", "welcome:ann:1#hello#2"]);
        assert_eq!(first, 1);
    }

    /// A send asked for again after a restart (written, then the crash came before it was
    /// recorded) is said to have gone out when its line was written, not now.
    #[tokio::test]
    async fn a_send_found_in_the_outbox_says_when_its_line_was_written() {
        let dir = std::env::temp_dir().join(format!("waymark-outbox-when-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("outbox.jsonl");
        let _ = std::fs::remove_file(&path);
        let written: Timestamp = "2026-12-01T10:00:00Z".parse().expect("time");
        let clock = Arc::new(ManualClock::new(written));
        let first = OutboxSender::new(Sink::File(path.clone()), clock.clone(), false);
        assert_eq!(first.send(&push(1)).await.expect("sent").sent_at, None);
        // A line whose `at` is no time (edited by hand) still names a send written.
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .expect("open");
        f.write_all(b"{\"id\":\"welcome:ann:1#hello#2\",\"at\":\"yesterday\"}\n")
            .expect("write");
        drop(f);
        clock.set("2026-12-01T10:08:00Z".parse().expect("time"));
        let again = OutboxSender::new(Sink::File(path.clone()), clock, false);
        let receipt = again.send(&push(1)).await.expect("sent");
        let odd = again.send(&push(2)).await.expect("sent");
        let text = std::fs::read_to_string(&path).expect("read");
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(receipt.sent_at, Some(written));
        assert_eq!(odd.sent_at, None);
        assert_eq!(text.lines().count(), 2, "{text}");
    }

    #[tokio::test]
    async fn a_line_cut_inside_a_character_leaves_the_duplicate_check_on() {
        // given a message written, then a crash halfway through the bytes of "→"
        let tail = &"{\"id\":\"x\",\"title\":\"→".as_bytes()[..20];
        let (ids, first) = restart_after_a_cut_line("utf8", tail).await;
        assert_eq!(ids, ["welcome:ann:1#hello#1", "welcome:ann:1#hello#2"]);
        assert_eq!(first, 1, "message 1 written once");
    }

    #[tokio::test]
    async fn a_store_started_over_is_not_kept_from_its_sends_by_an_earlier_stores_lines() {
        let dir =
            std::env::temp_dir().join(format!("waymark-outbox-stores-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("outbox.jsonl");
        // given a line written before stores were named, and one by store a
        std::fs::write(&path, "{\"id\":\"welcome:ann:1#hello#1\",\"store\":null}\n")
            .expect("write");
        let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(Timestamp::UNIX_EPOCH));
        let a = || OutboxSender::new(Sink::File(path.clone()), clock.clone(), false).for_store("a");
        a().send(&push(1)).await.expect("sent");
        // when store a restarts and sends it again, and a store b started over makes the same key
        a().send(&push(1)).await.expect("sent");
        let b = OutboxSender::new(Sink::File(path.clone()), clock.clone(), false).for_store("b");
        b.send(&push(1)).await.expect("sent");
        b.send(&push(1)).await.expect("sent");
        // then a's send is written once, and b's once, under its own store
        let text = std::fs::read_to_string(&path).expect("read");
        let _ = std::fs::remove_dir_all(&dir);
        let stores: Vec<Option<String>> = text
            .lines()
            .skip(1)
            .filter_map(|l| serde_json::from_str::<OutboxLine>(l).ok())
            .map(|l| l.store.map(|s| s.to_string()))
            .collect();
        assert_eq!(stores, [Some("a".to_string()), Some("b".to_string())]);
    }

    #[tokio::test]
    async fn an_outbox_that_cannot_be_read_fails_the_send_for_a_retry() {
        let dir = std::env::temp_dir().join(format!("waymark-outbox-dir-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        // given an outbox path that names a directory, which cannot be read as a file
        std::fs::create_dir_all(&dir).expect("dir");
        let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(Timestamp::UNIX_EPOCH));
        let sender = OutboxSender::new(Sink::File(dir.clone()), clock.clone(), false);
        // then reading it is an error, where a missing outbox reads as empty
        assert!(sender.read_sink().is_err());
        let missing = OutboxSender::new(Sink::File(dir.join("none.jsonl")), clock, false);
        assert!(missing
            .read_sink()
            .is_ok_and(|w| w.ids.is_empty() && w.end == End::Whole));
        // and a message sent is retryable rather than written unchecked
        let err = sender.send(&push(1)).await.expect_err("unreadable outbox");
        assert!(matches!(err, SendError::Retryable(_)), "{err:?}");
        // and once the path can be read (here: the directory gone, a file in its place), the
        // retry reads it then rather than remembering the failure
        std::fs::remove_dir_all(&dir).expect("rm");
        std::fs::write(&dir, "").expect("file");
        sender.send(&push(1)).await.expect("sent");
        let text = std::fs::read_to_string(&dir).expect("read");
        assert_eq!(text.lines().count(), 1);
        let _ = std::fs::remove_file(&dir);
    }

    /// The folder of an outbox file is flushed where it is named and where it is the working
    /// directory (a bare file name); a folder that is gone is an error (the flush fails and the
    /// lines stay staged), not a file left unflushed.
    #[test]
    fn the_folder_of_a_new_outbox_is_flushed_wherever_it_is() {
        let dir = std::env::temp_dir().join(format!("waymark-outbox-sync-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        assert!(sync_folder_of(&dir.join("outbox.jsonl")).is_ok());
        assert!(sync_folder_of(std::path::Path::new("outbox.jsonl")).is_ok());
        std::fs::remove_dir_all(&dir).expect("rm");
        assert!(sync_folder_of(&dir.join("outbox.jsonl")).is_err());
    }
}
