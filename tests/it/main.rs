//! The integration tests: one binary, running the real `ztwim-hub` binary.
mod sims;
mod support;

mod bad_input;
mod cli;
mod e2e_script;
mod kind_config;
mod live_hub;
mod live_kind_hub;
mod live_kind_spoke;
mod live_refusals;
mod live_spoke;
mod render;
mod render_kind;
mod schema;
mod semantics;
