//! The rewrite programs run on plain requests, without sockets: captures, `$args` handling,
//! flags, `set`, `if` conditions and which `if` configuration applies.

use crate::header_list::HeaderList;
use std::path::Path;

use http::{Method, Uri, Version};

use super::*;
use crate::config::{ConfigError, load_str};
use crate::vars::{RequestFacts, empty_request};

/// The server-level program of `server { DIRECTIVES }`, with the config's variables.
fn program(directives: &str) -> (Program, Vars) {
    let text = format!("http {{ server {{ listen 127.0.0.1:1; {directives} }} }}");
    let config = load_str(Path::new("t.conf"), &text, Path::new(".")).expect("config");
    let declared = declared_names(&config);
    let vars = Vars::build_with(&config.http.maps, &declared).expect("vars");
    let mut errors: Vec<ConfigError> = Vec::new();
    let program = Compiler {
        vars: &vars,
        errors: &mut errors,
    }
    .program(&config.http.servers[0].rewrite);
    assert!(errors.is_empty(), "{errors:?}");
    (program, vars)
}

/// What running `directives` on `target` gives: how it ended (as text), `$uri?$args` after.
fn run(directives: &str, target: &str) -> (String, String) {
    let (program, vars) = program(directives);
    let uri: Uri = target.parse().unwrap();
    let path = crate::route::path::normalise(uri.path())
        .unwrap()
        .into_owned();
    let headers = HeaderList::new();
    let base = RequestInfo {
        method: &Method::GET,
        uri: &uri,
        path: &path,
        host: "example.com",
        version: Version::HTTP_11,
        headers: &headers,
        facts: &RequestFacts::NONE,
        ..empty_request()
    };
    let mut locals = Locals::default();
    let ran = program.run(&vars, &base, &mut locals);
    let info = RequestInfo {
        locals: Some(&locals),
        ..base
    };
    let end = match ran.end {
        End::Done { search_again } => format!("done again={search_again}"),
        End::Return(action) => {
            let mut text = String::new();
            if let Some(template) = &action.text {
                template.render(&vars, &info, &mut text);
            }
            format!("return {} {text}", action.code.as_u16())
        }
        End::Redirect { code, location } => format!("redirect {} {location}", code.as_u16()),
    };
    let now = format!(
        "{}?{}",
        String::from_utf8_lossy(info.current_path()),
        info.current_args()
    );
    (end, now)
}

#[test]
fn rewrite_uses_captures_and_keeps_or_replaces_arguments() {
    let rule = |replacement: &str| format!("rewrite ^/old/(.*)$ {replacement};");
    assert_eq!(
        run(&rule("/new/$1"), "/old/a/b?x=1"),
        ("done again=true".into(), "/new/a/b?x=1".into())
    );
    // New arguments come first, the old ones after `&`.
    assert_eq!(
        run(&rule("/new?item=$1"), "/old/a?x=1").1,
        "/new?item=a&x=1"
    );
    // A final `?` drops the old arguments.
    assert_eq!(run(&rule("/new?item=$1?"), "/old/a?x=1").1, "/new?item=a");
    assert_eq!(run(&rule("/new?"), "/old/a?x=1").1, "/new?");
    // No match: nothing changes.
    assert_eq!(
        run(&rule("/new/$1"), "/other?x=1"),
        ("done again=false".into(), "/other?x=1".into())
    );
}

#[test]
fn flags_decide_what_follows() {
    let (end, _) = run("rewrite ^/a /b last; return 200 late;", "/a");
    assert_eq!(end, "done again=true");
    let (end, now) = run("rewrite ^/a /b break; return 200 late;", "/a");
    assert_eq!((end.as_str(), now.as_str()), ("done again=false", "/b?"));
    // Without a flag the next directives run, and they see the new URI.
    let (end, _) = run("rewrite ^/a /b; return 200 $uri;", "/a");
    assert_eq!(end, "return 200 /b");
    assert_eq!(
        run("rewrite ^/a(.*) /b$1 permanent;", "/a/x?q=1").0,
        "redirect 301 /b/x?q=1"
    );
    assert_eq!(
        run("rewrite ^/a(.*) /b?n=$1 redirect;", "/a/x?q=1").0,
        "redirect 302 /b?n=/x&q=1"
    );
    // A replacement that starts with a scheme redirects whatever the flag.
    assert_eq!(
        run("rewrite ^ https://$host$uri last;", "/p").0,
        "redirect 302 https://example.com/p"
    );
}

#[test]
fn set_and_if_with_nginx_conditions() {
    let script = r#"
        set $who anonymous;
        if ($arg_user) { set $who $arg_user; }
        if ($arg_mode = "admin") { return 403 "no $who"; }
        if ($uri ~* ^/Files/(?<name>[^/]+)\.(\w+)$) { return 200 "$who $name $2"; }
        if ($uri !~ ^/keep) { return 404; }
        break;
        return 500;
    "#;
    assert_eq!(run(script, "/x?mode=admin").0, "return 403 no anonymous");
    assert_eq!(
        run(script, "/files/report.pdf?user=ann").0,
        "return 200 ann report pdf"
    );
    assert_eq!(run(script, "/other").0, "return 404 ");
    assert_eq!(run(script, "/keep").0, "done again=false");
    // `0` and empty are false.
    assert_eq!(
        run("if ($arg_a) { return 200; }", "/?a=0").0,
        "done again=false"
    );
    assert_eq!(run("if ($arg_a) { return 200; }", "/?a=1").0, "return 200 ");
    assert_eq!(
        run("if ($arg_a != 1) { return 204; }", "/?a=2").0,
        "return 204 "
    );
}

#[test]
fn set_args_changes_the_arguments() {
    let (_, now) = run("set $args v=2;", "/p?v=1");
    assert_eq!(now, "/p?v=2");
}

#[test]
fn set_refuses_the_variables_tether_computes() {
    let text = "http { map $uri $mapped { default 1; } server { listen 127.0.0.1:1; \
                set $host x; set $mapped y; set $Own z; set $args a=1; } }";
    let config = load_str(Path::new("t.conf"), text, Path::new(".")).expect("config");
    let errors = Vars::build_with(&config.http.maps, &declared_names(&config))
        .expect_err("two variables cannot be set")
        .0;
    let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert_eq!(
        shown,
        [
            r#"the "host" variable cannot be changed with "set" in t.conf:1:69"#,
            r#"the "mapped" variable cannot be changed with "set" in t.conf:1:82"#,
        ]
    );
}
