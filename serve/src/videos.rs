//! The Videos API handlers: create (text, first frame), retrieve, list, delete, content,
//! remix, edit, extend. Every request becomes a queued job; the handlers check it first
//! so a job that is queued can run.

use std::sync::Arc;

use axum::Extension;
use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sonora_framework::fsutil::write_atomic;
use sonora_framework::media::decode_png;
use utoipa::{IntoParams, ToSchema};

use crate::characters::may;
use crate::consent::Action;
use crate::error::{ApiError, ErrorBody};
use crate::form::{Fields, Upload};
use crate::job::{JobSpec, Kind, Source, batch_key, parse_seconds, prefix_frames, seconds_label};
use crate::media::clip_from_mp4;
use crate::model::Served;
use crate::state::AppState;
use crate::store::{Character, JobError, Status, VideoRow, now};
use crate::worker::video_dir;

/// The authenticated caller.
#[derive(Clone, Debug)]
pub struct User {
    /// The user the key maps to.
    pub name: String,
    /// May call `/admin/*`.
    pub admin: bool,
}

/// A video job, exactly as the SDK's `Video` model parses it.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct VideoObject {
    /// `video_…`.
    pub id: String,
    /// Always `video`.
    pub object: &'static str,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds, when completed or failed.
    pub completed_at: Option<i64>,
    /// Unix seconds when the files expire (never: `null`).
    pub expires_at: Option<i64>,
    /// `queued`, `in_progress`, `completed`, `failed`.
    pub status: String,
    /// 0–100, from the sampler's steps.
    pub progress: u32,
    /// The model and version (`NAME@vN`).
    pub model: String,
    /// The prompt.
    pub prompt: Option<String>,
    /// Length in seconds (for an extension, the stitched total).
    pub seconds: String,
    /// `WxH`.
    pub size: String,
    /// The video this one remixes, edits or extends.
    pub remixed_from_video_id: Option<String>,
    /// Why it failed.
    pub error: Option<VideoError>,
    /// sonora: the characters cast (ids).
    pub characters: Vec<String>,
    /// sonora: in the feed (else a draft, seen by its creator and its characters' owners).
    pub published: bool,
}

/// A failed job's error.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct VideoError {
    /// Machine-readable.
    pub code: String,
    /// What happened.
    pub message: String,
}

impl From<&VideoRow> for VideoObject {
    fn from(r: &VideoRow) -> Self {
        Self {
            id: r.id.clone(),
            object: "video",
            created_at: r.created_at as i64,
            completed_at: r.completed_at.map(|t| t as i64),
            expires_at: None,
            status: r.status.as_str().into(),
            progress: r.progress,
            model: r.model.clone(),
            prompt: Some(r.prompt.clone()),
            seconds: r.seconds.clone(),
            size: r.size.clone(),
            remixed_from_video_id: r.remixed_from.clone(),
            error: r
                .error
                .as_ref()
                .map(|JobError { code, message }| VideoError {
                    code: code.clone(),
                    message: message.clone(),
                }),
            characters: r.spec.characters.clone(),
            published: r.published,
        }
    }
}

/// `POST /v1/videos` as a form (documentation of the fields; JSON takes the same).
#[derive(Deserialize, ToSchema)]
#[allow(dead_code)] // documents the form for /openapi.json; parsed through `Fields`
pub struct CreateVideoForm {
    /// What the clip shows and sounds like.
    prompt: String,
    /// The served model's name (default: it).
    model: Option<String>,
    /// Length in seconds (default: the model's clip); longer clips are chained extensions.
    seconds: Option<String>,
    /// `WxH`; only the model's own size.
    size: Option<String>,
    /// A PNG that becomes the first frame.
    #[schema(format = Binary, value_type = Option<String>)]
    input_reference: Option<Vec<u8>>,
    /// sonora: the noise seed (default random).
    seed: Option<u64>,
}

