//! Tags: create, list, read, move, delete and check out by name, on local and memory stores;
//! concurrent creates of one name (one wins); bad names and damaged tag files are typed errors.

mod common;

use quiver_engine::{
    batches_stream, ConnectOptions, CreateMode, Database, Error, Table, WriteParams,
};

async fn table(uri: &str) -> (Database, Table) {
    let db = Database::connect(uri, ConnectOptions::default())
        .await
        .expect("connect");
    let t = db
        .create_table(
            "t",
            common::simple_schema(4),
            batches_stream(vec![common::simple_batch(0, 10, 4)]),
            CreateMode::Create,
            WriteParams::default(),
        )
        .await
        .expect("create");
    for start in [10, 20] {
        t.append(
            batches_stream(vec![common::simple_batch(start, 10, 4)]),
            WriteParams::default(),
        )
        .await
        .expect("append");
    }
    (db, t)
}

#[tokio::test]
async fn tags_name_versions_on_every_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    for uri in [dir.path().to_str().expect("utf-8"), "memory://"] {
        let (db, t) = table(uri).await;
        assert!(t.list_tags().await.expect("list").is_empty());
        t.create_tag("first", 1).await.expect("create");
        t.create_tag("v2.release-candidate_1", 2)
            .await
            .expect("create");
        assert!(matches!(
            t.create_tag("first", 3).await,
            Err(Error::TagAlreadyExists(ref n)) if n == "first"
        ));
        assert!(matches!(
            t.create_tag("later", 99).await,
            Err(Error::VersionNotFound { version: 99, .. })
        ));
        let names: Vec<(String, u64)> = t
            .list_tags()
            .await
            .expect("list")
            .into_iter()
            .map(|t| (t.name, t.version))
            .collect();
        assert_eq!(
            names,
            vec![("first".into(), 1), ("v2.release-candidate_1".into(), 2)]
        );

        t.update_tag("first", 3).await.expect("update");
        assert_eq!(t.tag_version("first").await.expect("get"), 3);
        assert!(matches!(
            t.update_tag("missing", 1).await,
            Err(Error::TagNotFound(_))
        ));

        // Checking out a tag pins its version; writes need checkout_latest.
        assert_eq!(
            t.checkout_tag("v2.release-candidate_1")
                .await
                .expect("checkout"),
            2
        );
        assert_eq!((t.version(), t.count_rows()), (2, 20));
        assert!(matches!(
            t.append(
                batches_stream(vec![common::simple_batch(99, 1, 4)]),
                WriteParams::default()
            )
            .await,
            Err(Error::ReadOnlyVersion(2))
        ));
        // Tags can be managed from a pinned handle: they commit no version.
        t.create_tag("pinned", 2)
            .await
            .expect("create while pinned");
        t.checkout_latest().await.expect("latest");
        assert_eq!(t.version(), 3);

        // Another connection sees them; tables are listed as before.
        let other = Database::connect(uri, ConnectOptions::default())
            .await
            .expect("connect");
        if !uri.starts_with("memory://") {
            let reopened = other.open_table("t").await.expect("open");
            assert_eq!(reopened.tag_version("pinned").await.expect("get"), 2);
            assert_eq!(other.table_names().await.expect("names"), vec!["t"]);
        }

        t.delete_tag("pinned").await.expect("delete");
        assert!(matches!(
            t.tag_version("pinned").await,
            Err(Error::TagNotFound(_))
        ));
        assert!(matches!(
            t.delete_tag("pinned").await,
            Err(Error::TagNotFound(_))
        ));
        for bad in ["../escape", "a/b", "", ".x", "a b"] {
            assert!(
                matches!(t.create_tag(bad, 1).await, Err(Error::InvalidArgument(_))),
                "{bad:?}"
            );
        }
        drop(db);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_creates_of_one_name_have_one_winner() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_db, t) = table(dir.path().to_str().expect("utf-8")).await;
    let attempts: Vec<_> = (1..=3u64)
        .cycle()
        .take(12)
        .map(|version| {
            let t = t.clone();
            tokio::spawn(async move { t.create_tag("shared", version).await.map(|_| version) })
        })
        .collect();
    let mut winners = Vec::new();
    for a in attempts {
        match a.await.expect("join") {
            Ok(v) => winners.push(v),
            Err(Error::TagAlreadyExists(_)) => {}
            Err(other) => panic!("{other}"),
        }
    }
    assert_eq!(winners.len(), 1);
    assert_eq!(t.tag_version("shared").await.expect("get"), winners[0]);
}

#[tokio::test]
async fn a_damaged_tag_file_is_corrupt_and_passed_over_by_listings() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_db, t) = table(dir.path().to_str().expect("utf-8")).await;
    t.create_tag("good", 1).await.expect("create");
    let file = dir.path().join("t.quiver/_refs/tags/good.json");
    assert!(file.exists(), "tags live under the table's folder");
    std::fs::write(&file, b"{\"version\": \"one\"}").expect("damage");
    assert!(matches!(
        t.tag_version("good").await,
        Err(Error::Corrupt { .. })
    ));
    std::fs::write(&file, vec![b' '; 1 << 20]).expect("damage");
    assert!(matches!(
        t.tag_version("good").await,
        Err(Error::Corrupt { .. })
    ));
    // A damaged tag names no version: listings (and cleanup) pass over it, and it can be
    // deleted and made again.
    t.create_tag("other", 1).await.expect("create");
    let names: Vec<String> = t
        .list_tags()
        .await
        .expect("list")
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(names, vec!["other".to_string()]);
    t.delete_tag("good").await.expect("delete damaged");
    t.create_tag("good", 1).await.expect("again");
    assert_eq!(t.tag_version("good").await.expect("get"), 1);
}
