//! How many partitions timers and fold listings are spread over, and how many are in use: a
//! function writes with the count it is configured with (`Config::timer_shards`, the `Shards`
//! template parameter), while the scheduler sweeps and folds, and the stats are read from, every
//! partition any function has written to. The most any function has written with, above the
//! default, is kept as a high-water mark (`SCHED`/`shards`), noted before a process's first write
//! past the default partitions, so that raising the count leaves no timer in a partition the
//! scheduler does not sweep yet, and lowering it leaves none stranded in the partitions no longer
//! written.

use std::sync::atomic::{AtomicBool, Ordering};

use crate::runtime::{RunError, Runtime};
use crate::store::{Expect, Key, Record, StoreError};

/// The partitions every deployment has had (and had before the count could be set): always
/// swept, so the mark is only written by a process configured with more.
pub const DEFAULT: u32 = 16;
/// The most a deployment may set (each is two Queries a minute for the scheduler).
pub const MAX: u32 = 256;

fn mark_key() -> Key {
    Key::new("SCHED", "shards")
}

/// The count a stored mark says (none stored: the default).
fn mark_of(stored: Option<&Record>) -> Result<u32, RunError> {
    Ok(match stored {
        Some(r) => r.parse::<u32>()?,
        None => DEFAULT,
    })
}

/// Whether this process has made sure the mark covers its configured count.
#[derive(Default)]
pub struct Noted(AtomicBool);

impl Runtime {
    /// Makes sure the high-water mark covers this process's count before it writes past the
    /// default partitions: a read (and a write when it raises the mark) once a process.
    pub(crate) async fn note_shards(&self) -> Result<(), RunError> {
        let n = self.config.timer_shards;
        if n <= DEFAULT || self.shards_noted.0.load(Ordering::Relaxed) {
            return Ok(());
        }
        // Another process raising it at the same time makes the write conflict: read again.
        for _ in 0..5 {
            let stored = self.store.get(&mark_key()).await?;
            let mark = mark_of(stored.as_ref())?;
            if mark >= n {
                self.shards_noted.0.store(true, Ordering::Relaxed);
                return Ok(());
            }
            let (version, expect) = Expect::replacing(stored.as_ref());
            match self
                .store
                .put(&Record::new(mark_key(), version, &n)?, expect)
                .await
            {
                Ok(()) => {
                    tracing::info!(shards = n, was = mark, "shards in use raised");
                    self.shards_noted.0.store(true, Ordering::Relaxed);
                    return Ok(());
                }
                Err(StoreError::Conflict) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(RunError::Retry(
            "the shards mark kept changing; try again".into(),
        ))
    }

    /// Every partition timers and fold listings may be in: this process's count, the default
    /// ones, and as many as the high-water mark says some function wrote with (one read).
    pub async fn shards_in_use(&self) -> Result<u32, RunError> {
        let mark = mark_of(self.store.get(&mark_key()).await?.as_ref())?;
        Ok(self.config.timer_shards.max(DEFAULT).max(mark))
    }
}
