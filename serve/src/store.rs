//! The job store: videos (jobs) and API keys. [`JobStore`] is the contract a
//! server-grade database could fill when several machines serve; [`SqliteStore`] is the
//! embedded default (one SQLite file in WAL mode). Nothing a second process would need is
//! kept in memory: workers claim jobs with leases written to the store, progress and
//! cancellation go through it.

use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

use crate::consent::Rule;
use crate::job::JobSpec;

/// A store failure (a 5xx): the database could not be read or written.
#[derive(Debug, thiserror::Error)]
#[error("job store: {0}")]
pub struct StoreError(pub String);

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        Self(e.to_string())
    }
}

impl From<serde_json::Error> for StoreError {
    fn from(e: serde_json::Error) -> Self {
        Self(format!("a stored job does not parse: {e}"))
    }
}

/// Seconds since the Unix epoch, fractional.
pub fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs_f64()
}

/// A job's lifecycle, as the API names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Waiting for a worker.
    Queued,
    /// A worker holds it.
    InProgress,
    /// Outputs written.
    Completed,
    /// It will not complete; `error` says why.
    Failed,
}

impl Status {
    /// The stored (and API) name.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Queued => "queued",
            Status::InProgress => "in_progress",
            Status::Completed => "completed",
            Status::Failed => "failed",
        }
    }

    fn parse(s: &str) -> Result<Self, StoreError> {
        Ok(match s {
            "queued" => Status::Queued,
            "in_progress" => Status::InProgress,
            "completed" => Status::Completed,
            "failed" => Status::Failed,
            other => return Err(StoreError(format!("unknown stored status `{other}`"))),
        })
    }
}

/// Why a job failed, as the API's `error` object carries it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobError {
    /// Machine-readable: `invalid_request`, `worker_lost`, `internal_error`.
    pub code: String,
    /// What happened.
    pub message: String,
}

/// One video job as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct VideoRow {
    /// `video_…`.
    pub id: String,
    /// The user who created it (only they see it).
    pub owner: String,
    /// Lifecycle.
    pub status: Status,
    /// 0–100.
    pub progress: u32,
    /// The model (and version) that makes it.
    pub model: String,
    /// The prompt.
    pub prompt: String,
    /// Length, as the API writes it (`"2"`, `"4"`).
    pub seconds: String,
    /// `WxH`.
    pub size: String,
    /// Seconds since the epoch.
    pub created_at: f64,
    /// When it completed or failed.
    pub completed_at: Option<f64>,
    /// Why it failed.
    pub error: Option<JobError>,
    /// The video it remixes, edits or extends.
    pub remixed_from: Option<String>,
    /// What to generate.
    pub spec: JobSpec,
    /// Jobs with equal keys may share a sampler call.
    pub batch_key: String,
    /// Claims so far.
    pub tries: u32,
    /// In the feed (every user may see and remix it); else a draft.
    pub published: bool,
}

/// A registered character.
#[derive(Clone, Debug, PartialEq)]
pub struct Character {
    /// `char_…`.
    pub id: String,
    /// The user who registered it.
    pub owner: String,
    /// Its name, unique per owner (`@name` in prompts).
    pub name: String,
    /// Who may cast it.
    pub rule: Rule,
    /// Users the owner approved (rule `approved`).
    pub approved: Vec<String>,
    /// Free-text restrictions shown to those who may use it.
    pub restrictions: String,
    /// Reference images stored (`STATE/characters/ID/ref-K.png`).
    pub references: usize,
    /// Seconds since the epoch.
    pub created_at: f64,
}

/// One use of a character.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AuditEntry {
    /// Seconds since the epoch.
    pub at: f64,
    /// Who.
    pub user: String,
    /// `cast`.
    pub action: String,
    /// The video made.
    pub video_id: String,
}

/// A key as listed (the key itself is never stored).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct KeyInfo {
    /// The key's id (`key_…`), for `revoke`.
    pub id: String,
    /// The user it authenticates.
    pub user: String,
    /// Its first characters, to recognise it.
    pub prefix: String,
    /// May reload the model (`/admin/*`).
    pub admin: bool,
    /// Seconds since the epoch.
    pub created_at: f64,
    /// When revoked.
    pub revoked_at: Option<f64>,
}

