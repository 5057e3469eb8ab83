//! Demo (work in progress)
fn main() {}