/// `POST /v1/videos/{id}/remix`, `/v1/videos/edits` and `/v1/videos/extensions`.
#[derive(Deserialize, ToSchema)]
#[allow(dead_code)] // documents the form for /openapi.json; parsed through `Fields`
pub struct DeriveVideoForm {
    /// The new prompt.
    prompt: String,
    /// Edits and extensions: an uploaded MP4, or `{"id": …}` of a completed video.
    #[schema(value_type = Option<Object>)]
    video: Option<serde_json::Value>,
    /// Extensions: seconds to add.
    seconds: Option<String>,
    /// sonora, remix and edit: how far the source is re-noised, (0, 1].
    strength: Option<f64>,
    /// sonora: the noise seed.
    seed: Option<u64>,
}

/// A page of videos.
#[derive(Serialize, ToSchema)]
pub struct VideoList {
    /// Always `list`.
    pub object: &'static str,
    /// The videos.
    pub data: Vec<VideoObject>,
    /// The first id of the page.
    pub first_id: Option<String>,
    /// The last id (the next page's `after`).
    pub last_id: Option<String>,
    /// Whether more follow.
    pub has_more: bool,
}

impl VideoList {
    /// A page of `rows`, with the cursor ids the SDK pages by.
    pub fn page(rows: &[VideoRow], has_more: bool) -> Self {
        let data: Vec<VideoObject> = rows.iter().map(VideoObject::from).collect();
        Self {
            object: "list",
            first_id: data.first().map(|v| v.id.clone()),
            last_id: data.last().map(|v| v.id.clone()),
            has_more,
            data,
        }
    }
}

/// `DELETE` answer.
#[derive(Serialize, ToSchema)]
pub struct Deleted {
    /// The id.
    pub id: String,
    /// Always `video.deleted`.
    pub object: &'static str,
    /// Always true.
    pub deleted: bool,
}

/// `GET /v1/videos` query.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// The last id of the previous page.
    after: Option<String>,
    /// 1–100 (default 20).
    limit: Option<usize>,
    /// `desc` (newest first, default) or `asc`.
    order: Option<String>,
}

/// `GET /v1/videos/{id}/content` query.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ContentQuery {
    /// `video` (MP4, default), `thumbnail` (PNG of the first frame), `spritesheet` (PNG);
    /// sonora's `preview`: the MP4 with sonora's mark, also for a draft that casts someone
    /// else's character (which `video` refuses).
    variant: Option<String>,
}

fn random_id(prefix: &str) -> String {
    let mut b = [0u8; 16];
    rand::rng().fill_bytes(&mut b);
    format!("{prefix}{}", hex::encode(b))
}

/// The prompt: not blank, within the length limit, read by the model's tokenizer.
fn check_prompt(st: &AppState, served: &Served, f: &Fields) -> Result<String, ApiError> {
    let p = f.require("prompt")?;
    if p.trim().is_empty() {
        return Err(ApiError::bad(
            "prompt",
            "the prompt is empty: describe the clip",
        ));
    }
    let n = p.chars().count();
    if n > st.config.max_prompt_chars {
        return Err(ApiError::bad(
            "prompt",
            format!(
                "the prompt is {n} characters; this server takes at most {}",
                st.config.max_prompt_chars
            ),
        ));
    }
    served
        .generator
        .text(&model_prompt(p))
        .map_err(|e| ApiError::bad("prompt", e.to_string()))?;
    Ok(p.to_string())
}

/// The prompt the model reads: `@name` mentions become the name (the training captions
/// call a character by its name).
pub fn model_prompt(p: &str) -> String {
    let mut out = String::with_capacity(p.len());
    let mut chars = p.chars().peekable();
    while let Some(c) = chars.next() {
        let next_is_name = chars
            .peek()
            .is_some_and(|n| n.is_ascii_alphanumeric() || *n == '_');
        if !(c == '@' && next_is_name) {
            out.push(c);
        }
    }
    out
}

/// The `@name` mentions of a prompt.
fn mentions(p: &str) -> Vec<String> {
    let mut out = Vec::new();
    let b: Vec<char> = p.chars().collect();
    let mut i = 0;
    while i < b.len() {
        if b[i] == '@' && (i == 0 || !b[i - 1].is_ascii_alphanumeric()) {
            let name: String = b[i + 1..]
                .iter()
                .take_while(|c| c.is_ascii_alphanumeric() || **c == '_' || **c == '-')
                .collect();
            if !name.is_empty() {
                i += name.len();
                out.push(name);
            }
        }
        i += 1;
    }
    out
}

