//! The event filter on real folders: which paths concern the config and which folders are
//! watched, for a plain file, a Kubernetes ConfigMap layout, and include patterns.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use super::*;
use crate::config;

fn sources(files: &[PathBuf], globs: &[String]) -> Sources {
    Sources {
        files: files.to_vec(),
        globs: globs
            .iter()
            .map(|pattern| glob::Pattern::new(pattern).expect("a valid pattern"))
            .collect(),
    }
}

/// A temporary folder, canonical (the file watcher reports real paths).
fn folder() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temporary folder");
    let path = dir.path().canonicalize().expect("canonical path");
    (dir, path)
}

#[test]
fn a_plain_file_is_its_own_only_hop() {
    let (_dir, dir) = folder();
    let conf = dir.join("tether.conf");
    fs::write(&conf, "").expect("write");
    assert_eq!(hops(&conf), [conf]);
    // A missing file too: its creation is what to wait for.
    assert_eq!(hops(&dir.join("gone.conf")), [dir.join("gone.conf")]);
}

#[test]
fn the_config_file_and_what_replaces_it_concern_the_config_and_nothing_beside_it() {
    let (_dir, dir) = folder();
    let conf = dir.join("tether.conf");
    fs::write(&conf, "").expect("write");
    let interest = Interest::of(&sources(std::slice::from_ref(&conf), &[]));
    assert_eq!(interest.folders(), &BTreeSet::from([dir.clone()]));
    // An editor's save ends in a rename whose target is the file itself.
    assert!(interest.wants(&conf));
    for unrelated in [
        "access.log",
        ".tether.conf.swp",
        "4913",
        "tether.conf~",
        "tether.conf.tmp",
        "other.conf",
    ] {
        assert!(!interest.wants(&dir.join(unrelated)), "{unrelated}");
    }
}

#[test]
fn a_configmap_swap_concerns_the_config_through_its_symlinks() {
    // tether.conf -> ..data/tether.conf, ..data -> ..2026_01, as the kubelet lays it out.
    let (_dir, dir) = folder();
    fs::create_dir(dir.join("..2026_01")).expect("version folder");
    fs::write(dir.join("..2026_01/tether.conf"), "").expect("versioned file");
    symlink("..2026_01", dir.join("..data")).expect("..data");
    symlink("..data/tether.conf", dir.join("tether.conf")).expect("tether.conf");

    let conf = dir.join("tether.conf");
    assert_eq!(
        hops(&conf),
        [
            conf.clone(),
            dir.join("..data"),
            dir.join("..2026_01/tether.conf")
        ]
    );
    let interest = Interest::of(&sources(std::slice::from_ref(&conf), &[]));
    // The update renames ..data_tmp over ..data: the event names ..data.
    assert!(interest.wants(&dir.join("..data")));
    assert!(!interest.wants(&dir.join("..data_tmp")));
    assert!(!interest.wants(&dir.join("..2026_02")));
    assert_eq!(
        interest.folders(),
        &BTreeSet::from([dir.clone(), dir.join("..2026_01")])
    );
}

#[test]
fn symlinks_are_resolved_component_by_component_and_bounded() {
    let (_dir, dir) = folder();
    fs::create_dir_all(dir.join("real/deep")).expect("folders");
    fs::write(dir.join("real/tether.conf"), "").expect("write");
    // `deep/..` after a symlinked folder means the folder the link points into, as the kernel
    // reads it, not the folder the link sits in.
    symlink(dir.join("real/deep"), dir.join("shortcut")).expect("shortcut");
    let through = dir.join("shortcut/../tether.conf");
    let resolved = hops(&through);
    assert_eq!(resolved.last(), Some(&dir.join("real/tether.conf")));
    assert!(resolved.contains(&dir.join("shortcut")));

    // A loop ends after MAX_LINKS links instead of spinning.
    symlink("loop-b", dir.join("loop-a")).expect("loop-a");
    symlink("loop-a", dir.join("loop-b")).expect("loop-b");
    let looped = hops(&dir.join("loop-a"));
    assert!(looped.len() <= MAX_LINKS + 2, "{} hops", looped.len());
}

