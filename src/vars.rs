//! STUB until the vars module lands: same public API, no variables.
use std::net::SocketAddr;

use crate::config::{ConfigError, ConfigErrors, Map, Span};

/// Everything a variable can read about one request.
pub struct RequestInfo<'a> {
    pub method: &'a http::Method,
    pub uri: &'a http::Uri,
    pub version: http::Version,
    pub headers: &'a http::HeaderMap,
    pub client: SocketAddr,
    pub local: SocketAddr,
    pub scheme: &'a str,
    pub server_name: &'a str,
    pub proxy_host: &'a str,
}
pub struct Vars;
impl Vars {
    pub fn build(_maps: &[Map]) -> Result<Vars, ConfigErrors> {
        Ok(Vars)
    }
    pub fn compile(&self, text: &str, _span: &Span) -> Result<Template, ConfigError> {
        Ok(Template(text.to_string()))
    }
}
pub struct Template(String);
impl Template {
    pub fn literal(&self) -> Option<&str> {
        Some(&self.0)
    }
    pub fn has_variables(&self) -> bool {
        false
    }
    pub fn render(&self, _vars: &Vars, _req: &RequestInfo, out: &mut String) {
        out.push_str(&self.0)
    }
}