/// The characters a request casts (`characters` ids and `@name` mentions), each one the
/// caller may cast: unknown ones are a 400 naming them, ones the caller may not use a 403.
/// `also` are characters the request carries over (a remixed video's); `refs` counts the
/// reference images, at most `max_references`.
fn resolve_cast(
    st: &AppState,
    user: &User,
    f: &Fields,
    prompt: &str,
    also: &[String],
) -> Result<(Vec<Character>, usize), ApiError> {
    let mut cast: Vec<Character> = Vec::new();
    let mut add = |c: &Character, what: &str| -> Result<(), ApiError> {
        if !may(user, c, Action::Cast) {
            return Err(ApiError::forbidden(format!(
                "you may not cast character {} ({}, {what}): its owner {} allows {}",
                c.name,
                c.id,
                c.owner,
                c.rule.as_str()
            )));
        }
        if !cast.iter().any(|x| x.id == c.id) {
            cast.push(c.clone());
        }
        Ok(())
    };
    let ids = f
        .text
        .iter()
        .filter(|(k, _)| {
            k.as_str() == "characters"
                || (k.starts_with("characters[")
                    && (k.ends_with(']') && !k.contains("][") || k.ends_with("[id]")))
        })
        .map(|(_, v)| v.trim().to_string());
    for id in ids.chain(also.iter().cloned()) {
        let c = st
            .store
            .character(&id)?
            .ok_or_else(|| ApiError::bad("characters", format!("unknown character {id:?}")))?;
        add(&c, "by id")?;
    }
    for name in mentions(prompt) {
        // one indexed lookup per mention: the caller's own character of that name first,
        // then one the caller may cast, else the first (whose refusal names its owner)
        let named = st.store.characters_named(&name)?;
        let own = named.iter().find(|c| c.owner == user.name);
        let usable = named.iter().find(|c| may(user, c, Action::Cast));
        match own.or(usable) {
            Some(c) => add(c, "mentioned")?,
            None => match named.first() {
                Some(c) => add(c, "mentioned")?,
                None => {
                    return Err(ApiError::bad(
                        "prompt",
                        format!(
                            "the prompt mentions @{name}, but no character you may use is named {name:?}"
                        ),
                    ));
                }
            },
        }
    }
    let refs: usize = cast.iter().map(|c| c.references).sum();
    if refs > st.config.max_references {
        return Err(ApiError::bad(
            "characters",
            format!(
                "the characters cast carry {refs} reference images; this server takes at most {} per request",
                st.config.max_references
            ),
        ));
    }
    Ok((cast, refs))
}

/// A video the caller may see: their own, a published one, or one that casts one of
/// their characters (404 otherwise, as if it did not exist); with its characters.
fn visible(st: &AppState, user: &User, id: &str) -> Result<(VideoRow, Vec<Character>), ApiError> {
    let row = st
        .store
        .get_any(id)?
        .ok_or_else(|| ApiError::not_found("video", id))?;
    let mut chars = Vec::new();
    for c in &row.spec.characters {
        if let Some(ch) = st.store.character(c)? {
            chars.push(ch);
        }
    }
    if row.owner == user.name || row.published || chars.iter().any(|c| c.owner == user.name) {
        Ok((row, chars))
    } else {
        Err(ApiError::not_found("video", id))
    }
}

/// `model`: the served one, by name, `NAME@VERSION` or its config's name.
fn check_model(served: &Served, f: &Fields) -> Result<(), ApiError> {
    if let Some(m) = f.get("model") {
        let ok = [
            served.name.clone(),
            served.label(),
            served.config().name.clone(),
        ];
        if !ok.iter().any(|o| o == m) {
            return Err(ApiError::bad(
                "model",
                format!(
                    "model {m:?} is not served here; this server serves {:?} ({})",
                    served.name,
                    served.label()
                ),
            ));
        }
    }
    Ok(())
}

/// `size`: only the model's own.
fn check_size(served: &Served, f: &Fields) -> Result<String, ApiError> {
    let native = served.size();
    match f.get("size") {
        None => Ok(native),
        Some(s) if s == native => Ok(native),
        Some(s) => Err(ApiError::bad(
            "size",
            format!("size {s:?} is not one this model makes; it makes {native}"),
        )),
    }
}

