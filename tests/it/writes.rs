//! Failed writes leave nothing behind: no snapshot, and no data file on disk
//! that no snapshot references.

use crate::one_cell;
use std::path::Path;

use pitlake::Session;

fn parquet_files(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .map(|p| {
            if p.is_dir() {
                parquet_files(&p)
            } else {
                usize::from(p.extension().is_some_and(|x| x == "parquet"))
            }
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_writes_leave_no_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let session = Session::open(dir.path()).await.expect("open");
    session
        .sql(
            "CREATE FEATURE GROUP fg (k BIGINT, t TIMESTAMP, v DOUBLE) ENTITY KEY (k) EVENT TIME t;
             INSERT INTO fg SELECT value, TIMESTAMP '2024-01-01 00:00:00', value * 0.5 FROM generate_series(1, 1000)",
        )
        .await
        .expect("setup");
    let data = dir.path().join("default/fg/data");
    assert_eq!(parquet_files(&data), 1);

    // The bad row comes after 50 000 good ones, so data has been written by
    // then (rows of INSERT ... SELECT count in the order the query yields them).
    let err = session
        .sql(
            "INSERT INTO fg SELECT CASE WHEN value = 50001 THEN NULL ELSE value END, TIMESTAMP '2024-02-01 00:00:00', 1.0
             FROM generate_series(1, 60000)",
        )
        .await
        .expect_err("NULL key");
    assert!(err.to_string().contains("column k, row "), "{err}");

    let copy_dir = tempfile::tempdir().expect("tempdir");
    let bad_csv = copy_dir.path().join("bad.csv");
    let mut text = String::from("k,t,v\n");
    for i in 0..20_000 {
        text.push_str(&format!("{i},2024-03-01 00:00:00,{i}.5\n"));
    }
    text.push_str("20000,2024-03-01 00:00:00,not-a-number\n");
    std::fs::write(&bad_csv, text).expect("csv");
    let err = session
        .sql(&format!("COPY fg FROM '{}'", bad_csv.display()))
        .await
        .expect_err("bad value");
    assert!(err.to_string().contains("column v, row 20001"), "{err}");

    assert_eq!(
        one_cell(&session, "SELECT count(*) FROM \"fg$snapshots\"").await,
        "1"
    );
    assert_eq!(one_cell(&session, "SELECT count(*) FROM fg").await, "1000");
    assert_eq!(
        parquet_files(&data),
        1,
        "files of failed writes were deleted"
    );
}

/// Row groups per Parquet file under `dir`, by path.
pub fn row_groups(dir: &Path) -> std::collections::BTreeMap<std::path::PathBuf, usize> {
    use parquet::file::reader::FileReader;
    let mut counts = std::collections::BTreeMap::new();
    for entry in std::fs::read_dir(dir)
        .expect("data dir")
        .filter_map(|e| e.ok())
    {
        let path = entry.path();
        if path.is_dir() {
            counts.extend(row_groups(&path));
        } else if path.extension().is_some_and(|x| x == "parquet") {
            let file = std::fs::File::open(&path).expect("data file");
            let reader =
                parquet::file::reader::SerializedFileReader::new(file).expect("Parquet file");
            counts.insert(path, reader.metadata().num_row_groups());
        }
    }
    counts
}

/// Row groups are cut at the table's `write.parquet.row-group-size-bytes`
/// (16 MiB when unset); a value that is not a size is an error naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_groups_follow_the_table_property() {
    use iceberg::transaction::{ApplyTransactionAction, Transaction};

    let dir = tempfile::tempdir().expect("tempdir");
    let session = Session::open(dir.path()).await.expect("open");
    let insert = "INSERT INTO fg SELECT value, TIMESTAMP '2024-01-01 00:00:00', value * 0.5, value * 0.25 FROM generate_series(1, 100000)";
    session
        .sql("CREATE FEATURE GROUP fg (k BIGINT, t TIMESTAMP, v DOUBLE, w DOUBLE) ENTITY KEY (k) EVENT TIME t")
        .await
        .expect("create");
    session.sql(insert).await.expect("insert");
    let data = dir.path().join("default/fg/data");
    let before = row_groups(&data);
    assert_eq!(
        before.values().copied().collect::<Vec<_>>(),
        vec![1],
        "3.2 MB in one row group"
    );

    let set = |value: &'static str| {
        let warehouse = session.warehouse().clone();
        async move {
            let table = warehouse.load_table("default", "fg").await.expect("load");
            let tx = Transaction::new(&table);
            let tx = tx
                .update_table_properties()
                .set("write.parquet.row-group-size-bytes".into(), value.into())
                .apply(tx)
                .expect("set property");
            tx.commit(warehouse.catalog().as_ref())
                .await
                .expect("commit");
        }
    };
    set("262144").await;
    session.sql(insert).await.expect("insert");
    let counts: Vec<usize> = row_groups(&data)
        .into_iter()
        .filter(|(path, _)| !before.contains_key(path))
        .map(|(_, groups)| groups)
        .collect();
    assert_eq!(counts.len(), 1, "{counts:?}");
    assert!(counts[0] >= 8, "3.2 MB in 256 KiB row groups: {counts:?}");

    set("lots").await;
    let err = session.sql(insert).await.expect_err("bad property");
    assert!(
        err.to_string()
            .contains("write.parquet.row-group-size-bytes"),
        "{err}"
    );
    assert_eq!(
        one_cell(&session, "SELECT count(*) FROM fg").await,
        "200000",
        "a failed write adds nothing"
    );
}

