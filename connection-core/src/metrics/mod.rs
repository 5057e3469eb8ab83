//! Metrics (placeholder)
