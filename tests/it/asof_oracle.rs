//! DuckDB (the real one, from PyPI) as the oracle for the ASOF JOIN, through
//! pitlake's SQL surface: random tables of several key and match types
//! (`tests/python/asof_oracle.py` writes them and DuckDB's answers) are
//! loaded with COPY into warehouse tables and feature groups, joined by
//! pitlake with each strategy, and every label must get DuckDB's row.

use std::collections::HashMap;

use arrow::array::{Array, AsArray};
use arrow::datatypes::Int64Type;
use pitlake::Session;

use crate::python::run_script_with;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asof_join_agrees_with_duckdb() {
    let data = tempfile::tempdir().expect("tempdir");
    let out = data.path().display().to_string();
    // PITLAKE_ORACLE_SEED explores other inputs.
    let seed = std::env::var("PITLAKE_ORACLE_SEED").unwrap_or_else(|_| "20261205".into());
    const CASES: usize = 120;
    run_script_with(
        "requirements-oracle.txt",
        "asof_oracle.py",
        &[&out, &seed, &CASES.to_string()],
    );
    let cases: serde_json::Value =
        serde_json::from_slice(&std::fs::read(data.path().join("cases.json")).expect("cases"))
            .expect("json");
    let session = Session::open(data.path().join("warehouse"))
        .await
        .expect("open");
    let cases = cases.as_array().expect("cases");
    assert_eq!(cases.len(), CASES, "cases written by asof_oracle.py");
    let mut failures = Vec::new();
    // Labels compared, and those of them DuckDB matched, over all cases and
    // both strategies: a run that compares nothing, or only NULLs, fails.
    let (mut compared, mut matched) = (0usize, 0usize);
    for case in cases {
        let about = case["about"].as_str().expect("about");
        for statement in case["setup"].as_array().expect("setup") {
            let sql = statement.as_str().expect("sql");
            session
                .sql(sql)
                .await
                .unwrap_or_else(|e| panic!("{about}: {sql}: {e}"));
        }
        let query = case["query"].as_str().expect("query");
        let want: HashMap<i64, Option<i64>> = case["answer"]
            .as_object()
            .expect("answer")
            .iter()
            .map(|(id, fid)| (id.parse().expect("id"), fid.as_i64()))
            .collect();
        for strategy in ["sweep", "index"] {
            session
                .sql(&format!("SET pitlake.asof_join_strategy = '{strategy}'"))
                .await
                .expect("set strategy");
            let mut results = session
                .sql(query)
                .await
                .unwrap_or_else(|e| panic!("{about}: {query}: {e}"));
            let batches = results.pop().expect("a result").batches;
            let mut got: HashMap<i64, Option<i64>> = HashMap::new();
            for batch in &batches {
                let (id, fid) = (
                    batch.column(0).as_primitive::<Int64Type>(),
                    batch.column(1).as_primitive::<Int64Type>(),
                );
                for i in 0..batch.num_rows() {
                    let previous = got.insert(id.value(i), fid.is_valid(i).then(|| fid.value(i)));
                    assert!(previous.is_none(), "{about}: label {} twice", id.value(i));
                }
            }
            compared += want.len();
            matched += want
                .iter()
                .filter(|(id, fid)| fid.is_some() && got.get(id) == Some(fid))
                .count();
            let mut wrong: Vec<String> = want
                .iter()
                .filter(|(id, fid)| got.get(id) != Some(fid))
                .map(|(id, fid)| format!("label {id}: duckdb {fid:?}, pitlake {:?}", got.get(id)))
                .collect();
            if got.len() != want.len() || !wrong.is_empty() {
                wrong.sort();
                wrong.truncate(5);
                failures.push(format!(
                    "{about} ({strategy}), {} rows for {} labels: {query}\n    {}",
                    got.len(),
                    want.len(),
                    wrong.join("\n    ")
                ));
            }
        }
    }
    assert!(
        compared > 0 && matched > 0 && matched < compared,
        "{compared} labels compared, {matched} of them matched: the cases test nothing"
    );
    assert!(
        failures.is_empty(),
        "{} disagreements with DuckDB:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