/// The codec of every column chunk of every Parquet file under `dir`, by path
/// (from the files' footers).
fn codecs(dir: &Path) -> std::collections::BTreeMap<std::path::PathBuf, Vec<String>> {
    use parquet::file::reader::FileReader;
    let mut found = std::collections::BTreeMap::new();
    for entry in std::fs::read_dir(dir)
        .expect("data dir")
        .filter_map(|e| e.ok())
    {
        let path = entry.path();
        if path.is_dir() {
            found.extend(codecs(&path));
        } else if path.extension().is_some_and(|x| x == "parquet") {
            let file = std::fs::File::open(&path).expect("data file");
            let reader =
                parquet::file::reader::SerializedFileReader::new(file).expect("Parquet file");
            let names = reader
                .metadata()
                .row_groups()
                .iter()
                .flat_map(|g| g.columns().iter())
                .map(|c| {
                    // The footer names the codec, not its level: ZSTD(..) -> ZSTD.
                    let name = format!("{:?}", c.compression());
                    name.split('(').next().unwrap_or_default().to_string()
                })
                .collect();
            found.insert(path, names);
        }
    }
    found
}

/// Data files are written with the table's `write.parquet.compression-codec`
/// (lz4 when unset), and a codec or level that is not one fails the write
/// with an error naming the property, leaving no file behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_files_follow_the_codec_property() {
    use iceberg::transaction::{ApplyTransactionAction, Transaction};

    let dir = tempfile::tempdir().expect("tempdir");
    let session = Session::open(dir.path()).await.expect("open");
    let insert = "INSERT INTO fg SELECT value, TIMESTAMP '2024-01-01 00:00:00', value * 0.5, 'x' FROM generate_series(1, 1000)";
    session
        .sql("CREATE FEATURE GROUP fg (k BIGINT, t TIMESTAMP, v DOUBLE, s VARCHAR) ENTITY KEY (k) EVENT TIME t")
        .await
        .expect("create");
    let data = dir.path().join("default/fg/data");
    let mut seen = std::collections::BTreeMap::new();
    // The codecs of the files the last write added: one name for all chunks.
    let mut write = async |sql: &str| -> Result<Vec<String>, String> {
        session.sql(sql).await.map_err(|e| e.to_string())?;
        let now = codecs(&data);
        let mut added: Vec<String> = now
            .iter()
            .filter(|(path, _)| !seen.contains_key(*path))
            .flat_map(|(_, names)| names.clone())
            .collect();
        added.dedup();
        seen = now;
        Ok(added)
    };
    assert_eq!(
        write(insert).await,
        Ok(vec!["LZ4_RAW".to_string()]),
        "default"
    );

    let set = |pairs: Vec<(&'static str, &'static str)>| {
        let warehouse = session.warehouse().clone();
        async move {
            let table = warehouse.load_table("default", "fg").await.expect("load");
            let tx = Transaction::new(&table);
            let mut update = tx.update_table_properties();
            for (key, value) in pairs {
                update = update.set(key.into(), value.into());
            }
            let tx = update.apply(tx).expect("set property");
            tx.commit(warehouse.catalog().as_ref())
                .await
                .expect("commit");
        }
    };
    let codec = "write.parquet.compression-codec";
    let level = "write.parquet.compression-level";
    for (value, expected) in [
        ("LZ4", "LZ4_RAW"),
        ("snappy", "SNAPPY"),
        ("Gzip", "GZIP"),
        ("uncompressed", "UNCOMPRESSED"),
        ("none", "UNCOMPRESSED"),
        ("zstd", "ZSTD"),
    ] {
        set(vec![(codec, value)]).await;
        assert_eq!(
            write(insert).await,
            Ok(vec![expected.to_string()]),
            "{value}"
        );
    }
    set(vec![(level, "9")]).await;
    assert_eq!(write(insert).await, Ok(vec!["ZSTD".to_string()]), "level 9");

    let files = parquet_files(&data);
    set(vec![(level, "99")]).await;
    let err = write(insert).await.expect_err("zstd level 99");
    assert!(
        err.contains("write.parquet.compression-level is 99, not a zstd level (1 to 22)"),
        "{err}"
    );
    set(vec![(codec, "brotli"), (level, "1")]).await;
    let err = write(insert).await.expect_err("unknown codec");
    assert!(
        err.contains(
            "write.parquet.compression-codec is \"brotli\", not one of zstd, lz4, snappy, gzip, uncompressed (or none)"
        ),
        "{err}"
    );
    // COPY takes the same path as INSERT.
    let outside = tempfile::tempdir().expect("tempdir");
    let csv = outside.path().join("rows.csv");
    std::fs::write(&csv, "k,t,v,s\n1,2024-01-01 00:00:00,1.5,y\n").expect("csv");
    let err = write(&format!("COPY fg FROM '{}'", csv.display()))
        .await
        .expect_err("unknown codec");
    assert!(err.contains("write.parquet.compression-codec"), "{err}");
    assert_eq!(parquet_files(&data), files, "no file of a failed write");
    assert_eq!(one_cell(&session, "SELECT count(*) FROM fg").await, "8000");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_create_table_as_leaves_no_table() {
    let dir = tempfile::tempdir().expect("tempdir");
    let session = Session::open(dir.path()).await.expect("open");
    let slow = session.sql("CREATE TABLE big AS SELECT value AS v FROM range(100000000000)");
    let ran = tokio::time::timeout(std::time::Duration::from_millis(700), slow).await;
    assert!(ran.is_err(), "the CREATE finished: {ran:?}");
    // The drop runs on a task of its own once the statement is gone.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let tables = one_cell(
            &session,
            "SELECT count(*) FROM information_schema.tables WHERE table_name = 'big'",
        )
        .await;
        if tables == "0" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the unfinished table is still there"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // The name is free again.
    session
        .sql("CREATE TABLE big AS SELECT 1 AS v")
        .await
        .expect("the name is free");
}