fn parse_seed(f: &Fields) -> Result<u64, ApiError> {
    match f.get("seed") {
        Some(s) => s.parse().map_err(|_| {
            ApiError::bad(
                "seed",
                format!("seed must be a whole number from 0 to 2^64-1, got {s:?}"),
            )
        }),
        None => Ok(rand::rng().next_u64()),
    }
}

fn parse_strength(st: &AppState, f: &Fields) -> Result<f64, ApiError> {
    match f.get("strength") {
        None => Ok(st.config.remix_strength),
        Some(s) => match s.parse::<f64>() {
            Ok(v) if v > 0.0 && v <= 1.0 => Ok(v),
            _ => Err(ApiError::bad(
                "strength",
                format!("strength must be in (0, 1], got {s:?}"),
            )),
        },
    }
}

/// Queues a job after the queue and quota checks.
#[allow(clippy::too_many_arguments)]
fn enqueue(
    st: &AppState,
    served: &Served,
    user: &User,
    id: String,
    prompt: String,
    spec: JobSpec,
    remixed_from: Option<String>,
) -> Result<VideoRow, ApiError> {
    let c = &st.config;
    let counts = st.store.counts()?;
    if counts.queued >= c.max_queue {
        metrics::counter!("sonora_rejected_total", "reason" => "queue_full").increment(1);
        return Err(ApiError::rate_limited(
            "queue_full",
            format!(
                "the server's queue is full ({} jobs); retry later",
                counts.queued
            ),
            5,
        ));
    }
    let active = st.store.active(&user.name)?;
    if active >= c.quota.concurrent {
        metrics::counter!("sonora_rejected_total", "reason" => "quota_concurrent").increment(1);
        return Err(ApiError::rate_limited(
            "quota_concurrent",
            format!(
                "quota: {} has {active} jobs queued or running; the limit is {} at once",
                user.name, c.quota.concurrent
            ),
            5,
        ));
    }
    let hour = st.store.created_since(&user.name, now() - 3600.0)?;
    if hour >= c.quota.per_hour {
        metrics::counter!("sonora_rejected_total", "reason" => "quota_hourly").increment(1);
        return Err(ApiError::rate_limited(
            "quota_hourly",
            format!(
                "quota: {} created {hour} jobs in the last hour; the limit is {} an hour",
                user.name, c.quota.per_hour
            ),
            60,
        ));
    }
    let cfg = served.config();
    let p = prefix_frames(cfg, c.extension_prefix_frames).map_err(ApiError::internal)?;
    let row = VideoRow {
        id,
        owner: user.name.clone(),
        status: Status::Queued,
        progress: 0,
        model: served.label(),
        prompt,
        seconds: seconds_label(spec.frames, cfg.fps),
        size: served.size(),
        created_at: now(),
        completed_at: None,
        error: None,
        remixed_from,
        batch_key: batch_key(&spec, cfg, p),
        spec,
        tries: 0,
        published: false,
    };
    if row.spec.characters.is_empty() {
        st.store.insert(&row)?;
    } else {
        st.store.insert_cast(&row)?;
    }
    metrics::counter!("sonora_jobs_created_total").increment(1);
    st.wake();
    Ok(row)
}

fn save_upload(st: &AppState, rel: &str, bytes: &[u8]) -> Result<(), ApiError> {
    write_atomic(&st.state_dir.join(rel), bytes).map_err(|e| {
        tracing::error!("storing an upload at {rel}: {e}");
        ApiError::internal("storing the upload failed; see the server's log")
    })
}

