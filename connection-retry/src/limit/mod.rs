//! limit (in progress)