/// Counts for `/metrics` and back-pressure.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Counts {
    /// Queued jobs.
    pub queued: usize,
    /// Running jobs.
    pub in_progress: usize,
    /// Completed jobs.
    pub completed: usize,
    /// Failed jobs.
    pub failed: usize,
}

/// What a worker learns when it reports progress.
#[derive(Clone, Debug, PartialEq)]
pub struct Heartbeat {
    /// Jobs the worker still holds and that were not deleted.
    pub live: Vec<String>,
}

/// The store's contract. Every method is one transaction; claims are exclusive across
/// processes (a lease in the row, not a lock in memory).
pub trait JobStore: Send + Sync {
    /// Adds a queued job.
    fn insert(&self, row: &VideoRow) -> Result<(), StoreError>;
    /// The job `id` if `owner` owns it and it is not deleted.
    fn get(&self, owner: &str, id: &str) -> Result<Option<VideoRow>, StoreError>;
    /// The job `id` whoever owns it (workers).
    fn get_any(&self, id: &str) -> Result<Option<VideoRow>, StoreError>;
    /// `owner`'s jobs, newest first (or oldest with `ascending`), after the cursor id;
    /// returns the page and whether more follow, or `None` when the cursor is not one of
    /// `owner`'s jobs.
    fn list(
        &self,
        owner: &str,
        after: Option<&str>,
        limit: usize,
        ascending: bool,
    ) -> Result<Option<(Vec<VideoRow>, bool)>, StoreError>;
    /// Marks `owner`'s job deleted (a running one is cancelled at its next step); `false`
    /// when there was no such job.
    fn delete(&self, owner: &str, id: &str) -> Result<bool, StoreError>;
    /// Claims up to `max` jobs that share one batch key for `worker`, for `lease_s`:
    /// queued ones, and running ones whose lease expired (their worker died) while they
    /// have tries left; the expired ones out of tries are failed with the reason.
    fn claim(
        &self,
        worker: &str,
        max: usize,
        lease_s: f64,
        max_tries: u32,
    ) -> Result<Vec<VideoRow>, StoreError>;
    /// Writes progress for `worker`'s jobs and renews their leases.
    fn heartbeat(
        &self,
        worker: &str,
        ids: &[String],
        progress: u32,
        lease_s: f64,
    ) -> Result<Heartbeat, StoreError>;
    /// Marks `worker`'s job completed (outputs already written); `false` when the worker no
    /// longer held it (its lease was taken over, or the job was deleted).
    fn complete(&self, worker: &str, id: &str) -> Result<bool, StoreError>;
    /// Marks `worker`'s job failed with `error`.
    fn fail(&self, worker: &str, id: &str, error: &JobError) -> Result<bool, StoreError>;
    /// Gives `worker`'s job back to the queue (a reload, a shutdown), without using a try.
    fn release(&self, worker: &str, id: &str) -> Result<(), StoreError>;
    /// Jobs by status (deleted ones not counted).
    fn counts(&self) -> Result<Counts, StoreError>;
    /// `owner`'s queued and running jobs.
    fn active(&self, owner: &str) -> Result<usize, StoreError>;
    /// Jobs `owner` created since `since` (deleted ones count: quota is about work asked).
    fn created_since(&self, owner: &str, since: f64) -> Result<usize, StoreError>;
    /// Adds a queued job that casts characters, with one audit entry per character, in one
    /// transaction.
    fn insert_cast(&self, row: &VideoRow) -> Result<(), StoreError>;
    /// Fails a queued job that no worker holds; `false` when it was not queued.
    fn fail_queued(&self, id: &str, error: &JobError) -> Result<bool, StoreError>;
    /// Publishes `owner`'s completed video; `false` when there is no such video.
    fn publish(&self, owner: &str, id: &str) -> Result<bool, StoreError>;
    /// Marks a video deleted whoever owns it (a character owner's right).
    fn delete_any(&self, id: &str) -> Result<bool, StoreError>;
    /// Published videos of every user, newest first, after the cursor.
    fn feed(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Option<(Vec<VideoRow>, bool)>, StoreError>;
    /// Adds a character.
    fn add_character(&self, c: &Character) -> Result<(), StoreError>;
    /// A character by id (not deleted).
    fn character(&self, id: &str) -> Result<Option<Character>, StoreError>;
    /// Every character (not deleted).
    fn characters(&self) -> Result<Vec<Character>, StoreError>;
    /// The characters (not deleted) named `name`, whoever owns them, oldest first.
    fn characters_named(&self, name: &str) -> Result<Vec<Character>, StoreError>;
    /// Rewrites a character's name, rule, approvals, restrictions and reference count.
    fn update_character(&self, c: &Character) -> Result<(), StoreError>;
    /// Deletes a character and every video containing it in one transaction; returns
    /// the videos' ids.
    fn delete_character(&self, id: &str) -> Result<Vec<String>, StoreError>;
    /// Videos (not deleted) that cast the character, newest first.
    fn videos_with(&self, character: &str) -> Result<Vec<VideoRow>, StoreError>;
    /// The character's uses, oldest first.
    fn audit(&self, character: &str) -> Result<Vec<AuditEntry>, StoreError>;
    /// Whether any key (revoked or not) belongs to `user`.
    fn user_exists(&self, user: &str) -> Result<bool, StoreError>;
    /// Stores a key by its hash.
    fn add_key(&self, info: &KeyInfo, hash: &str) -> Result<(), StoreError>;
    /// The unrevoked key with this hash.
    fn find_key(&self, hash: &str) -> Result<Option<KeyInfo>, StoreError>;
    /// Every key.
    fn keys(&self) -> Result<Vec<KeyInfo>, StoreError>;
    /// Revokes a key by id or prefix; `false` when none matched.
    fn revoke_key(&self, id: &str) -> Result<bool, StoreError>;
}

/// The embedded store: `STATE/jobs.sqlite` in WAL mode, safe for several processes.
pub struct SqliteStore {
    conn: Mutex<Connection>,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS videos (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    owner TEXT NOT NULL,
    status TEXT NOT NULL,
    progress INTEGER NOT NULL DEFAULT 0,
    model TEXT NOT NULL,
    prompt TEXT NOT NULL,
    seconds TEXT NOT NULL,
    size TEXT NOT NULL,
    created_at REAL NOT NULL,
    completed_at REAL,
    error TEXT,
    remixed_from TEXT,
    spec TEXT NOT NULL,
    batch_key TEXT NOT NULL,
    tries INTEGER NOT NULL DEFAULT 0,
    worker TEXT,
    lease_until REAL,
    deleted INTEGER NOT NULL DEFAULT 0,
    published INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS videos_owner ON videos(owner, seq);
CREATE INDEX IF NOT EXISTS videos_status ON videos(status, seq);
CREATE TABLE IF NOT EXISTS api_keys (
    id TEXT PRIMARY KEY,
    user TEXT NOT NULL,
    hash TEXT NOT NULL UNIQUE,
    prefix TEXT NOT NULL,
    admin INTEGER NOT NULL,
    created_at REAL NOT NULL,
    revoked_at REAL
);
CREATE TABLE IF NOT EXISTS characters (
    id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    name TEXT NOT NULL,
    rule TEXT NOT NULL,
    approved TEXT NOT NULL,
    restrictions TEXT NOT NULL,
    refs INTEGER NOT NULL,
    created_at REAL NOT NULL,
    deleted INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS video_characters (
    video_id TEXT NOT NULL,
    character_id TEXT NOT NULL,
    PRIMARY KEY (video_id, character_id)
);
CREATE INDEX IF NOT EXISTS video_characters_c ON video_characters(character_id);
CREATE INDEX IF NOT EXISTS characters_name ON characters(name);
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    character_id TEXT NOT NULL,
    user TEXT NOT NULL,
    action TEXT NOT NULL,
    video_id TEXT NOT NULL
);
";

const COLUMNS: &str = "id, owner, status, progress, model, prompt, seconds, size, created_at, \
     completed_at, error, remixed_from, spec, batch_key, tries, published";

fn row_of(r: &rusqlite::Row<'_>) -> rusqlite::Result<Result<VideoRow, StoreError>> {
    let status: String = r.get(2)?;
    let error: Option<String> = r.get(10)?;
    let spec: String = r.get(12)?;
    let build = move || -> Result<VideoRow, StoreError> {
        Ok(VideoRow {
            id: r.get(0)?,
            owner: r.get(1)?,
            status: Status::parse(&status)?,
            progress: r.get(3)?,
            model: r.get(4)?,
            prompt: r.get(5)?,
            seconds: r.get(6)?,
            size: r.get(7)?,
            created_at: r.get(8)?,
            completed_at: r.get(9)?,
            error: error.as_deref().map(serde_json::from_str).transpose()?,
            remixed_from: r.get(11)?,
            spec: serde_json::from_str(&spec)?,
            batch_key: r.get(13)?,
            tries: r.get(14)?,
            published: r.get::<_, i64>(15)? != 0,
        })
    };
    Ok(build())
}

fn key_of(r: &rusqlite::Row<'_>) -> rusqlite::Result<KeyInfo> {
    Ok(KeyInfo {
        id: r.get(0)?,
        user: r.get(1)?,
        prefix: r.get(2)?,
        admin: r.get::<_, i64>(3)? != 0,
        created_at: r.get(4)?,
        revoked_at: r.get(5)?,
    })
}

const CHAR_COLUMNS: &str = "id, owner, name, rule, approved, restrictions, refs, created_at";

fn character_of(r: &rusqlite::Row<'_>) -> rusqlite::Result<Result<Character, StoreError>> {
    let rule: String = r.get(3)?;
    let approved: String = r.get(4)?;
    let c = (|| -> Result<Character, StoreError> {
        Ok(Character {
            id: r.get(0)?,
            owner: r.get(1)?,
            name: r.get(2)?,
            rule: Rule::parse(&rule).map_err(StoreError)?,
            approved: serde_json::from_str(&approved)?,
            restrictions: r.get(5)?,
            references: r.get::<_, i64>(6)? as usize,
            created_at: r.get(7)?,
        })
    })();
    Ok(c)
}

impl SqliteStore {
    /// Rows of `sql`, each parsed by `parse` (whose inner error is a stored value that
    /// does not parse).
    fn query<T>(
        c: &Connection,
        sql: &str,
        p: impl rusqlite::Params,
        parse: fn(&rusqlite::Row<'_>) -> rusqlite::Result<Result<T, StoreError>>,
    ) -> Result<Vec<T>, StoreError> {
        let mut st = c.prepare(sql)?;
        let rows = st.query_map(p, parse)?;
        let mut out = Vec::new();
        for r in rows {
            out.push(r??);
        }
        Ok(out)
    }

    fn query_characters(
        c: &Connection,
        sql: &str,
        p: impl rusqlite::Params,
    ) -> Result<Vec<Character>, StoreError> {
        Self::query(c, sql, p, character_of)
    }

    /// Opens (creating) the store at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| StoreError(format!("creating {}: {e}", dir.display())))?;
        }
        let conn = Connection::open(path)
            .map_err(|e| StoreError(format!("opening {}: {e}", path.display())))?;
        conn.busy_timeout(Duration::from_secs(10))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.execute_batch(SCHEMA)?;
        Ok(Self {
            conn: Mutex::new(conn),
        })
    }

    fn with<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut c = self
            .conn
            .lock()
            .map_err(|_| StoreError("the store's connection was poisoned by a panic".into()))?;
        f(&mut c)
    }