#[test]
fn a_new_file_matching_an_include_pattern_concerns_the_config() {
    let (_dir, dir) = folder();
    fs::create_dir(dir.join("conf.d")).expect("conf.d");
    let pattern = format!("{}/conf.d/*.conf", dir.display());
    let interest = Interest::of(&sources(&[], &[pattern]));
    assert_eq!(interest.folders(), &BTreeSet::from([dir.join("conf.d")]));
    assert!(interest.wants(&dir.join("conf.d/new.conf")));
    for unrelated in [
        "conf.d/new.conf~",
        "conf.d/4913",
        "conf.d/sub/x.conf",
        "x.conf",
    ] {
        assert!(!interest.wants(&dir.join(unrelated)), "{unrelated}");
    }
}

#[test]
fn a_missing_include_folder_is_waited_for_in_the_folder_above() {
    let (_dir, dir) = folder();
    let pattern = format!("{}/conf.d/*.conf", dir.display());
    let interest = Interest::of(&sources(&[], &[pattern]));
    assert_eq!(interest.folders(), &BTreeSet::from([dir.clone()]));
    assert!(interest.wants(&dir.join("conf.d")), "conf.d appearing");
    assert!(!interest.wants(&dir.join("conf.e")));
}

#[test]
fn wildcard_folders_are_each_watched_and_a_new_one_counts() {
    let (_dir, dir) = folder();
    fs::create_dir(dir.join("sites-a")).expect("sites-a");
    fs::create_dir(dir.join("other")).expect("other");
    let pattern = format!("{}/sites-*/*.conf", dir.display());
    let interest = Interest::of(&sources(&[], &[pattern]));
    assert_eq!(
        interest.folders(),
        &BTreeSet::from([dir.join("sites-a"), dir.clone()])
    );
    assert!(interest.wants(&dir.join("sites-a/x.conf")));
    assert!(interest.wants(&dir.join("sites-b")), "a new sites-* folder");
    assert!(!interest.wants(&dir.join("other")));
    assert!(!interest.wants(&dir.join("other/x.conf")));
}

#[test]
fn include_patterns_are_recorded_absolute_with_their_folder_escaped() {
    let (_dir, dir) = folder();
    // A folder name glob would read as a character class if it were not escaped.
    let weird = dir.join("we[ir]d");
    fs::create_dir_all(weird.join("conf.d")).expect("folders");
    let main = weird.join("tether.conf");
    fs::write(&main, "include conf.d/*.conf;").expect("write");
    let loaded = config::load(&main, &weird).expect("loads");
    let [pattern] = loaded.include_globs.as_slice() else {
        panic!("one pattern: {:?}", loaded.include_globs);
    };
    assert!(pattern.matches_path(&weird.join("conf.d/a.conf")));
    assert!(!pattern.matches_path(&dir.join("wed/conf.d/a.conf")));

    // A main file named relative to the current folder gets an absolute pattern all the same.
    let relative = config::load_str(Path::new("conf/x.conf"), "include conf.d/*.conf;", &dir)
        .expect("loads (the pattern matches nothing)");
    let cwd = std::env::current_dir().expect("current folder");
    assert!(relative.include_globs[0].matches_path(&cwd.join("conf/conf.d/a.conf")));
}

#[test]
fn literal_undoes_escapes_and_refuses_wildcards() {
    assert_eq!(literal("/a/b").as_deref(), Some("/a/b"));
    let escaped = glob::Pattern::escape("/a[1]/*?");
    assert_eq!(literal(&escaped).as_deref(), Some("/a[1]/*?"));
    assert_eq!(literal("/a/*.conf"), None);
    assert_eq!(literal("/a/[ab]"), None);
}
