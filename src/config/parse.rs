//! Config text -> directive tree, with nginx's lexical rules, and `include` expansion.
//!
//! The nom parsers here only know words, quoted strings, comments, `;`, `{` and `}`; no directive
//! is typed (that is `lower`'s job). `include PATTERN;` is the one exception: it is expanded in
//! place while parsing, anywhere in the tree, as nginx does, so `lower` never sees it.
//!
//! Like nginx, a syntax error ends the parse of its file (one syntax error per file); a failed
//! `include` is reported and parsing goes on. Must not import `model` or `lower`.
//!
//! Hostile text must not take the process down: blocks and includes nest at most
//! [`MAX_BLOCK_DEPTH`] and [`MAX_INCLUDE_DEPTH`] deep (the parse recurses per level, and so do
//! dropping and comparing the tree), and every step is linear in the text.

use std::collections::HashSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use nom::branch::alt;
use nom::bytes::complete::{is_not, tag, take_till, take_while1};
use nom::character::complete::{anychar, char, one_of, satisfy};
use nom::combinator::recognize;
use nom::multi::{many0_count, many1_count};
use nom::{IResult, Parser};

use super::ast::{Directive, Word};
use super::error::{ConfigError, ErrorKind, Expecting};
use super::source::{Locator, SourceFile};

/// How deep blocks may nest, counting the blocks around an `include` too. Real configs need
/// 4 or 5 levels (main > http > server > location > nested location); 50 leaves ample room,
/// while the text `${${${...` alone opens one block per two bytes (a bare word ends before `{`).
/// Each level costs the recursive parse a few hundred bytes of stack (a few KiB in a debug
/// build), so 50 levels fit easily in the 2 MiB of a tokio blocking thread, where reloads parse.
pub const MAX_BLOCK_DEPTH: usize = 50;

/// How deep `include`s may nest (a file including one that includes ...). Cycles are caught
/// separately; this bounds a long chain of distinct files, for the same reason as blocks.
pub const MAX_INCLUDE_DEPTH: usize = 50;

/// The result of parsing a main file and everything it includes.
#[derive(Debug)]
pub struct Parsed {
    /// Top-level directives, with includes spliced in.
    pub directives: Vec<Directive>,
    /// Every file read, main file first, each once.
    pub files: Vec<PathBuf>,
    /// Every `include` pattern with wildcards, absolute, in file order (also those matching
    /// nothing yet).
    pub include_globs: Vec<glob::Pattern>,
    /// Syntax and include errors; lowering should not run when this is not empty.
    pub errors: Vec<ConfigError>,
}

/// Parses the main file's `text`; `path` names it in spans, and its folder is the base for
/// relative `include` patterns (also inside included files, as nginx does).
pub fn parse_main(path: &Path, text: String) -> Parsed {
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut includer = Includer {
        base,
        files: Vec::new(),
        include_globs: Vec::new(),
        seen: HashSet::new(),
        stack: Vec::new(),
        errors: Vec::new(),
    };
    let directives = includer.parse_file(path.to_path_buf(), text, 0);
    Parsed {
        directives,
        files: includer.files,
        include_globs: includer.include_globs,
        errors: includer.errors,
    }
}

/// Parses files and expands includes, remembering what it read and where it is.
struct Includer {
    base: PathBuf,
    files: Vec<PathBuf>,
    include_globs: Vec<glob::Pattern>,
    /// The same as a set, so a glob of thousands of files is not checked against a list.
    seen: HashSet<PathBuf>,
    /// Canonical paths of the files being parsed, outermost first, to catch include cycles.
    stack: Vec<PathBuf>,
    errors: Vec<ConfigError>,
}