/// Create a video from a prompt (and optionally a first frame).
#[utoipa::path(post, path = "/v1/videos", tag = "videos",
    request_body(content = CreateVideoForm, content_type = "multipart/form-data"),
    responses((status = 200, body = VideoObject), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn create(
    State(st): State<Arc<AppState>>,
    Extension(user): Extension<User>,
    f: Fields,
) -> Result<Json<VideoObject>, ApiError> {
    f.only(&[
        "prompt",
        "model",
        "seconds",
        "size",
        "input_reference",
        "seed",
        "characters",
        "characters[",
    ])?;
    let served = st.model.get();
    let prompt = check_prompt(&st, &served, &f)?;
    check_model(&served, &f)?;
    check_size(&served, &f)?;
    let cfg = served.config();
    let frames = match f.get("seconds") {
        Some(s) => parse_seconds(s, cfg.fps, st.config.max_seconds)
            .map_err(|e| ApiError::bad("seconds", e))?,
        None => cfg.frames,
    };
    let seed = parse_seed(&f)?;
    let (cast, references) = resolve_cast(&st, &user, &f, &prompt, &[])?;
    let id = random_id("video_");
    let kind = if let Some(img) = f.files.get("input_reference") {
        decode_png(&img.bytes).map_err(|e| {
            ApiError::bad(
                "input_reference",
                format!("input_reference must be a PNG image (the first frame): {e}"),
            )
        })?;
        let rel = format!("uploads/{id}.png");
        save_upload(&st, &rel, &img.bytes)?;
        Kind::Image { image: rel }
    } else if f.text.keys().any(|k| k.starts_with("input_reference")) {
        return Err(ApiError::bad(
            "input_reference",
            "input_reference must be an uploaded PNG file (multipart), not a text value",
        ));
    } else {
        Kind::Text
    };
    let spec = JobSpec {
        kind,
        seed,
        frames,
        source_frames: 0,
        characters: cast.into_iter().map(|c| c.id).collect(),
        references,
        derived: String::new(),
    };
    let row = enqueue(&st, &served, &user, id, prompt, spec, None)?;
    Ok(Json(VideoObject::from(&row)))
}

/// The source of a remix, edit or extension: a completed video of the caller's (by id),
/// or an uploaded MP4, with its frame count.
async fn source_of(
    st: &Arc<AppState>,
    served: &Served,
    user: &User,
    id: &str,
    by_id: Option<&str>,
    upload: Option<&Upload>,
) -> Result<(Source, usize, Option<String>, Vec<String>), ApiError> {
    match (by_id, upload) {
        (Some(vid), None) => {
            let (src, _) = visible(st, user, vid)?;
            if src.owner != user.name && !src.published {
                return Err(ApiError::forbidden(format!(
                    "video {vid} is a draft of {}; only its creator may remix, edit or extend it until it is published",
                    src.owner
                )));
            }
            if src.status != Status::Completed {
                return Err(ApiError::conflict(
                    "video",
                    format!(
                        "video {vid} is {}; only a completed video can be remixed, edited or extended",
                        src.status.as_str()
                    ),
                ));
            }
            if src.size != served.size() {
                return Err(ApiError::bad(
                    "video",
                    format!(
                        "video {vid} is {}; the model served now makes {}",
                        src.size,
                        served.size()
                    ),
                ));
            }
            Ok((
                Source::Video(vid.to_string()),
                src.spec.frames,
                Some(vid.to_string()),
                src.spec.characters.clone(),
            ))
        }
        (None, Some(up)) => {
            let cfg = served.config().clone();
            let bytes = up.bytes.clone();
            let clip = tokio::task::spawn_blocking(move || clip_from_mp4(&bytes, &cfg))
                .await
                .map_err(|e| ApiError::internal(format!("decoding the upload: {e}")))?
                .map_err(|e| ApiError::bad("video", format!("the uploaded video: {e}")))?;
            let rel = format!("uploads/{id}.mp4");
            save_upload(st, &rel, &up.bytes)?;
            Ok((Source::Upload(rel), clip.frames.t, None, Vec::new()))
        }
        (Some(_), Some(_)) => Err(ApiError::bad(
            "video",
            "give the video as an upload or an id, not both",
        )),
        (None, None) => Err(ApiError::bad_code(
            "video",
            "missing_required_parameter",
            "`video` is required: an uploaded MP4 or {\"id\": …} of a completed video",
        )),
    }
}

/// The `{"id": …}` of an edit's or extension's `video` (`None` when it is an upload); a
/// `video` given as plain text is refused.
fn video_id_of(f: &Fields) -> Result<Option<String>, ApiError> {
    let by_id = f.get("video[id]").map(str::to_string);
    if by_id.is_none() && f.get("video").is_some() {
        return Err(ApiError::bad(
            "video",
            "`video` must be an uploaded MP4 or {\"id\": …}",
        ));
    }
    Ok(by_id)
}

/// A remix or edit of `source`.
async fn remix_job(
    st: Arc<AppState>,
    user: User,
    f: Fields,
    by_id: Option<String>,
    via: &str,
) -> Result<Json<VideoObject>, ApiError> {
    let served = st.model.get();
    let prompt = check_prompt(&st, &served, &f)?;
    let strength = parse_strength(&st, &f)?;
    let seed = parse_seed(&f)?;
    let id = random_id("video_");
    let (source, frames, from, carried) = source_of(
        &st,
        &served,
        &user,
        &id,
        by_id.as_deref(),
        f.files.get("video"),
    )
    .await?;
    let model_frames = served.config().frames;
    if frames < model_frames {
        return Err(ApiError::bad(
            "video",
            format!(
                "the source is {frames} frames; a remix needs at least the model's {model_frames}"
            ),
        ));
    }
    let (cast, references) = resolve_cast(&st, &user, &f, &prompt, &carried)?;
    let spec = JobSpec {
        kind: Kind::Remix { source, strength },
        seed,
        frames,
        source_frames: frames,
        characters: cast.into_iter().map(|c| c.id).collect(),
        references,
        derived: via.into(),
    };
    let row = enqueue(&st, &served, &user, id, prompt, spec, from)?;
    Ok(Json(VideoObject::from(&row)))
}

/// Remix a completed video under a new prompt.
#[utoipa::path(post, path = "/v1/videos/{video_id}/remix", tag = "videos",
    params(("video_id" = String, Path, description = "The video to remix")),
    request_body(content = DeriveVideoForm, content_type = "application/json"),
    responses((status = 200, body = VideoObject), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn remix(
    State(st): State<Arc<AppState>>,
    Extension(user): Extension<User>,
    Path(video_id): Path<String>,
    f: Fields,
) -> Result<Json<VideoObject>, ApiError> {
    f.only(&["prompt", "strength", "seed", "characters", "characters["])?;
    remix_job(st, user, f, Some(video_id), "remix").await
}

/// Edit a video (a completed one by id, or an uploaded MP4): a remix of it.
#[utoipa::path(post, path = "/v1/videos/edits", tag = "videos",
    request_body(content = DeriveVideoForm, content_type = "multipart/form-data"),
    responses((status = 200, body = VideoObject), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn edit(
    State(st): State<Arc<AppState>>,
    Extension(user): Extension<User>,
    f: Fields,
) -> Result<Json<VideoObject>, ApiError> {
    f.only(&[
        "prompt",
        "video",
        "video[id]",
        "strength",
        "seed",
        "characters",
        "characters[",
    ])?;
    let by_id = video_id_of(&f)?;
    remix_job(st, user, f, by_id, "edit").await
}

/// Extend a video: its continuation stitched after it.
#[utoipa::path(post, path = "/v1/videos/extensions", tag = "videos",
    request_body(content = DeriveVideoForm, content_type = "multipart/form-data"),
    responses((status = 200, body = VideoObject), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn extend(
    State(st): State<Arc<AppState>>,
    Extension(user): Extension<User>,
    f: Fields,
) -> Result<Json<VideoObject>, ApiError> {
    f.only(&[
        "prompt",
        "video",
        "video[id]",
        "seconds",
        "seed",
        "characters",
        "characters[",
    ])?;
    let by_id = video_id_of(&f)?;
    let served = st.model.get();
    let prompt = check_prompt(&st, &served, &f)?;
    let cfg = served.config().clone();
    let add = parse_seconds(f.require("seconds")?, cfg.fps, st.config.max_seconds)
        .map_err(|e| ApiError::bad("seconds", e))?;
    let seed = parse_seed(&f)?;
    let id = random_id("video_");
    let (source, frames, from, carried) = source_of(
        &st,
        &served,
        &user,
        &id,
        by_id.as_deref(),
        f.files.get("video"),
    )
    .await?;
    let p = prefix_frames(&cfg, st.config.extension_prefix_frames).map_err(ApiError::internal)?;
    if frames < p {
        return Err(ApiError::bad(
            "video",
            format!("the source is {frames} frames; an extension continues from its last {p}"),
        ));
    }
    let (cast, references) = resolve_cast(&st, &user, &f, &prompt, &carried)?;
    let spec = JobSpec {
        kind: Kind::Extension { source },
        seed,
        frames: frames + add,
        source_frames: frames,
        characters: cast.into_iter().map(|c| c.id).collect(),
        references,
        derived: "extension".into(),
    };
    let row = enqueue(&st, &served, &user, id, prompt, spec, from)?;
    Ok(Json(VideoObject::from(&row)))
}

/// Retrieve a video job.
#[utoipa::path(get, path = "/v1/videos/{video_id}", tag = "videos",
    params(("video_id" = String, Path, description = "The video")),
    responses((status = 200, body = VideoObject), (status = 404, body = ErrorBody)))]
pub async fn retrieve(
    State(st): State<Arc<AppState>>,
    Extension(user): Extension<User>,
    Path(video_id): Path<String>,
) -> Result<Response, ApiError> {
    let (row, _) = visible(&st, &user, &video_id)?;
    let mut r = Json(VideoObject::from(&row)).into_response();
    if matches!(row.status, Status::Queued | Status::InProgress)
        && let Ok(v) = st.config.poll_after_ms.to_string().parse()
    {
        r.headers_mut().insert("openai-poll-after-ms", v);
    }
    Ok(r)
}

/// List the caller's videos.
#[utoipa::path(get, path = "/v1/videos", tag = "videos", params(ListQuery),
    responses((status = 200, body = VideoList), (status = 400, body = ErrorBody)))]
