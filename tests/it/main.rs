//! The integration tests: one binary, running the real `ztwim-hub` binary.
mod support;

mod bad_input;
mod cli;
mod render;
mod schema;
mod semantics;