impl Includer {
    /// Parses one file whose directives sit `depth` blocks deep (inside the blocks around the
    /// `include` that names it).
    fn parse_file(&mut self, path: PathBuf, text: String, depth: usize) -> Vec<Directive> {
        if self.seen.insert(path.clone()) {
            self.files.push(path.clone());
        }
        self.stack.push(canonical(&path));
        let file = SourceFile::new(path, text);
        let mut lexer = Lexer {
            file: &file,
            rest: &file.text,
            locator: Locator::new(&file),
        };
        let directives = match self.parse_block(&mut lexer, depth, false) {
            Ok(directives) => directives,
            Err(error) => {
                self.errors.push(error);
                Vec::new()
            }
        };
        self.stack.pop();
        directives
    }

    /// Parses directives up to the end of the file (`nested == false`) or the block's `}`;
    /// they sit `depth` blocks deep.
    fn parse_block(
        &mut self,
        lx: &mut Lexer,
        depth: usize,
        nested: bool,
    ) -> Result<Vec<Directive>, ConfigError> {
        let mut out = Vec::new();
        loop {
            let (token, at) = lx.next()?;
            let name = match token {
                Token::Word(word) => word,
                Token::Eof if nested => {
                    return Err(lx.error(
                        at,
                        ErrorKind::UnexpectedEof {
                            expecting: Expecting::CloseBrace,
                        },
                    ));
                }
                Token::Eof => return Ok(out),
                Token::Close if nested => return Ok(out),
                Token::Close => return Err(lx.error(at, ErrorKind::Unexpected { found: '}' })),
                Token::Semicolon => return Err(lx.error(at, ErrorKind::Unexpected { found: ';' })),
                Token::Open => return Err(lx.error(at, ErrorKind::Unexpected { found: '{' })),
            };
            let mut args = Vec::new();
            let block = loop {
                let (token, at) = lx.next()?;
                match token {
                    Token::Word(word) => args.push(word),
                    Token::Semicolon => break None,
                    Token::Open if depth >= MAX_BLOCK_DEPTH => {
                        let limit = MAX_BLOCK_DEPTH;
                        return Err(lx.error(at, ErrorKind::BlocksTooDeep { limit }));
                    }
                    Token::Open => break Some(self.parse_block(lx, depth + 1, true)?),
                    Token::Close => {
                        return Err(lx.error(at, ErrorKind::Unexpected { found: '}' }));
                    }
                    Token::Eof => {
                        return Err(lx.error(
                            at,
                            ErrorKind::UnexpectedEof {
                                expecting: Expecting::SemicolonOrBrace,
                            },
                        ));
                    }
                }
            };
            let directive = Directive {
                span: name.span.clone(),
                name,
                args,
                block,
            };
            if directive.name() == "include" {
                out.extend(self.include(&directive, depth));
            } else {
                out.push(directive);
            }
        }
    }

    /// Expands `include PATTERN;`, written `depth` blocks deep, into the directives of the
    /// files it names.
    fn include(&mut self, d: &Directive, depth: usize) -> Vec<Directive> {
        if d.block.is_some() {
            self.errors.push(ConfigError::at(
                &d.span,
                ErrorKind::NotTerminated {
                    name: "include".into(),
                },
            ));
            return Vec::new();
        }
        let [pattern] = d.args.as_slice() else {
            self.errors.push(ConfigError::at(
                &d.span,
                ErrorKind::InvalidArgCount {
                    name: "include".into(),
                },
            ));
            return Vec::new();
        };
        let pattern = pattern.text.as_str();
        if !pattern.contains(['*', '?', '[']) {
            let path = if Path::new(pattern).is_absolute() {
                PathBuf::from(pattern)
            } else {
                self.base.join(pattern)
            };
            return self.include_file(path, d, depth);
        }
        // The base folder is escaped so that a `[` in it is not taken for a glob class.
        let full = if Path::new(pattern).is_absolute() {
            pattern.to_string()
        } else {
            let base = glob::Pattern::escape(&self.base.to_string_lossy());
            Path::new(&base)
                .join(pattern)
                .to_string_lossy()
                .into_owned()
        };
        let paths = match glob::glob_with(&full, INCLUDE_GLOB) {
            Ok(paths) => paths,
            Err(e) => {
                self.errors.push(ConfigError::at(
                    &d.span,
                    ErrorKind::InvalidGlob {
                        pattern: pattern.to_string(),
                        message: e.msg.to_string(),
                    },
                ));
                return Vec::new();
            }
        };
        self.record_glob(pattern);
        // glob yields paths in alphabetical order, which is the order nginx includes them in.
        let mut out = Vec::new();
        for entry in paths {
            match entry {
                Ok(path) => out.extend(self.include_file(path, d, depth)),
                Err(e) => self.errors.push(open_failed(e.path(), e.error(), d)),
            }
        }
        out
    }

