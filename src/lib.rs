//! tether: an nginx-flavoured sticky L7 load balancer for real-time app farms.

pub mod config;
pub mod balance;
pub mod peer;
pub mod proxy;
pub mod route;
pub mod snapshot;
pub mod upstream;
pub mod vars;
pub mod server;
pub mod demo;
