//! Synthetic physics world (being written).
