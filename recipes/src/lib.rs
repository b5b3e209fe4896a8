//! sonora-recipes: config-driven training recipes (pretrain, fine-tune, character fine-tune).
//!
//! Not yet built: the training loop arrives with the recipes issue. This crate is
//! intentionally empty so the workspace layout matches the design card.
