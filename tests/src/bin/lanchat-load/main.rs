//! lanchat-load: the load generator (placeholder; see issue 9).
fn main() {}
