//! The `waymark dev` data folder: the store file, the outbox, the dev keys and signing secret
//! (`keys.json`, readable by its owner only), and where virtual time stopped (`clock.json`).
//! Keys given in the environment win over the file and are never written to it or printed.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use waymark::auth::{generate_key, Keys, Signer};

pub const WRITE_KEY_ENV: &str = "WAYMARK_WRITE_KEY";
pub const ADMIN_KEY_ENV: &str = "WAYMARK_ADMIN_KEY";
pub const SIGNING_SECRET_ENV: &str = "WAYMARK_SIGNING_SECRET";

pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        DataDir { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn create(&self) -> Result<()> {
        std::fs::create_dir_all(&self.root)
            .with_context(|| format!("cannot create the data folder {}", self.root.display()))
    }

    pub fn store(&self) -> PathBuf {
        self.root.join("store.redb")
    }

    pub fn outbox(&self) -> PathBuf {
        self.root.join("outbox.jsonl")
    }

    /// The receipt of the message the engine has in hand (see [`crate::dev`]'s `InHand`).
    pub fn in_hand(&self) -> PathBuf {
        self.root.join("in_hand")
    }

    fn keys_file(&self) -> PathBuf {
        self.root.join("keys.json")
    }

    fn clock_file(&self) -> PathBuf {
        self.root.join("clock.json")
    }

    fn url_file(&self) -> PathBuf {
        self.root.join("dev.url")
    }

    /// Records where the `waymark dev` running on this folder listens (for `waymark
    /// dead-letters`, which cannot open the store while it runs).
    pub fn save_url(&self, url: &str) -> Result<()> {
        std::fs::write(self.url_file(), url)
            .with_context(|| format!("cannot write {}", self.url_file().display()))
    }

    /// Where the last `waymark dev` on this folder listened, if it said.
    pub fn saved_url(&self) -> Option<String> {
        let url = std::fs::read_to_string(self.url_file()).ok()?;
        Some(url.trim().to_string()).filter(|u| !u.is_empty())
    }

    /// The keys saved by an earlier run, if any.
    pub fn saved_keys(&self) -> Result<Option<DevKeys>> {
        let path = self.keys_file();
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map(Some).with_context(|| {
                format!(
                    "{} is not a keys file: delete it to make new keys",
                    path.display()
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }

    /// The saved keys, or fresh ones saved now.
    pub fn keys(&self) -> Result<DevKeys> {
        if let Some(k) = self.saved_keys()? {
            return Ok(k);
        }
        let keys = DevKeys {
            write_key: generate_key("wk_"),
            admin_key: generate_key("wk_admin_"),
            signing_secret: generate_key("ss_"),
        };
        let text = serde_json::to_vec_pretty(&keys).context("encoding keys")?;
        write_private(&self.keys_file(), &text)?;
        Ok(keys)
    }

    /// Where virtual time stood when the last run stopped.
    pub fn saved_clock(&self) -> Option<Timestamp> {
        let bytes = std::fs::read(self.clock_file()).ok()?;
        let saved: SavedClock = serde_json::from_slice(&bytes).ok()?;
        Some(saved.virtual_now)
    }

    /// Records the virtual time (written to a temporary file, then renamed over the old one).
    pub fn save_clock(&self, now: Timestamp) -> Result<()> {
        let tmp = self.root.join("clock.json.tmp");
        let body =
            serde_json::to_vec(&SavedClock { virtual_now: now }).context("encoding clock")?;
        std::fs::write(&tmp, body).with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, self.clock_file())
            .with_context(|| format!("cannot write {}", self.clock_file().display()))
    }
}

#[derive(Serialize, Deserialize)]
struct SavedClock {
    virtual_now: Timestamp,
}

/// The generated dev keys, as `keys.json` holds them.
#[derive(Clone, Serialize, Deserialize)]
pub struct DevKeys {
    pub write_key: String,
    pub admin_key: String,
    pub signing_secret: String,
}

/// The keys a dev server accepts, with what may be shown of them.
pub struct Secrets {
    pub keys: Keys,
    pub signer: Signer,
    /// The plain write key, or where it comes from (`$WAYMARK_WRITE_KEY`).
    pub write_shown: String,
    pub admin_shown: String,
    /// Whether the shown keys are real keys (not environment variable names).
    pub write_is_plain: bool,
    pub admin_is_plain: bool,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// Keys from the environment where set, else from (or into) the data folder.
pub fn secrets(dir: &DataDir) -> Result<Secrets> {
    let saved = dir.keys()?;
    let write_env = env(WRITE_KEY_ENV);
    let admin_env = env(ADMIN_KEY_ENV);
    let write = write_env.clone().unwrap_or_else(|| saved.write_key.clone());
    let admin = admin_env.clone().unwrap_or_else(|| saved.admin_key.clone());
    let keys = Keys::parse(&write, &admin).context("reading the write and admin keys")?;
    let secret = env(SIGNING_SECRET_ENV).unwrap_or(saved.signing_secret);
    Ok(Secrets {
        keys,
        signer: Signer::new(secret.into_bytes()),
        write_is_plain: write_env.is_none(),
        admin_is_plain: admin_env.is_none(),
        write_shown: match write_env {
            Some(_) => format!("${WRITE_KEY_ENV}"),
            None => saved.write_key,
        },
        admin_shown: match admin_env {
            Some(_) => format!("${ADMIN_KEY_ENV}"),
            None => saved.admin_key,
        },
    })
}

/// The admin key `waymark dev` accepts for this data folder: `$WAYMARK_ADMIN_KEY` where set,
/// else the saved one.
pub fn admin_key(dir: &DataDir) -> Result<String> {
    if let Some(key) = env(ADMIN_KEY_ENV) {
        return Ok(key);
    }
    match dir.saved_keys()? {
        Some(k) => Ok(k.admin_key),
        None => anyhow::bail!(
            "no dev keys in {}: set {ADMIN_KEY_ENV} to the admin key `waymark dev` runs with",
            dir.root().display()
        ),
    }
}

/// The signer `waymark dev` uses for this data folder (for `waymark token`).
pub fn signer(dir: &DataDir) -> Result<Signer> {
    if let Some(secret) = env(SIGNING_SECRET_ENV) {
        return Ok(Signer::new(secret.into_bytes()));
    }
    match dir.saved_keys()? {
        Some(k) => Ok(Signer::new(k.signing_secret.into_bytes())),
        None => anyhow::bail!(
            "no dev keys in {}: run `waymark dev --data {}` once first (or set {SIGNING_SECRET_ENV})",
            dir.root().display(),
            dir.root().display()
        ),
    }
}

/// Writes a file only its owner can read.
fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut f = options
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    f.write_all(bytes)
        .with_context(|| format!("cannot write {}", path.display()))
}
