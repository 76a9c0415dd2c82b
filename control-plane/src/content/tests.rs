//! Content root resolution (traversal, absolute paths, symlink escape) and
//! blob verification against the disk.

use super::*;

fn setup() -> (tempfile::TempDir, ContentRoot) {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("root");
    std::fs::create_dir_all(root.join("sub")).expect("mkdir");
    std::fs::write(root.join("sub/a.txt"), "hello").expect("write");
    std::fs::write(dir.path().join("secret.txt"), "secret").expect("write");
    (dir, ContentRoot::new(root))
}

#[test]
fn resolves_a_file_inside_the_root() {
    let (_dir, root) = setup();
    let path = root.resolve("sub/a.txt").expect("resolve");
    assert!(path.ends_with("sub/a.txt"));
    let abs = root.path().canonicalize().expect("canon").join("sub/a.txt");
    assert_eq!(
        root.resolve(abs.to_str().expect("utf8"))
            .expect("abs inside"),
        path
    );
}

#[test]
fn rejects_traversal_absolute_outside_missing_and_directories() {
    let (dir, root) = setup();
    let err = root.resolve("../secret.txt").expect_err("dotdot");
    assert!(err.contains(".."), "{err}");
    assert!(root.resolve("sub/../sub/a.txt").is_err());
    let outside = dir.path().join("secret.txt");
    let err = root
        .resolve(outside.to_str().expect("utf8"))
        .expect_err("absolute outside");
    assert!(err.contains("outside the content root"), "{err}");
    let err = root.resolve("nope.txt").expect_err("missing");
    assert!(err.contains("does not exist"), "{err}");
    let err = root.resolve("sub").expect_err("dir");
    assert!(err.contains("not a regular file"), "{err}");
    assert!(root.resolve("").is_err());
}

#[test]
fn rejects_percent_encoded_sequences_even_when_the_file_exists() {
    let (_dir, root) = setup();
    // A file literally named with an escape exists: still refused, so an
    // encoded path never names something a reviewer misreads.
    std::fs::write(root.path().join("a%2e.txt"), "x").expect("write");
    for path in [
        "%2e%2e/%2e%2e/etc/passwd",
        "sub/..%2f..%2fsecret.txt",
        "a%2e.txt",
        "sub%2Fa.txt",
    ] {
        let err = root.resolve(path).expect_err(path);
        assert!(
            err.contains("contains a percent-encoded sequence")
                && err.contains("content paths are literal file paths"),
            "{path}: {err}"
        );
    }
    // A lone `%` or one not followed by two hex digits is an ordinary name.
    for name in ["100%.txt", "50%off.txt", "%zz.txt"] {
        std::fs::write(root.path().join(name), "x").expect("write");
        assert!(root.resolve(name).is_ok(), "{name}");
    }
}

#[cfg(unix)]
#[test]
fn rejects_symlinks_that_escape_the_root() {
    let (dir, root) = setup();
    std::os::unix::fs::symlink(dir.path().join("secret.txt"), root.path().join("link.txt"))
        .expect("symlink");
    std::os::unix::fs::symlink(dir.path(), root.path().join("up")).expect("symlink dir");
    let err = root.resolve("link.txt").expect_err("file symlink escape");
    assert!(err.contains("outside the content root"), "{err}");
    assert!(root.resolve("up/secret.txt").is_err());
    // A symlink that stays inside is fine.
    std::os::unix::fs::symlink(root.path().join("sub/a.txt"), root.path().join("ok.txt"))
        .expect("symlink inside");
    assert!(root.resolve("ok.txt").is_ok());
}

#[test]
fn scan_reports_each_bad_file_source_with_its_path() {
    let (_dir, root) = setup();
    let config: Config = switchyard_shared::parse::parse_yaml(
        r#"
content_sources:
  - name: good
    file: sub/a.txt
  - name: inline
    inline: x
  - name: bad
    file: ../secret.txt
  - name: missing
    file: missing.txt
"#,
    )
    .expect("parse");
    let problems = root.scan(&config).expect_err("problems");
    let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
    assert_eq!(
        paths,
        vec!["content_sources[2].file", "content_sources[3].file"]
    );

    let ok: Config = switchyard_shared::parse::parse_yaml(
        "content_sources:\n  - name: good\n    file: sub/a.txt\n",
    )
    .expect("parse");
    let blobs = root.scan(&ok).expect("scan");
    let blob = &blobs["good"];
    assert_eq!(blob.size, 5);
    // sha256("hello")
    assert_eq!(
        blob.sha256,
        "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
    );
}

#[test]
fn verified_refuses_a_blob_whose_file_changed() {
    let (_dir, root) = setup();
    let path = root.resolve("sub/a.txt").expect("resolve");
    let blob = hash_file(&path).expect("hash");
    let index = BlobIndex::default();
    index.replace([blob.clone()]);
    assert_eq!(
        index.verified(&blob.sha256).expect("fresh").sha256,
        blob.sha256
    );
    assert!(matches!(index.verified("00"), Err(BlobError::Unknown)));
    std::fs::write(&path, "changed content").expect("rewrite");
    assert!(matches!(
        index.verified(&blob.sha256),
        Err(BlobError::Changed)
    ));
}
