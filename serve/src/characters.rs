//! Characters: a person, pet or object registered from a video (or reference images) by
//! its owner, cast into new clips under the owner's rule ([`crate::consent`]). The
//! server keeps `references_per_character` reference images per character: frames
//! sampled evenly from the video (frame `(k + ½)·T/N`), centre-cropped to a square and
//! resized to the model's `ref_size`, stored as `STATE/characters/ID/ref-K.png`.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::{Extension, Json};
use rand::RngCore;
use serde::Serialize;
use sonora_framework::fsutil::write_atomic;
use sonora_framework::media::{decode_mp4, decode_png, encode_png, resize_rgb};
use utoipa::ToSchema;

use crate::consent::{Action, Relation, Rule, allowed};
use crate::error::{ApiError, ErrorBody};
use crate::form::Fields;
use crate::state::AppState;
use crate::store::{AuditEntry, Character, JobError, Status, now};
use crate::videos::{User, VideoList};
use crate::worker::video_dir;

/// A character as the API returns it (the SDK's `id`, `name`, `created_at`, and sonora's
/// owner, rule and restrictions).
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct CharacterObject {
    /// `char_…`.
    pub id: String,
    /// Always `character`.
    pub object: &'static str,
    /// Its name (`@name` in prompts).
    pub name: String,
    /// Unix seconds.
    pub created_at: i64,
    /// The user who registered it.
    pub owner: String,
    /// `only_me`, `approved` or `everyone`.
    pub rule: String,
    /// Users the owner approved.
    pub approved: Vec<String>,
    /// Free-text restrictions for those who may use it.
    pub restrictions: String,
    /// Reference images kept.
    pub references: usize,
}

impl From<&Character> for CharacterObject {
    fn from(c: &Character) -> Self {
        Self {
            id: c.id.clone(),
            object: "character",
            name: c.name.clone(),
            created_at: c.created_at as i64,
            owner: c.owner.clone(),
            rule: c.rule.as_str().into(),
            approved: c.approved.clone(),
            restrictions: c.restrictions.clone(),
            references: c.references,
        }
    }
}

/// A page of characters.
#[derive(Serialize, ToSchema)]
pub struct CharacterList {
    /// Always `list`.
    pub object: &'static str,
    /// The characters.
    pub data: Vec<CharacterObject>,
}

/// The answer to deleting a character.
#[derive(Serialize, ToSchema)]
pub struct CharacterDeleted {
    /// The id.
    pub id: String,
    /// Always `character.deleted`.
    pub object: &'static str,
    /// Always true.
    pub deleted: bool,
    /// The videos deleted with it.
    pub videos_deleted: Vec<String>,
}

/// A character's audit log.
#[derive(Serialize, ToSchema)]
pub struct AuditLog {
    /// Always `list`.
    pub object: &'static str,
    /// Uses, oldest first.
    #[schema(value_type = Vec<Object>)]
    pub data: Vec<AuditEntry>,
}

/// The fields a create or update request may send.
const CHARACTER_FIELDS: &[&str] = &[
    "name",
    "video",
    "reference",
    "references",
    "references[",
    "rule",
    "approved",
    "approved[",
    "restrictions",
];

/// The caller's relation to `c`.
pub fn relation(user: &User, c: &Character) -> Relation {
    Relation::of(&user.name, &c.owner, &c.approved)
}

/// Whether `user` may do `action` with `c`.
pub fn may(user: &User, c: &Character, action: Action) -> bool {
    allowed(c.rule, relation(user, c), action)
}

/// A reference image: `rgb` (`w × h`) centre-cropped to a square and resized to `size`.
fn fit_reference(rgb: &[u8], w: usize, h: usize, size: usize) -> Result<Vec<u8>, String> {
    let side = w.min(h);
    let (x0, y0) = ((w - side) / 2, (h - side) / 2);
    let mut sq = Vec::with_capacity(side * side * 3);
    for y in y0..y0 + side {
        sq.extend_from_slice(&rgb[(y * w + x0) * 3..(y * w + x0 + side) * 3]);
    }
    resize_rgb(&sq, side, side, size, size).map_err(|e| e.to_string())
}