    fn query_rows(
        c: &Connection,
        sql: &str,
        p: impl rusqlite::Params,
    ) -> Result<Vec<VideoRow>, StoreError> {
        Self::query(c, sql, p, row_of)
    }
}

impl JobStore for SqliteStore {
    fn insert(&self, v: &VideoRow) -> Result<(), StoreError> {
        self.with(|c| insert_row(c, v))
    }

    fn insert_cast(&self, v: &VideoRow) -> Result<(), StoreError> {
        self.with(|c| {
            let tx = c.transaction()?;
            insert_row(&tx, v)?;
            for ch in &v.spec.characters {
                tx.execute(
                    "INSERT OR IGNORE INTO video_characters (video_id, character_id) VALUES (?1, ?2)",
                    params![v.id, ch],
                )?;
                tx.execute(
                    "INSERT INTO audit (at, character_id, user, action, video_id) VALUES (?1, ?2, ?3, 'cast', ?4)",
                    params![v.created_at, ch, v.owner, v.id],
                )?;
            }
            tx.commit()?;
            Ok(())
        })
    }

    fn fail_queued(&self, id: &str, error: &JobError) -> Result<bool, StoreError> {
        let e = serde_json::to_string(error)?;
        self.with(|c| {
            Ok(c.execute(
                "UPDATE videos SET status = 'failed', completed_at = ?1, error = ?2 WHERE id = ?3 AND status = 'queued'",
                params![now(), e, id],
            )? > 0)
        })
    }