    /// Keeps a valid wildcard pattern, absolute, for the reload watcher: the files it will
    /// match later are part of the config too.
    fn record_glob(&mut self, pattern: &str) {
        let base = match std::path::absolute(&self.base) {
            Ok(base) => base,
            // An empty base (a main file named without a folder) is the current directory.
            Err(_) => std::env::current_dir().unwrap_or_default(),
        };
        let base = glob::Pattern::escape(&base.to_string_lossy());
        let full = Path::new(&base).join(pattern);
        if let Ok(pattern) = glob::Pattern::new(&full.to_string_lossy()) {
            self.include_globs.push(pattern);
        }
    }

    fn include_file(&mut self, path: PathBuf, d: &Directive, depth: usize) -> Vec<Directive> {
        if self.stack.contains(&canonical(&path)) {
            self.errors
                .push(ConfigError::at(&d.span, ErrorKind::IncludeCycle { path }));
            return Vec::new();
        }
        // The stack holds the main file too: an include in it makes level 1.
        if self.stack.len() > MAX_INCLUDE_DEPTH {
            let limit = MAX_INCLUDE_DEPTH;
            let kind = ErrorKind::IncludesTooDeep { limit };
            self.errors.push(ConfigError::at(&d.span, kind));
            return Vec::new();
        }
        match fs::read_to_string(&path) {
            Ok(text) => self.parse_file(path, text, depth),
            Err(e) => {
                self.errors.push(open_failed(&path, &e, d));
                Vec::new()
            }
        }
    }
}

/// How `include` patterns match, as glob(3) does for nginx: `*` stops at `/` and does not
/// match a leading dot, so editor droppings (`.#tether.conf`, `.tether.conf.swp`) beside the
/// config are never included.
pub const INCLUDE_GLOB: glob::MatchOptions = glob::MatchOptions {
    case_sensitive: true,
    require_literal_separator: true,
    require_literal_leading_dot: true,
};

/// The path to compare for cycles; in-memory main files that do not exist compare as written.
fn canonical(path: &Path) -> PathBuf {
    fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}

fn open_failed(path: &Path, error: &io::Error, d: &Directive) -> ConfigError {
    ConfigError::at(
        &d.span,
        ErrorKind::OpenFailed {
            path: path.to_path_buf(),
            reason: os_reason(error),
        },
    )
}

/// The OS's wording without Rust's ` (os error 2)` suffix, so messages read like nginx's.
pub fn os_reason(error: &io::Error) -> String {
    let text = error.to_string();
    match text.find(" (os error") {
        Some(end) => text[..end].to_string(),
        None => text,
    }
}

/// One lexical token and where it starts.
enum Token {
    Word(Word),
    Semicolon,
    Open,
    Close,
    Eof,
}

/// Walks one file's text token by token.
struct Lexer<'a> {
    file: &'a SourceFile,
    rest: &'a str,
    /// Spans for the offsets the lexer reaches, which only grow.
    locator: Locator<'a>,
}