/// The reference images of a create or update request: PNG files under `references…`,
/// else frames sampled from the `video` upload. `None` when neither was sent.
fn references_of(st: &AppState, f: &Fields) -> Result<Option<Vec<Vec<u8>>>, ApiError> {
    let size = st.model.get().config().ref_size;
    let images: Vec<_> = f
        .files
        .iter()
        .filter(|(k, _)| k.starts_with("references") || k.as_str() == "reference")
        .collect();
    if !images.is_empty() {
        let mut out = Vec::new();
        for (k, up) in images {
            let (rgb, h, w) = decode_png(&up.bytes)
                .map_err(|e| ApiError::bad(k, format!("`{k}` must be a PNG image: {e}")))?;
            out.push(fit_reference(&rgb, w, h, size).map_err(|e| ApiError::bad(k, e))?);
        }
        return Ok(Some(out));
    }
    let Some(video) = f.files.get("video") else {
        return Ok(None);
    };
    if video.bytes.is_empty() {
        return Err(ApiError::bad("video", "the uploaded video is empty"));
    }
    let d = decode_mp4(&video.bytes).map_err(|e| {
        ApiError::bad(
            "video",
            format!("the uploaded video is not a playable MP4: {e}"),
        )
    })?;
    let t = d.frames.t;
    if t == 0 {
        return Err(ApiError::bad(
            "video",
            "the uploaded video has no decodable frames",
        ));
    }
    let n = st.config.references_per_character.min(t);
    (0..n)
        .map(|k| {
            let i = ((2 * k + 1) * t / (2 * n)).min(t - 1);
            fit_reference(d.frames.frame(i), d.frames.w, d.frames.h, size)
                .map_err(|e| ApiError::bad("video", e))
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// [`references_of`] off the async runtime (decoding a video takes a while).
async fn read_references(st: &Arc<AppState>, f: &Fields) -> Result<Option<Vec<Vec<u8>>>, ApiError> {
    let (st, f) = (st.clone(), f.clone());
    tokio::task::spawn_blocking(move || references_of(&st, &f))
        .await
        .map_err(|e| ApiError::internal(format!("reading the upload: {e}")))?
}

/// Whether `owner` already has a character named `name`.
fn name_taken(st: &AppState, owner: &str, name: &str) -> Result<bool, ApiError> {
    Ok(st
        .store
        .characters_named(name)?
        .iter()
        .any(|c| c.owner == owner))
}

fn check_name(name: &str) -> Result<(), ApiError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad(
            "name",
            format!(
                "a character name is 1 to 64 letters, digits, `_` or `-` (it is cast as @name), got {name:?}"
            ),
        ))
    }
}

/// The `approved` users of a request: `approved` (comma-separated) or `approved[N]`, each a
/// user of this server.
fn approved_of(st: &AppState, f: &Fields) -> Result<Option<Vec<String>>, ApiError> {
    let mut v: Vec<String> = Vec::new();
    let mut given = false;
    for (k, x) in &f.text {
        if k == "approved" {
            given = true;
            v.extend(
                x.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string),
            );
        } else if k.starts_with("approved[") {
            given = true;
            v.push(x.trim().to_string());
        }
    }
    if !given {
        return Ok(None);
    }
    for u in &v {
        if !st.store.user_exists(u)? {
            return Err(ApiError::bad(
                "approved",
                format!("approved names {u:?}, who is not a user of this server"),
            ));
        }
    }
    v.sort();
    v.dedup();
    Ok(Some(v))
}

fn save_references(st: &AppState, id: &str, refs: &[Vec<u8>]) -> Result<(), ApiError> {
    let size = st.model.get().config().ref_size;
    let dir = st.state_dir.join("characters").join(id);
    for (k, px) in refs.iter().enumerate() {
        let png = encode_png(px, size, size).map_err(|e| ApiError::internal(e.to_string()))?;
        write_atomic(&dir.join(format!("ref-{k}.png")), &png).map_err(|e| {
            tracing::error!("storing a reference of {id}: {e}");
            ApiError::internal("storing the reference images failed; see the server's log")
        })?;
    }
    Ok(())
}

/// The reference images of a stored character, `(RGB, w, h)`.
pub fn load_references(
    st: &AppState,
    c: &Character,
) -> Result<Vec<(Vec<u8>, usize, usize)>, String> {
    (0..c.references)
        .map(|k| {
            let p = st
                .state_dir
                .join("characters")
                .join(&c.id)
                .join(format!("ref-{k}.png"));
            let b = std::fs::read(&p).map_err(|e| format!("{}: {e}", p.display()))?;
            let (rgb, h, w) = decode_png(&b).map_err(|e| format!("{}: {e}", p.display()))?;
            Ok((rgb, w, h))
        })
        .collect()
}

