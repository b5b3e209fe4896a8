//! sonora-serve: the HTTP API (OpenAI Videos API shape), job queue, characters, storage.
//!
//! Not yet built: the server arrives with the serving issue. This crate is intentionally
//! empty so the workspace layout matches the design card.
