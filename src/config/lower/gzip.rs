//! `gzip`, `gzip_types`, `gzip_min_length`, `gzip_comp_level`, `gzip_proxied`, `gzip_vary`,
//! `gzip_disable` and `gzip_http_version` at http, server and location level, inherited field
//! by field like the other proxy settings ([`super::proxy`]); the lists (`gzip_types`,
//! `gzip_disable`, which add up over several lines of one level) as a whole, and only by a
//! level that writes none. `gzip_buffers` is
//! accepted without effect (`directives`): the compressor streams. Must not import other
//! `lower` contexts.

use super::Lowering;
use crate::config::ast::{Directive, Word};
use crate::config::model::{Gzip, GzipDisable, GzipHttpVersion, GzipProxied, GzipTypes};

/// The `gzip*` settings written at one level; `None` means "inherit".
#[derive(Clone, Debug, Default)]
pub(super) struct GzipLayer {
    enabled: Option<bool>,
    types: Option<GzipTypes>,
    min_length: Option<u64>,
    comp_level: Option<u32>,
    proxied: Option<GzipProxied>,
    vary: Option<bool>,
    disable: Option<GzipDisable>,
    http_version: Option<GzipHttpVersion>,
}

impl GzipLayer {
    /// This level's settings, falling back to `outer`'s field by field.
    pub(super) fn over(&self, outer: &GzipLayer) -> GzipLayer {
        fn pick<T: Clone>(inner: &Option<T>, outer: &Option<T>) -> Option<T> {
            inner.as_ref().or(outer.as_ref()).cloned()
        }
        GzipLayer {
            enabled: pick(&self.enabled, &outer.enabled),
            types: pick(&self.types, &outer.types),
            min_length: pick(&self.min_length, &outer.min_length),
            comp_level: pick(&self.comp_level, &outer.comp_level),
            proxied: pick(&self.proxied, &outer.proxied),
            vary: pick(&self.vary, &outer.vary),
            disable: pick(&self.disable, &outer.disable),
            http_version: pick(&self.http_version, &outer.http_version),
        }
    }

    /// The effective settings: this layer over nginx's defaults.
    pub(super) fn resolve(self) -> Gzip {
        let d = Gzip::default();
        Gzip {
            enabled: self.enabled.unwrap_or(d.enabled),
            types: self.types.unwrap_or(d.types),
            min_length: self.min_length.unwrap_or(d.min_length),
            comp_level: self.comp_level.unwrap_or(d.comp_level),
            proxied: self.proxied.unwrap_or(d.proxied),
            vary: self.vary.unwrap_or(d.vary),
            disable: self.disable.unwrap_or(d.disable),
            http_version: self.http_version.unwrap_or(d.http_version),
        }
    }
}

impl Lowering {
    /// Applies `d` to `layer` if it is a `gzip*` setting; false if it is not one. `d` has
    /// passed [`Lowering::accepts`].
    pub(super) fn gzip_setting(&mut self, layer: &mut GzipLayer, d: &Directive) -> bool {
        let word = &d.args[0];
        match d.name() {
            "gzip" => self.once(&mut layer.enabled, d, |cx| cx.flag(d, word)),
            "gzip_vary" => self.once(&mut layer.vary, d, |cx| cx.flag(d, word)),
            "gzip_min_length" => self.once(&mut layer.min_length, d, |cx| cx.size(d, word)),
            "gzip_comp_level" => {
                self.once(&mut layer.comp_level, d, |cx| cx.comp_level(d, word));
            }
            "gzip_http_version" => {
                let version = match word.text.as_str() {
                    "1.0" => Some(GzipHttpVersion::Http10),
                    "1.1" => Some(GzipHttpVersion::Http11),
                    _ => None,
                };
                self.once(&mut layer.http_version, d, |cx| {
                    version.or_else(|| {
                        cx.invalid_value(d, word);
                        None
                    })
                });
            }
            "gzip_types" => {
                // Several lines add up, as in nginx, and `*` on any of them wins.
                let written = gzip_types(d);
                layer.types = Some(match (layer.types.take(), written) {
                    (Some(GzipTypes::List(mut earlier)), GzipTypes::List(more)) => {
                        earlier.extend(more);
                        GzipTypes::List(earlier)
                    }
                    (Some(GzipTypes::Any), _) | (_, GzipTypes::Any) => GzipTypes::Any,
                    (None, written) => written,
                });
            }
            "gzip_proxied" => self.once(&mut layer.proxied, d, |cx| cx.gzip_proxied(d)),
            "gzip_disable" => {
                // Several lines add up, as in nginx; the list as a whole is what inherits.
                let disable = layer.disable.get_or_insert_with(GzipDisable::default);
                for word in &d.args {
                    if word.text == "msie6" {
                        disable.msie6 = true;
                    } else {
                        self.check_regex(&word.span, &word.text, true);
                        disable.patterns.push(word.text.clone());
                    }
                }
            }
            _ => return false,
        }
        true
    }

    /// `gzip_comp_level 1..9`.
    fn comp_level(&mut self, d: &Directive, word: &Word) -> Option<u32> {
        let level = word
            .text
            .parse::<u32>()
            .ok()
            .filter(|l| (1..=9).contains(l));
        level.or_else(|| {
            self.invalid_value(d, word);
            None
        })
    }

