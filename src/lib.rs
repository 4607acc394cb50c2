//! tether: an nginx-flavoured sticky L7 load balancer for real-time app farms.

pub mod config;