    fn publish(&self, owner: &str, id: &str) -> Result<bool, StoreError> {
        self.with(|c| {
            Ok(c.execute(
                "UPDATE videos SET published = 1 WHERE id = ?1 AND owner = ?2 AND deleted = 0 AND status = 'completed'",
                params![id, owner],
            )? > 0)
        })
    }

    fn delete_any(&self, id: &str) -> Result<bool, StoreError> {
        self.with(|c| {
            Ok(c.execute(
                "UPDATE videos SET deleted = 1 WHERE id = ?1 AND deleted = 0",
                params![id],
            )? > 0)
        })
    }

    fn feed(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Option<(Vec<VideoRow>, bool)>, StoreError> {
        self.with(|c| {
            let bound = match after {
                Some(a) => match c
                    .query_row(
                        "SELECT seq FROM videos WHERE id = ?1 AND published = 1 AND deleted = 0",
                        params![a],
                        |r| r.get::<_, i64>(0),
                    )
                    .optional()?
                {
                    Some(s) => s,
                    None => return Ok(None),
                },
                None => i64::MAX,
            };
            let mut rows = Self::query_rows(
                c,
                &format!(
                    "SELECT {COLUMNS} FROM videos WHERE published = 1 AND deleted = 0 AND seq < ?1 ORDER BY seq DESC LIMIT ?2"
                ),
                params![bound, (limit + 1) as i64],
            )?;
            let more = rows.len() > limit;
            rows.truncate(limit);
            Ok(Some((rows, more)))
        })
    }

    fn add_character(&self, ch: &Character) -> Result<(), StoreError> {
        let approved = serde_json::to_string(&ch.approved)?;
        self.with(|c| {
            c.execute(
                "INSERT INTO characters (id, owner, name, rule, approved, restrictions, refs, created_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    ch.id,
                    ch.owner,
                    ch.name,
                    ch.rule.as_str(),
                    approved,
                    ch.restrictions,
                    ch.references as i64,
                    ch.created_at
                ],
            )?;
            Ok(())
        })
    }