    /// `gzip_proxied off | expired | no-cache | no-store | private | no_last_modified |
    /// no_etag | auth | any ...`.
    fn gzip_proxied(&mut self, d: &Directive) -> Option<GzipProxied> {
        let mut proxied = GzipProxied::default();
        let mut valid = true;
        for word in &d.args {
            let flag = match word.text.as_str() {
                "off" => &mut proxied.off,
                "any" => &mut proxied.any,
                "expired" => &mut proxied.expired,
                "no-cache" => &mut proxied.no_cache,
                "no-store" => &mut proxied.no_store,
                "private" => &mut proxied.private,
                "no_last_modified" => &mut proxied.no_last_modified,
                "no_etag" => &mut proxied.no_etag,
                "auth" => &mut proxied.auth,
                _ => {
                    self.invalid_value(d, word);
                    valid = false;
                    continue;
                }
            };
            *flag = true;
        }
        valid.then_some(proxied)
    }
}

/// `gzip_types MIME ...`: `*` anywhere means every type, as in nginx; types compare without
/// case.
fn gzip_types(d: &Directive) -> GzipTypes {
    if d.args.iter().any(|word| word.text == "*") {
        return GzipTypes::Any;
    }
    GzipTypes::List(d.args.iter().map(|w| w.text.to_ascii_lowercase()).collect())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::model::{Config, Gzip, GzipHttpVersion, GzipProxied, GzipTypes};

    fn lower(text: &str) -> Result<Config, String> {
        let loaded = crate::config::load_str(Path::new("t.conf"), text, Path::new("/prefix"));
        loaded.map_err(|errors| errors.to_string())
    }

    fn gzip_of(config: &Config, server: usize, location: usize) -> Gzip {
        config.http.servers[server].locations[location]
            .proxy
            .gzip
            .clone()
    }

    #[test]
    fn settings_inherit_field_by_field_and_lists_as_a_whole() {
        let config = lower(
            "http { upstream b { server 127.0.0.1:1; }
              gzip on; gzip_types text/css Application/JSON; gzip_comp_level 5;
              gzip_disable msie6 \"Bot\\d\";
              server { listen 8080; gzip_vary on;
                location / { proxy_pass http://b; gzip_types *; gzip_proxied expired auth; }
                location /off { proxy_pass http://b; gzip off; gzip_http_version 1.0;
                                gzip_min_length 1k; gzip_disable Lynx; } } }",
        )
        .unwrap();
        let first = gzip_of(&config, 0, 0);
        assert!(first.enabled && first.vary);
        assert_eq!(first.types, GzipTypes::Any);
        assert_eq!(first.comp_level, 5);
        assert_eq!(first.min_length, 20);
        assert!(first.disable.msie6);
        assert_eq!(first.disable.patterns, ["Bot\\d"]);
        let proxied = GzipProxied {
            expired: true,
            auth: true,
            ..GzipProxied::default()
        };
        assert_eq!(first.proxied, proxied);
        assert_eq!(first.http_version, GzipHttpVersion::Http11);
        let second = gzip_of(&config, 0, 1);
        assert!(!second.enabled && second.vary);
        let types = GzipTypes::List(vec!["text/css".into(), "application/json".into()]);
        assert_eq!(second.types, types);
        assert_eq!(second.min_length, 1024);
        assert_eq!(second.http_version, GzipHttpVersion::Http10);
        assert!(!second.disable.msie6);
        assert_eq!(second.disable.patterns, ["Lynx"]);
        assert_eq!(second.proxied, GzipProxied::OFF);
    }

    #[test]
    fn type_lines_add_up_and_a_star_wins() {
        let config = lower(
            "http { upstream b { server 127.0.0.1:1; }
              server { listen 8080; gzip_types text/css; gzip_types text/xml;
                location / { proxy_pass http://b; gzip_types text/css; gzip_types *; } } }",
        )
        .unwrap();
        let server_level = GzipTypes::List(vec!["text/css".into(), "text/xml".into()]);
        assert_eq!(config.http.servers[0].locations.len(), 1);
        assert_eq!(gzip_of(&config, 0, 0).types, GzipTypes::Any);
        let config = lower(
            "http { upstream b { server 127.0.0.1:1; }
              server { listen 8080; gzip_types text/css; gzip_types text/xml;
                location / { proxy_pass http://b; } } }",
        )
        .unwrap();
        assert_eq!(gzip_of(&config, 0, 0).types, server_level);
    }

    #[test]
    fn bad_values_are_reported_together() {
        let errors = lower(
            "http { server { listen 8080; gzip maybe; gzip_comp_level 10;
              gzip_proxied expired sometimes; gzip_http_version 2.0; gzip_disable \"(\";
              gzip_vary on; gzip_vary off; } }",
        )
        .unwrap_err();
        for expected in [
            "invalid value \"maybe\" in \"gzip\" directive, it must be \"on\" or \"off\"",
            "invalid value \"10\" in \"gzip_comp_level\" directive",
            "invalid value \"sometimes\" in \"gzip_proxied\" directive",
            "invalid value \"2.0\" in \"gzip_http_version\" directive",
            "invalid regex \"(\"",
            "\"gzip_vary\" directive is duplicate",
        ] {
            assert!(errors.contains(expected), "{expected} not in:\n{errors}");
        }
    }
}
