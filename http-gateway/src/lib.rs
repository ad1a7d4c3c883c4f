//! The legacy form-POST HTTP API of the licensing service, translated call by call onto the
//! core's gRPC API. The gateway keeps no state and applies no business rule: it parses forms,
//! calls the core, and shapes the answer the way deployed clients expect.

// Imports run one way (`startup` -> `routes` -> `transfer` -> `core_client`, and `listener`
// below `startup` and `routes`), so a second face can sit beside `routes` on the same core client
// and listener without either knowing it is there: `dashboard` is that face (`startup` ->
// `dashboard` -> `transfer` -> `core_client`).
mod client_addr;
pub mod config;
mod core_client;
mod dashboard;
pub mod error;
pub mod forms;
mod listener;
mod listing;
mod metrics;
mod replies;
mod routes;
pub mod startup;
mod transfer;

#[cfg(test)]
mod fuzz;

pub use config::{Cli, GatewayConfig};
pub use ipnet::IpNet;
pub use startup::{Gateway, StartupError};
