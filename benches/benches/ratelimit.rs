//! Being written (see the issue tracker); replaced by the real benchmark.
fn main() {}
