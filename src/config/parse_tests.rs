//! Grammar and include tests for `parse`.

use std::fs;

use super::*;

fn parse(text: &str) -> Parsed {
    parse_main(Path::new("t.conf"), text.to_string())
}

fn ok(text: &str) -> Vec<Directive> {
    let parsed = parse(text);
    assert!(parsed.errors.is_empty(), "{:?}", parsed.errors);
    parsed.directives
}

fn error(text: &str) -> String {
    let parsed = parse(text);
    assert_eq!(parsed.errors.len(), 1, "{:?}", parsed.errors);
    parsed.errors[0].to_string()
}

fn texts(d: &Directive) -> Vec<&str> {
    d.arg_texts()
}

#[test]
fn directives_words_and_blocks() {
    let tree = ok("worker_processes 2;\nhttp {\n  server { listen 80; }\n}\n");
    assert_eq!(tree.len(), 2);
    assert_eq!(tree[0].name(), "worker_processes");
    assert_eq!(texts(&tree[0]), ["2"]);
    assert!(tree[0].block.is_none());
    let http = tree[1].block.as_ref().expect("http has a block");
    let server = http[0].block.as_ref().expect("server has a block");
    assert_eq!(server[0].name(), "listen");
    assert_eq!(server[0].span.to_string(), "t.conf:3:12");
    assert_eq!(server[0].args[0].span.to_string(), "t.conf:3:19");
}

#[test]
fn quotes_and_escapes() {
    let tree = ok(r#"a "x y" 'it\'s' "q\"q" "t\tn\nr\r" "b\\s" "~*\.php$" '' "";"#);
    let words: Vec<&str> = texts(&tree[0]);
    assert_eq!(
        words,
        [
            "x y",
            "it's",
            "q\"q",
            "t\tn\nr\r",
            "b\\s",
            "~*\\.php$",
            "",
            ""
        ]
    );
    assert!(tree[0].args.iter().all(|w| w.quoted));
    // Bare words resolve escapes too, and keep unknown ones.
    let tree = ok(r"location ~ \.php$ { }");
    assert_eq!(texts(&tree[0]), ["~", r"\.php$"]);
    assert!(!tree[0].args[0].quoted);
}

#[test]
fn comments_end_at_line_end() {
    let tree = ok("# top\na 1; # trailing { ; }\n# b 2;\nc x#y;");
    assert_eq!(tree.len(), 2);
    assert_eq!(texts(&tree[1]), ["x#y"]);
}

#[test]
fn braced_variables_keep_their_braces() {
    let tree = ok("return 200 ${host}x/$uri;");
    assert_eq!(texts(&tree[0]), ["200", "${host}x/$uri"]);
}

#[test]
fn spans_count_characters() {
    let tree = ok("a 1;\n  é \"x\";");
    assert_eq!(tree[1].span.to_string(), "t.conf:2:3");
    assert_eq!(tree[1].args[0].span.to_string(), "t.conf:2:5");
}

#[test]
fn syntax_errors_name_the_place() {
    assert_eq!(
        error("http {\n  server {\n    listen 80\n  }\n}\n"),
        "unexpected \"}\" in t.conf:4:3"
    );
    assert_eq!(error("a 1;\n}\n"), "unexpected \"}\" in t.conf:2:1");
    assert_eq!(
        error("a 1;\nb 2"),
        "unexpected end of file, expecting \";\" or \"}\" in t.conf:2:4"
    );
    assert_eq!(
        error("http {\n a 1;\n"),
        "unexpected end of file, expecting \"}\" in t.conf:3:1"
    );
    assert_eq!(
        error("a \"open;\nb 2;\n"),
        "unterminated quoted string in t.conf:1:3"
    );
    assert_eq!(error("a \"x\"y;"), "unexpected \"y\" in t.conf:1:6");
    assert_eq!(error("  ;"), "unexpected \";\" in t.conf:1:3");
}

#[test]
fn includes_expand_in_place_with_globs() {
    let dir = tempfile::tempdir().expect("temp dir");
    let conf = dir.path().join("conf");
    fs::create_dir_all(conf.join("sites")).expect("mkdir");
    fs::write(conf.join("sites/b.conf"), "b 2;").expect("write");
    fs::write(conf.join("sites/a.conf"), "a 1;").expect("write");
    // An editor's lock file beside them is not part of the config (glob(3) skips dot files).
    fs::write(conf.join("sites/.#a.conf"), "broken").expect("write");
    fs::write(conf.join("one.conf"), "one 1;").expect("write");
    let main = conf.join("main.conf");
    let text = "first;\nhttp { include sites/*.conf; include none/*.conf; }\ninclude one.conf;\n";
    let parsed = parse_main(&main, text.to_string());
    assert!(parsed.errors.is_empty(), "{:?}", parsed.errors);
    let http = parsed.directives[1].block.as_ref().expect("block");
    let names: Vec<&str> = http.iter().map(Directive::name).collect();
    assert_eq!(names, ["a", "b"]);
    assert_eq!(parsed.directives[2].name(), "one");
    assert_eq!(
        parsed.files,
        [
            main.clone(),
            conf.join("sites/a.conf"),
            conf.join("sites/b.conf"),
            conf.join("one.conf")
        ]
    );
    // Spans of included directives name the included file.
    assert_eq!(
        http[1].span.to_string(),
        format!("{}:1:1", conf.join("sites/b.conf").display())
    );
}

#[test]
fn include_errors() {
    let dir = tempfile::tempdir().expect("temp dir");
    let main = dir.path().join("main.conf");
    fs::write(dir.path().join("bad.conf"), "x 1;\n}").expect("write");
    fs::write(dir.path().join("loop.conf"), "include main.conf;").expect("write");
    fs::write(&main, "include loop.conf;").expect("write");
    let text = "include missing.conf;\ninclude bad.conf;\ninclude loop.conf;\ninclude a b;\n";
    let parsed = parse_main(&main, text.to_string());
    let messages: Vec<String> = parsed.errors.iter().map(ToString::to_string).collect();
    let d = dir.path().display();
    assert_eq!(
        messages,
        [
            format!(
                "open() \"{d}/missing.conf\" failed (No such file or directory) in {d}/main.conf:1:1"
            ),
            format!("unexpected \"}}\" in {d}/bad.conf:2:1"),
            format!("include cycle: \"{d}/main.conf\" includes itself in {d}/loop.conf:1:1"),
            format!("invalid number of arguments in \"include\" directive in {d}/main.conf:4:1"),
        ]
    );
}