impl Lexer<'_> {
    fn offset(&self) -> usize {
        self.file.text.len() - self.rest.len()
    }

    fn error(&mut self, offset: usize, kind: ErrorKind) -> ConfigError {
        ConfigError::at(&self.locator.span_at(offset), kind)
    }

    fn next(&mut self) -> Result<(Token, usize), ConfigError> {
        // `trivia` cannot fail: it matches zero or more items, each consuming input.
        if let Ok((rest, _)) = trivia(self.rest) {
            self.rest = rest;
        }
        let at = self.offset();
        let token = match self.rest.chars().next() {
            None => Token::Eof,
            Some(c @ (';' | '{' | '}')) => {
                self.rest = &self.rest[1..];
                match c {
                    ';' => Token::Semicolon,
                    '{' => Token::Open,
                    _ => Token::Close,
                }
            }
            Some('"' | '\'') => {
                let Ok((rest, Some(body))) = quoted(self.rest) else {
                    return Err(self.error(at, ErrorKind::UnterminatedQuote));
                };
                self.rest = rest;
                // nginx wants a separator after a closing quote: `"a"b` is an error. A `)`
                // may follow, as in `if ($x = "a")`: nginx makes it a word of its own.
                if let Some(found) = self.rest.chars().next()
                    && !is_space(found)
                    && !matches!(found, ';' | '{' | '}' | ')')
                {
                    return Err(self.error(self.offset(), ErrorKind::Unexpected { found }));
                }
                Token::Word(self.word(body, true, at))
            }
            Some(_) => {
                let Ok((rest, body)) = bare_word(self.rest) else {
                    // Unreachable in practice: any other first character starts a word.
                    let found = self.rest.chars().next().unwrap_or(' ');
                    return Err(self.error(at, ErrorKind::Unexpected { found }));
                };
                self.rest = rest;
                Token::Word(self.word(body, false, at))
            }
        };
        Ok((token, at))
    }

    fn word(&mut self, raw: &str, quoted: bool, at: usize) -> Word {
        Word {
            text: unescape(raw),
            quoted,
            span: self.locator.span_at(at),
        }
    }
}

type Res<'a, O> = IResult<&'a str, O>;

fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

/// Whitespace and `#` comments.
fn trivia(input: &str) -> Res<'_, usize> {
    let comment = recognize((char('#'), take_till(|c| c == '\n')));
    many0_count(alt((take_while1(is_space), comment))).parse(input)
}

/// `\` and the character it protects.
fn escape_pair(input: &str) -> Res<'_, &str> {
    recognize((char('\\'), anychar)).parse(input)
}

/// A bare word: up to whitespace, `;`, `{` or `}`, except that `${name}` keeps its braces.
fn bare_word(input: &str) -> Res<'_, &str> {
    // The name stops at a `{` too (no variable name has one): a `${` that does not close
    // then scans only up to the next `{`, so a run of `${${${...` costs linear time, not a
    // scan to the end of the run from every `$`.
    let braced_variable = recognize((
        tag("${"),
        take_till(|c: char| matches!(c, '}' | ';' | '{') || is_space(c)),
        char('}'),
    ));
    let plain = recognize(satisfy(|c| !is_space(c) && !matches!(c, ';' | '{' | '}')));
    recognize(many1_count(alt((braced_variable, escape_pair, plain)))).parse(input)
}

/// A single- or double-quoted string: the raw body, or `None` if the file ends first.
fn quoted(input: &str) -> Res<'_, Option<&str>> {
    let (rest, quote) = one_of("\"'").parse(input)?;
    let stop = if quote == '"' { "\\\"" } else { "\\'" };
    let (rest, body) = recognize(many0_count(alt((is_not(stop), escape_pair)))).parse(rest)?;
    match char::<_, nom::error::Error<&str>>(quote).parse(rest) {
        Ok((rest, _)) => Ok((rest, Some(body))),
        Err(_) => Ok((rest, None)),
    }
}

/// Resolves `\"`, `\'`, `\\`, `\n`, `\t`, `\r`; keeps any other `\x` as written (nginx does, and
/// regexes depend on it).
fn unescape(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some(e @ ('"' | '\'' | '\\')) => out.push(e),
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    out
}

#[cfg(test)]
#[path = "parse_tests.rs"]
mod tests;
