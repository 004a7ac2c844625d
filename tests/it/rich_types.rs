//! Embeddings, structs, maps and bytes through every write path pitlake has
//! (INSERT, COPY of a Parquet file, the stream), read back by pyiceberg at
//! every snapshot and by the online store.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BinaryArray, Float32Builder, Int64Array, ListBuilder, RecordBatch,
    TimestampMicrosecondArray,
};
use arrow::datatypes::{Field, Schema};
use pitlake::Session;
use pitlake::catalog::TableName;
use pitlake::output::cells;

use crate::interop::query;
use crate::online::hold_commits;
use crate::schema_evolution::every_snapshot_agrees;

fn embeddings(rows: &[&[f32]]) -> ArrayRef {
    let mut list = ListBuilder::new(Float32Builder::new());
    for row in rows {
        list.values().append_slice(row);
        list.append(true);
    }
    Arc::new(list.finish())
}

/// A batch of `id`, `ts` (microseconds) and `emb` rows, as a stream takes it.
fn vectors(ids: Vec<i64>, micros: Vec<i64>, emb: &[&[f32]]) -> RecordBatch {
    use arrow::datatypes::{DataType, TimeUnit};
    RecordBatch::try_new(
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new(
                "ts",
                DataType::Timestamp(TimeUnit::Microsecond, None),
                false,
            ),
            Field::new("emb", embeddings(&[]).data_type().clone(), true),
        ])),
        vec![
            Arc::new(Int64Array::from(ids)),
            Arc::new(TimestampMicrosecondArray::from(micros)),
            embeddings(emb),
        ],
    )
    .expect("batch")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nested_values_take_every_write_path_and_read_back_everywhere() {
    let dir = tempfile::tempdir().expect("tempdir");
    let session = Session::open(dir.path()).await.expect("open");
    hold_commits(&session);
    session
        .sql(
            "CREATE FEATURE GROUP items (id BIGINT NOT NULL, ts TIMESTAMP NOT NULL, emb ARRAY<FLOAT>,
                 attrs STRUCT<color VARCHAR, size INT>, tags MAP(VARCHAR, DOUBLE), thumb BYTEA)
                 ENTITY KEY (id) EVENT TIME ts ONLINE;",
        )
        .await
        .expect("created");
    // A Parquet file as another tool writes it: COPY.
    let outside = tempfile::tempdir().expect("tempdir");
    let file = outside.path().join("items.parquet");
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", arrow::datatypes::DataType::Int64, false),
        Field::new(
            "ts",
            arrow::datatypes::DataType::Timestamp(arrow::datatypes::TimeUnit::Microsecond, None),
            false,
        ),
        Field::new("emb", embeddings(&[]).data_type().clone(), true),
        Field::new("thumb", arrow::datatypes::DataType::Binary, true),
    ]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(Int64Array::from(vec![1, 2])),
            Arc::new(TimestampMicrosecondArray::from(vec![0, 0])),
            embeddings(&[&[0.1, 0.2], &[0.3, 0.4]]),
            Arc::new(BinaryArray::from(vec![Some(&b"\x89PNG"[..]), None])),
        ],
    )
    .expect("batch");
    let mut writer = parquet::arrow::ArrowWriter::try_new(
        std::fs::File::create(&file).expect("file"),
        schema.clone(),
        None,
    )
    .expect("writer");
    writer.write(&batch).expect("write");
    writer.close().expect("close");
    query(&session, &format!("COPY items FROM '{}'", file.display())).await;
    // INSERT (streamed: the group is online), then the stream API a DoPut uses.
    query(
        &session,
        "INSERT INTO items VALUES (3, '2024-01-01', [0.5, 0.6], named_struct('color', 'red', 'size', 3), MAP {'a': 1.0}, X'00')",
    )
    .await;
    let streamed = vectors(vec![1], vec![86_400_000_000], &[&[0.9, 0.1]]);
    let name = TableName::new("default", "items").expect("name");
    session
        .store()
        .streams()
        .append(&name, &streamed)
        .await
        .expect("streamed");

    let expected = vec![
        vec!["1", "[0.9, 0.1]", "NULL"],
        vec!["2", "[0.3, 0.4]", "NULL"],
        vec!["3", "[0.5, 0.6]", "red"],
    ];
    let online = "SELECT id, emb, attrs['color'] FROM online.default.items WHERE id IN (1, 2, 3) ORDER BY id";
    for _ in 0..2 {
        assert_eq!(
            cells(&query(&session, online).await).expect("cells"),
            expected
        );
        session.store().streams().flush(None).await.expect("commit");
    }
    let nearest = query(
        &session,
        "SELECT id FROM online.default.items WHERE id IN (1, 2, 3) ORDER BY cosine_distance(emb, [1.0, 0.0]) LIMIT 1",
    )
    .await;
    assert_eq!(cells(&nearest).expect("cells"), vec![vec!["1"]]);
    // A nested column added to rows already written: NULL in them, in the
    // current data (scans, ASOF JOIN, the online store).
    query(
        &session,
        "ALTER FEATURE GROUP items ADD COLUMN emb2 ARRAY<DOUBLE>",
    )
    .await;
    query(
        &session,
        "INSERT INTO items (id, ts, emb2) VALUES (2, '2024-02-01', [7.0])",
    )
    .await;
    session.store().streams().flush(None).await.expect("commit");
    let rows = query(&session, "SELECT id, emb2 FROM items ORDER BY id, ts").await;
    assert_eq!(
        cells(&rows).expect("cells"),
        vec![
            vec!["1", "NULL"],
            vec!["1", "NULL"],
            vec!["2", "NULL"],
            vec!["2", "[7.0]"],
            vec!["3", "NULL"],
        ]
    );
    let asof = query(
        &session,
        "SELECT l.id, f.emb2 FROM (VALUES (1, TIMESTAMP '2024-03-01'), (2, TIMESTAMP '2024-03-01')) l(id, at)
         ASOF JOIN items f MATCH_CONDITION (l.at >= f.ts) ON l.id = f.id ORDER BY l.id",
    )
    .await;
    assert_eq!(
        cells(&asof).expect("cells"),
        vec![vec!["1", "NULL"], vec!["2", "[7.0]"]]
    );
    let online = query(
        &session,
        "SELECT id, emb2 FROM online.default.items WHERE id IN (1, 2) ORDER BY id",
    )
    .await;
    assert_eq!(
        cells(&online).expect("cells"),
        vec![vec!["1", "NULL"], vec!["2", "[7.0]"]]
    );
    // Every snapshot, nested columns included, as pyiceberg reads it.
    assert_eq!(every_snapshot_agrees(&session, "default.items").await, 3);
}

