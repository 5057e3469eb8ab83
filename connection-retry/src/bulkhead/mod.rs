//! bulkhead (in progress)