pub async fn list(
    State(st): State<Arc<AppState>>,
    Extension(user): Extension<User>,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<VideoList>, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::bad("", format!("query: {}", e.body_text())))?;
    let limit = q.limit.unwrap_or(20);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::bad(
            "limit",
            format!("limit must be 1 to 100, got {limit}"),
        ));
    }
    let ascending = match q.order.as_deref() {
        None | Some("desc") => false,
        Some("asc") => true,
        Some(o) => {
            return Err(ApiError::bad(
                "order",
                format!("order must be asc or desc, got {o:?}"),
            ));
        }
    };
    let (rows, more) = st
        .store
        .list(&user.name, q.after.as_deref(), limit, ascending)?
        .ok_or_else(|| {
            ApiError::bad(
                "after",
                format!(
                    "after {:?} is not one of your videos",
                    q.after.unwrap_or_default()
                ),
            )
        })?;
    Ok(Json(VideoList::page(&rows, more)))
}

/// Delete a video (a queued or running one is cancelled).
#[utoipa::path(delete, path = "/v1/videos/{video_id}", tag = "videos",
    params(("video_id" = String, Path, description = "The video")),
    responses((status = 200, body = Deleted), (status = 404, body = ErrorBody)))]
pub async fn delete(
    State(st): State<Arc<AppState>>,
    Extension(user): Extension<User>,
    Path(video_id): Path<String>,
) -> Result<Json<Deleted>, ApiError> {
    // its creator, or the owner of a character in it
    let (row, chars) = visible(&st, &user, &video_id)?;
    let may_delete = row.owner == user.name
        || chars
            .iter()
            .any(|c| crate::characters::may(&user, c, Action::Delete));
    if !may_delete {
        return Err(ApiError::forbidden(format!(
            "video {video_id} was made by {}; only they (or the owner of a character in it) may delete it",
            row.owner
        )));
    }
    if !st.store.delete_any(&video_id)? {
        return Err(ApiError::not_found("video", &video_id));
    }
    let dir = video_dir(&st.state_dir, &video_id);
    if dir.exists()
        && let Err(e) = std::fs::remove_dir_all(&dir)
    {
        tracing::warn!("removing {}: {e}", dir.display());
    }
    Ok(Json(Deleted {
        id: video_id,
        object: "video.deleted",
        deleted: true,
    }))
}