    fn character(&self, id: &str) -> Result<Option<Character>, StoreError> {
        self.with(|c| {
            Ok(Self::query_characters(
                c,
                &format!("SELECT {CHAR_COLUMNS} FROM characters WHERE id = ?1 AND deleted = 0"),
                params![id],
            )?
            .pop())
        })
    }

    fn characters(&self) -> Result<Vec<Character>, StoreError> {
        self.with(|c| {
            Self::query_characters(
                c,
                &format!(
                    "SELECT {CHAR_COLUMNS} FROM characters WHERE deleted = 0 ORDER BY created_at"
                ),
                [],
            )
        })
    }

    fn characters_named(&self, name: &str) -> Result<Vec<Character>, StoreError> {
        self.with(|c| {
            Self::query_characters(
                c,
                &format!(
                    "SELECT {CHAR_COLUMNS} FROM characters WHERE name = ?1 AND deleted = 0 ORDER BY created_at"
                ),
                params![name],
            )
        })
    }

    fn update_character(&self, ch: &Character) -> Result<(), StoreError> {
        let approved = serde_json::to_string(&ch.approved)?;
        self.with(|c| {
            c.execute(
                "UPDATE characters SET name = ?1, rule = ?2, approved = ?3, restrictions = ?4, refs = ?5 \
                 WHERE id = ?6 AND deleted = 0",
                params![
                    ch.name,
                    ch.rule.as_str(),
                    approved,
                    ch.restrictions,
                    ch.references as i64,
                    ch.id
                ],
            )?;
            Ok(())
        })
    }

