//! Waymark's core: the journey model and its DSL, the pure engine, the ports (traits) it runs
//! behind, and their local and AWS adapters. Nothing here knows whether it runs in Lambda,
//! in `waymark dev` or in a simulation.

pub mod alloc;
pub mod api;
pub mod auth;
pub mod catalog;
pub mod clock;
pub mod condition;
pub mod counter;
pub mod cron;
pub mod dsl;
pub mod duration;
pub mod engine;
pub mod enrollment;
pub mod erase;
pub mod event;
pub mod journey;
pub mod outbox;
pub mod profile;
pub mod progress;
pub mod provider;
pub mod queue;
pub mod render;
pub mod runtime;
pub mod scheduled;
pub mod secrets;
pub mod shape;
pub mod shards;
pub mod simulate;
pub mod small_map;
pub mod stats;
pub mod store;
pub mod template;
pub mod timeline;
pub mod topic;
pub mod webhook;
pub mod zones;

#[cfg(feature = "aws")]
pub mod aws;
#[cfg(feature = "local")]
pub mod local;