/// A character the caller may at least view, else 404.
fn viewable(st: &AppState, user: &User, id: &str) -> Result<Character, ApiError> {
    match st.store.character(id)? {
        Some(c) if may(user, &c, Action::View) => Ok(c),
        _ => Err(ApiError::not_found("character", id)),
    }
}

/// A character the caller owns (`action` is the owner's alone): 404 when they cannot see
/// it, 403 when they can but do not own it.
fn owned(st: &AppState, user: &User, id: &str, action: Action) -> Result<Character, ApiError> {
    let c = viewable(st, user, id)?;
    if !may(user, &c, action) {
        return Err(ApiError::forbidden(format!(
            "only {}'s owner may do this with character {} ({})",
            c.name, c.id, c.owner
        )));
    }
    Ok(c)
}

/// Register a character from a video (or reference images).
#[utoipa::path(post, path = "/v1/videos/characters", tag = "characters",
    request_body(content_type = "multipart/form-data", description = "`name`, and `video` (MP4) or `references[]` (PNG files); sonora's `rule`, `approved`, `restrictions`"),
    responses((status = 200, body = CharacterObject), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn create(
    State(st): State<Arc<AppState>>,
    Extension(user): Extension<User>,
    f: Fields,
) -> Result<Json<CharacterObject>, ApiError> {
    f.only(CHARACTER_FIELDS)?;
    let name = f.require("name")?.trim().to_string();
    check_name(&name)?;
    if name_taken(&st, &user.name, &name)? {
        return Err(ApiError::conflict(
            "name",
            format!("you already have a character named {name:?}"),
        ));
    }
    let rule = match f.get("rule") {
        Some(r) => Rule::parse(r).map_err(|e| ApiError::bad("rule", e))?,
        None => Rule::OnlyMe,
    };
    let approved = approved_of(&st, &f)?.unwrap_or_default();
    let refs = read_references(&st, &f).await?.ok_or_else(|| {
        ApiError::bad_code(
            "video",
            "missing_required_parameter",
            "`video` (an MP4 of the character) or `references[]` (PNG images) is required",
        )
    })?;
    let mut b = [0u8; 12];
    rand::rng().fill_bytes(&mut b);
    let c = Character {
        id: format!("char_{}", hex::encode(b)),
        owner: user.name.clone(),
        name,
        rule,
        approved,
        restrictions: f.get("restrictions").unwrap_or("").to_string(),
        references: refs.len(),
        created_at: now(),
    };
    save_references(&st, &c.id, &refs)?;
    st.store.add_character(&c)?;
    Ok(Json(CharacterObject::from(&c)))
}

/// A character the caller may use.
#[utoipa::path(get, path = "/v1/videos/characters/{character_id}", tag = "characters",
    params(("character_id" = String, Path, description = "The character")),
    responses((status = 200, body = CharacterObject), (status = 404, body = ErrorBody)))]
pub async fn retrieve(
    State(st): State<Arc<AppState>>,
    Extension(user): Extension<User>,
    Path(id): Path<String>,
) -> Result<Json<CharacterObject>, ApiError> {
    Ok(Json(CharacterObject::from(&viewable(&st, &user, &id)?)))
}

/// The characters the caller may use (their own first).
#[utoipa::path(get, path = "/v1/videos/characters", tag = "characters",
    responses((status = 200, body = CharacterList)))]
pub async fn list(
    State(st): State<Arc<AppState>>,
    Extension(user): Extension<User>,
) -> Result<Json<CharacterList>, ApiError> {
    let mut data: Vec<Character> = st
        .store
        .characters()?
        .into_iter()
        .filter(|c| may(&user, c, Action::View))
        .collect();
    data.sort_by_key(|c| (c.owner != user.name, c.created_at as i64));
    Ok(Json(CharacterList {
        object: "list",
        data: data.iter().map(CharacterObject::from).collect(),
    }))
}