/// Embeddings of 768 values, as models make them: 100 items streamed in,
/// each found again as its own nearest neighbour online and offline, and
/// read back whole by pyiceberg and DuckDB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embeddings_of_768_values_round_trip_and_rank() {
    const DIM: usize = 768;
    let dir = tempfile::tempdir().expect("tempdir");
    let session = Session::open(dir.path()).await.expect("open");
    query(
        &session,
        "CREATE FEATURE GROUP vecs (id BIGINT NOT NULL, ts TIMESTAMP NOT NULL, emb ARRAY<FLOAT>)
             ENTITY KEY (id) EVENT TIME ts ONLINE",
    )
    .await;
    let vector = |id: usize| -> Vec<f32> {
        (0..DIM)
            .map(|i| (((id * 7919 + i * 104_729) % 1000) as f32) / 1000.0 - 0.5)
            .collect()
    };
    let rows: Vec<Vec<f32>> = (0..100).map(vector).collect();
    let slices: Vec<&[f32]> = rows.iter().map(Vec::as_slice).collect();
    let batch = vectors((0..100).collect(), vec![0; 100], &slices);
    let name = TableName::new("default", "vecs").expect("name");
    session
        .store()
        .streams()
        .append(&name, &batch)
        .await
        .expect("streamed");
    session.store().streams().flush(None).await.expect("commit");
    let probe = format!(
        "[{}]",
        vector(42)
            .iter()
            .map(|v| format!("{v}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    for table in ["vecs", "online.default.vecs"] {
        let keys = if table.starts_with("online") {
            format!(
                " WHERE id IN ({})",
                (0..100)
                    .map(|i| i.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        } else {
            String::new()
        };
        let nearest = query(
            &session,
            &format!(
                "SELECT id, cardinality(emb), round(abs(cosine_distance(emb, {probe})), 6) AS d FROM {table}{keys} ORDER BY d LIMIT 2"
            ),
        )
        .await;
        let nearest = cells(&nearest).expect("cells");
        assert_eq!(nearest[0], vec!["42", "768", "0.0"], "{table}");
        assert_ne!(nearest[1][0], "42", "{table}");
    }
    assert_eq!(every_snapshot_agrees(&session, "default.vecs").await, 1);
}
