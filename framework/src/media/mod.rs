//! Media I/O (being written).