/// Change a character's name, rule, approved users, restrictions or references (owner
/// only). Queued jobs of users who may no longer cast it fail with the reason.
#[utoipa::path(post, path = "/v1/videos/characters/{character_id}", tag = "characters",
    params(("character_id" = String, Path, description = "The character")),
    request_body(content_type = "multipart/form-data", description = "any of `name`, `rule`, `approved`, `restrictions`, `video` or `references[]`"),
    responses((status = 200, body = CharacterObject), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn update(
    State(st): State<Arc<AppState>>,
    Extension(user): Extension<User>,
    Path(id): Path<String>,
    f: Fields,
) -> Result<Json<CharacterObject>, ApiError> {
    f.only(CHARACTER_FIELDS)?;
    let mut c = owned(&st, &user, &id, Action::Delete)?;
    if let Some(n) = f.get("name") {
        let n = n.trim().to_string();
        check_name(&n)?;
        if n != c.name && name_taken(&st, &user.name, &n)? {
            return Err(ApiError::conflict(
                "name",
                format!("you already have a character named {n:?}"),
            ));
        }
        c.name = n;
    }
    if let Some(r) = f.get("rule") {
        c.rule = Rule::parse(r).map_err(|e| ApiError::bad("rule", e))?;
    }
    if let Some(a) = approved_of(&st, &f)? {
        c.approved = a;
    }
    if let Some(r) = f.get("restrictions") {
        c.restrictions = r.to_string();
    }
    if let Some(refs) = read_references(&st, &f).await? {
        save_references(&st, &c.id, &refs)?;
        c.references = refs.len();
    }
    st.store.update_character(&c)?;
    // uses that the new rule no longer allows stop now: their queued jobs fail
    for v in st.store.videos_with(&c.id)? {
        let caster = User {
            name: v.owner.clone(),
            admin: false,
        };
        if v.status == Status::Queued && !may(&caster, &c, Action::Cast) {
            st.store.fail_queued(
                &v.id,
                &JobError {
                    code: "character_revoked".into(),
                    message: format!(
                        "{} may no longer cast character {} ({}): its owner changed who may use it",
                        v.owner, c.name, c.id
                    ),
                },
            )?;
        }
    }
    Ok(Json(CharacterObject::from(&c)))
}

/// Delete a character and every video containing it (owner only).
#[utoipa::path(delete, path = "/v1/videos/characters/{character_id}", tag = "characters",
    params(("character_id" = String, Path, description = "The character")),
    responses((status = 200, body = CharacterDeleted), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn delete(
    State(st): State<Arc<AppState>>,
    Extension(user): Extension<User>,
    Path(id): Path<String>,
) -> Result<Json<CharacterDeleted>, ApiError> {
    let c = owned(&st, &user, &id, Action::Delete)?;
    let videos = st.store.delete_character(&c.id)?;
    for v in &videos {
        let _ = std::fs::remove_dir_all(video_dir(&st.state_dir, v));
    }
    let _ = std::fs::remove_dir_all(st.state_dir.join("characters").join(&c.id));
    Ok(Json(CharacterDeleted {
        id: c.id,
        object: "character.deleted",
        deleted: true,
        videos_deleted: videos,
    }))
}

/// Every video that contains the character, whoever made it (owner only).
#[utoipa::path(get, path = "/v1/videos/characters/{character_id}/videos", tag = "characters",
    params(("character_id" = String, Path, description = "The character")),
    responses((status = 200, body = VideoList), (status = 403, body = ErrorBody)))]
pub async fn videos(
    State(st): State<Arc<AppState>>,
    Extension(user): Extension<User>,
    Path(id): Path<String>,
) -> Result<Json<VideoList>, ApiError> {
    let c = owned(&st, &user, &id, Action::List)?;
    let rows = st.store.videos_with(&c.id)?;
    Ok(Json(VideoList::page(&rows, false)))
}

/// Who cast the character when (owner only).
#[utoipa::path(get, path = "/v1/videos/characters/{character_id}/audit", tag = "characters",
    params(("character_id" = String, Path, description = "The character")),
    responses((status = 200, body = AuditLog), (status = 403, body = ErrorBody)))]
pub async fn audit(
    State(st): State<Arc<AppState>>,
    Extension(user): Extension<User>,
    Path(id): Path<String>,
) -> Result<Json<AuditLog>, ApiError> {
    let c = owned(&st, &user, &id, Action::List)?;
    Ok(Json(AuditLog {
        object: "list",
        data: st.store.audit(&c.id)?,
    }))
}