/// Download a completed video's MP4, thumbnail or spritesheet.
#[utoipa::path(get, path = "/v1/videos/{video_id}/content", tag = "videos",
    params(("video_id" = String, Path, description = "The video"), ContentQuery),
    responses((status = 200, description = "video/mp4 or image/png bytes"), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)))]
pub async fn content(
    State(st): State<Arc<AppState>>,
    Extension(user): Extension<User>,
    Path(video_id): Path<String>,
    q: Result<Query<ContentQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::bad("", format!("query: {}", e.body_text())))?;
    let variant = q.variant.as_deref().unwrap_or("video");
    let (file, mime) = match variant {
        "video" | "preview" => ("video.mp4", "video/mp4"),
        "thumbnail" => ("thumbnail.png", "image/png"),
        "spritesheet" => ("spritesheet.png", "image/png"),
        v => {
            return Err(ApiError::bad(
                "variant",
                format!("variant must be video, thumbnail, spritesheet or preview, got {v:?}"),
            ));
        }
    };
    let preview = variant == "preview";
    let (row, chars) = visible(&st, &user, &video_id)?;
    if row.status != Status::Completed {
        return Err(ApiError::conflict(
            "video_id",
            format!(
                "video {video_id} is {}; its content exists once it is completed",
                row.status.as_str()
            ),
        ));
    }
    // a draft casting someone else's character stays on the server (a marked preview
    // streams to those who may see it)
    if !row.published
        && !preview
        && let Some(c) = chars
            .iter()
            .find(|c| !crate::characters::may(&user, c, Action::Download))
    {
        return Err(ApiError::forbidden(format!(
            "video {video_id} is a draft that casts {}'s character {} ({}); it can be downloaded once published (with sonora's mark)",
            c.owner, c.name, c.id
        )));
    }
    // the mark: always on a video with a character, unless every character is the
    // downloader's own and the server allows that clean; on others as configured
    let only_own = !chars.is_empty() && chars.iter().all(|c| c.owner == user.name);
    let mark = if preview {
        true
    } else if chars.is_empty() {
        st.config.watermark
    } else {
        !(only_own && st.config.clean_own_character_downloads)
    };
    let file = if mark {
        file.replace('.', ".wm.")
    } else {
        file.to_string()
    };
    let path = video_dir(&st.state_dir, &video_id).join(&file);
    let bytes = tokio::fs::read(&path).await.map_err(|e| {
        tracing::error!("{}: {e}", path.display());
        ApiError::internal(format!("the {file} of {video_id} could not be read"))
    })?;
    Ok(([(header::CONTENT_TYPE, mime)], bytes).into_response())
}