    fn delete_character(&self, id: &str) -> Result<Vec<String>, StoreError> {
        self.with(|c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let ids: Vec<String> = {
                let mut st = tx.prepare(
                    "SELECT v.id FROM videos v JOIN video_characters vc ON vc.video_id = v.id \
                     WHERE vc.character_id = ?1 AND v.deleted = 0",
                )?;
                st.query_map(params![id], |r| r.get(0))?
                    .collect::<Result<_, _>>()?
            };
            tx.execute(
                "UPDATE videos SET deleted = 1 WHERE id IN \
                 (SELECT video_id FROM video_characters WHERE character_id = ?1)",
                params![id],
            )?;
            tx.execute(
                "UPDATE characters SET deleted = 1 WHERE id = ?1",
                params![id],
            )?;
            tx.commit()?;
            Ok(ids)
        })
    }

    fn videos_with(&self, character: &str) -> Result<Vec<VideoRow>, StoreError> {
        self.with(|c| {
            Self::query_rows(
                c,
                &format!(
                    "SELECT {COLUMNS} FROM videos WHERE deleted = 0 AND id IN \
                     (SELECT video_id FROM video_characters WHERE character_id = ?1) ORDER BY seq DESC"
                ),
                params![character],
            )
        })
    }

    fn audit(&self, character: &str) -> Result<Vec<AuditEntry>, StoreError> {
        self.with(|c| {
            let mut st = c.prepare(
                "SELECT at, user, action, video_id FROM audit WHERE character_id = ?1 ORDER BY seq",
            )?;
            let rows = st.query_map(params![character], |r| {
                Ok(AuditEntry {
                    at: r.get(0)?,
                    user: r.get(1)?,
                    action: r.get(2)?,
                    video_id: r.get(3)?,
                })
            })?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
    }

    fn user_exists(&self, user: &str) -> Result<bool, StoreError> {
        self.with(|c| {
            Ok(c.query_row(
                "SELECT COUNT(*) FROM api_keys WHERE user = ?1",
                params![user],
                |r| r.get::<_, i64>(0),
            )? > 0)
        })
    }

    fn get(&self, owner: &str, id: &str) -> Result<Option<VideoRow>, StoreError> {
        self.with(|c| {
            Ok(Self::query_rows(
                c,
                &format!(
                    "SELECT {COLUMNS} FROM videos WHERE id = ?1 AND owner = ?2 AND deleted = 0"
                ),
                params![id, owner],
            )?
            .pop())
        })
    }

    fn get_any(&self, id: &str) -> Result<Option<VideoRow>, StoreError> {
        self.with(|c| {
            Ok(Self::query_rows(
                c,
                &format!("SELECT {COLUMNS} FROM videos WHERE id = ?1 AND deleted = 0"),
                params![id],
            )?
            .pop())
        })
    }

    fn list(
        &self,
        owner: &str,
        after: Option<&str>,
        limit: usize,
        ascending: bool,
    ) -> Result<Option<(Vec<VideoRow>, bool)>, StoreError> {
        self.with(|c| {
            let cursor: Option<i64> = match after {
                Some(a) => match c
                    .query_row(
                        "SELECT seq FROM videos WHERE id = ?1 AND owner = ?2",
                        params![a, owner],
                        |r| r.get(0),
                    )
                    .optional()?
                {
                    Some(seq) => Some(seq),
                    None => return Ok(None),
                },
                None => None,
            };
            let (cmp, order) = if ascending {
                (">", "ASC")
            } else {
                ("<", "DESC")
            };
            let bound = cursor.unwrap_or(if ascending { i64::MIN } else { i64::MAX });
            let mut rows = Self::query_rows(
                c,
                &format!(
                    "SELECT {COLUMNS} FROM videos WHERE owner = ?1 AND deleted = 0 AND seq {cmp} ?2 \
                     ORDER BY seq {order} LIMIT ?3"
                ),
                params![owner, bound, (limit + 1) as i64],
            )?;
            let more = rows.len() > limit;
            rows.truncate(limit);
            Ok(Some((rows, more)))
        })
    }

    fn delete(&self, owner: &str, id: &str) -> Result<bool, StoreError> {
        self.with(|c| {
            Ok(c.execute(
                "UPDATE videos SET deleted = 1 WHERE id = ?1 AND owner = ?2 AND deleted = 0",
                params![id, owner],
            )? > 0)
        })
    }

    fn claim(
        &self,
        worker: &str,
        max: usize,
        lease_s: f64,
        max_tries: u32,
    ) -> Result<Vec<VideoRow>, StoreError> {
        self.with(|c| {
            let t = now();
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            // a worker that died holds its jobs only until the lease runs out
            let lost = JobError {
                code: "worker_lost".into(),
                message: format!(
                    "the worker running this job stopped {max_tries} times (its lease expired each time); not retried"
                ),
            };
            tx.execute(
                "UPDATE videos SET status = 'failed', completed_at = ?1, error = ?2, worker = NULL, lease_until = NULL \
                 WHERE status = 'in_progress' AND lease_until < ?1 AND tries >= ?3",
                params![t, serde_json::to_string(&lost)?, max_tries],
            )?;
            let first: Option<String> = tx
                .query_row(
                    "SELECT batch_key FROM videos WHERE deleted = 0 AND (status = 'queued' \
                     OR (status = 'in_progress' AND lease_until < ?1)) ORDER BY seq LIMIT 1",
                    params![t],
                    |r| r.get(0),
                )
                .optional()?;
            let Some(key) = first else {
                tx.commit()?;
                return Ok(Vec::new());
            };
            let ids: Vec<String> = {
                let mut st = tx.prepare(
                    "SELECT id FROM videos WHERE deleted = 0 AND batch_key = ?1 AND (status = 'queued' \
                     OR (status = 'in_progress' AND lease_until < ?2)) ORDER BY seq LIMIT ?3",
                )?;
                st.query_map(params![key, t, max as i64], |r| r.get(0))?
                    .collect::<Result<_, _>>()?
            };
            let mut out = Vec::new();
            for id in &ids {
                tx.execute(
                    "UPDATE videos SET status = 'in_progress', worker = ?1, lease_until = ?2, \
                     tries = tries + 1, progress = 0 WHERE id = ?3",
                    params![worker, t + lease_s, id],
                )?;
                out.extend(Self::query_rows(
                    &tx,
                    &format!("SELECT {COLUMNS} FROM videos WHERE id = ?1"),
                    params![id],
                )?);
            }
            tx.commit()?;
            Ok(out)
        })
    }

    fn heartbeat(
        &self,
        worker: &str,
        ids: &[String],
        progress: u32,
        lease_s: f64,
    ) -> Result<Heartbeat, StoreError> {
        self.with(|c| {
            let tx = c.transaction()?;
            let mut live = Vec::new();
            for id in ids {
                let n = tx.execute(
                    "UPDATE videos SET progress = ?1, lease_until = ?2 WHERE id = ?3 AND worker = ?4 \
                     AND status = 'in_progress' AND deleted = 0",
                    params![progress.min(99), now() + lease_s, id, worker],
                )?;
                if n > 0 {
                    live.push(id.clone());
                }
            }
            tx.commit()?;
            Ok(Heartbeat { live })
        })
    }

    fn complete(&self, worker: &str, id: &str) -> Result<bool, StoreError> {
        self.with(|c| {
            Ok(c.execute(
                "UPDATE videos SET status = 'completed', progress = 100, completed_at = ?1, worker = NULL, \
                 lease_until = NULL WHERE id = ?2 AND worker = ?3 AND status = 'in_progress' AND deleted = 0",
                params![now(), id, worker],
            )? > 0)
        })
    }

    fn fail(&self, worker: &str, id: &str, error: &JobError) -> Result<bool, StoreError> {
        let e = serde_json::to_string(error)?;
        self.with(|c| {
            Ok(c.execute(
                "UPDATE videos SET status = 'failed', completed_at = ?1, error = ?2, worker = NULL, \
                 lease_until = NULL WHERE id = ?3 AND worker = ?4 AND status = 'in_progress'",
                params![now(), e, id, worker],
            )? > 0)
        })
    }

    fn release(&self, worker: &str, id: &str) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute(
                "UPDATE videos SET status = 'queued', progress = 0, tries = MAX(tries - 1, 0), worker = NULL, \
                 lease_until = NULL WHERE id = ?1 AND worker = ?2 AND status = 'in_progress'",
                params![id, worker],
            )?;
            Ok(())
        })
    }

    fn counts(&self) -> Result<Counts, StoreError> {
        self.with(|c| {
            let mut st =
                c.prepare("SELECT status, COUNT(*) FROM videos WHERE deleted = 0 GROUP BY status")?;
            let mut out = Counts::default();
            let rows = st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
            for r in rows {
                let (s, n) = r?;
                let n = n as usize;
                match Status::parse(&s)? {
                    Status::Queued => out.queued = n,
                    Status::InProgress => out.in_progress = n,
                    Status::Completed => out.completed = n,
                    Status::Failed => out.failed = n,
                }
            }
            Ok(out)
        })
    }

    fn active(&self, owner: &str) -> Result<usize, StoreError> {
        self.with(|c| {
            Ok(c.query_row(
                "SELECT COUNT(*) FROM videos WHERE owner = ?1 AND deleted = 0 \
                 AND status IN ('queued', 'in_progress')",
                params![owner],
                |r| r.get::<_, i64>(0),
            )? as usize)
        })
    }

    fn created_since(&self, owner: &str, since: f64) -> Result<usize, StoreError> {
        self.with(|c| {
            Ok(c.query_row(
                "SELECT COUNT(*) FROM videos WHERE owner = ?1 AND created_at >= ?2",
                params![owner, since],
                |r| r.get::<_, i64>(0),
            )? as usize)
        })
    }

    fn add_key(&self, k: &KeyInfo, hash: &str) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute(
                "INSERT INTO api_keys (id, user, hash, prefix, admin, created_at, revoked_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    k.id,
                    k.user,
                    hash,
                    k.prefix,
                    k.admin as i64,
                    k.created_at,
                    k.revoked_at
                ],
            )?;
            Ok(())
        })
    }

    fn find_key(&self, hash: &str) -> Result<Option<KeyInfo>, StoreError> {
        self.with(|c| {
            Ok(c.query_row(
                "SELECT id, user, prefix, admin, created_at, revoked_at FROM api_keys \
                 WHERE hash = ?1 AND revoked_at IS NULL",
                params![hash],
                key_of,
            )
            .optional()?)
        })
    }

    fn keys(&self) -> Result<Vec<KeyInfo>, StoreError> {
        self.with(|c| {
            let mut st = c.prepare(
                "SELECT id, user, prefix, admin, created_at, revoked_at FROM api_keys ORDER BY created_at",
            )?;
            let rows = st.query_map([], key_of)?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
    }

    fn revoke_key(&self, id: &str) -> Result<bool, StoreError> {
        self.with(|c| {
            Ok(c.execute(
                "UPDATE api_keys SET revoked_at = ?1 WHERE (id = ?2 OR prefix = ?2) AND revoked_at IS NULL",
                params![now(), id],
            )? > 0)
        })
    }
}

/// Inserts a video row (inside the caller's transaction, if any).
fn insert_row(c: &Connection, v: &VideoRow) -> Result<(), StoreError> {
    let spec = serde_json::to_string(&v.spec)?;
    let error = v.error.as_ref().map(serde_json::to_string).transpose()?;
    c.execute(
        "INSERT INTO videos (id, owner, status, progress, model, prompt, seconds, size, \
         created_at, completed_at, error, remixed_from, spec, batch_key, tries, published) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
        params![
            v.id,
            v.owner,
            v.status.as_str(),
            v.progress,
            v.model,
            v.prompt,
            v.seconds,
            v.size,
            v.created_at,
            v.completed_at,
            error,
            v.remixed_from,
            spec,
            v.batch_key,
            v.tries,
            v.published as i64
        ],
    )?;
    Ok(())
}