/// Publish a completed video: it joins the feed every user reads, and anyone may remix it
/// (if they may cast its characters).
#[utoipa::path(post, path = "/v1/videos/{video_id}/publish", tag = "videos",
    params(("video_id" = String, Path, description = "The video")),
    responses((status = 200, body = VideoObject), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn publish(
    State(st): State<Arc<AppState>>,
    Extension(user): Extension<User>,
    Path(video_id): Path<String>,
) -> Result<Json<VideoObject>, ApiError> {
    let (row, _) = visible(&st, &user, &video_id)?;
    if row.owner != user.name {
        return Err(ApiError::forbidden(format!(
            "video {video_id} was made by {}; only they may publish it",
            row.owner
        )));
    }
    if !st.store.publish(&user.name, &video_id)? {
        return Err(ApiError::conflict(
            "video_id",
            format!(
                "video {video_id} is {}; only a completed video can be published",
                row.status.as_str()
            ),
        ));
    }
    let (row, _) = visible(&st, &user, &video_id)?;
    Ok(Json(VideoObject::from(&row)))
}

/// `GET /v1/videos/feed` query.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct FeedQuery {
    /// The last id of the previous page.
    after: Option<String>,
    /// 1–100 (default 20).
    limit: Option<usize>,
}

/// Published videos of every user, newest first.
#[utoipa::path(get, path = "/v1/videos/feed", tag = "videos", params(FeedQuery),
    responses((status = 200, body = VideoList), (status = 400, body = ErrorBody)))]
pub async fn feed(
    State(st): State<Arc<AppState>>,
    q: Result<Query<FeedQuery>, QueryRejection>,
) -> Result<Json<VideoList>, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::bad("", format!("query: {}", e.body_text())))?;
    let limit = q.limit.unwrap_or(20);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::bad(
            "limit",
            format!("limit must be 1 to 100, got {limit}"),
        ));
    }
    let (rows, more) = st
        .store
        .feed(q.after.as_deref(), limit)?
        .ok_or_else(|| ApiError::bad("after", "after is not a published video"))?;
    Ok(Json(VideoList::page(&rows, more)))
}
