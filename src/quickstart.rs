//! `pitlake quickstart`: a sample warehouse from a deterministic, synthetic
//! airline-delay dataset (in the spirit of the BTS "airline on-time delay
//! causes" data), committed over several snapshots, then the SQL examples.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use chrono::NaiveDate;
use indicatif::{ProgressBar, ProgressStyle};

use crate::error::{Error, Result};
use crate::examples::{EXAMPLES, print_example};
use crate::output::{Format, render};
use crate::session::Session;

pub const CARRIERS: [&str; 8] = ["AA", "AS", "B6", "DL", "F9", "NK", "UA", "WN"];
pub const AIRPORTS: [&str; 10] = [
    "ATL", "DEN", "DFW", "JFK", "LAS", "LAX", "MCO", "ORD", "SEA", "SFO",
];

/// The feature group the quickstart builds.
pub const FEATURE_GROUP: &str = "airlines.airline_features";
const SNAPSHOTS: &str = "airlines.\"airline_features$snapshots\"";

const CREATE: &str = "CREATE SCHEMA IF NOT EXISTS airlines;
DROP FEATURE GROUP IF EXISTS airlines.airline_features;
CREATE FEATURE GROUP airlines.airline_features (
    carrier          VARCHAR   NOT NULL,
    airport          VARCHAR   NOT NULL,
    event_time       TIMESTAMP NOT NULL,
    arr_flights      BIGINT,
    arr_del15        BIGINT,
    carrier_ct       DOUBLE,
    weather_ct       DOUBLE,
    nas_ct           DOUBLE,
    security_ct      DOUBLE,
    late_aircraft_ct DOUBLE,
    arr_cancelled    BIGINT,
    arr_diverted     BIGINT,
    arr_delay        BIGINT,
    delay_rate       DOUBLE,
    avg_delay_min    DOUBLE
)
ENTITY KEY (carrier, airport)
EVENT TIME event_time
WITH (description = 'Monthly on-time and delay-cause features per carrier and airport (synthetic)',
      owner = 'data-engineering', tags = 'airline,delay,quickstart')";

/// A deterministic pseudo-random number in [0, 1) for a seed (splitmix64).
fn unit(seed: u64) -> f64 {
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

/// The rows of one month (`year`, `month`) for every carrier and airport;
/// `revision` > 0 gives corrected figures for the same month.
pub fn month_batch(year: i32, month: u32, revision: u64) -> Result<RecordBatch> {
    let day = NaiveDate::from_ymd_opt(year, month, 1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .ok_or_else(|| Error::Internal(format!("bad month {year}-{month}")))?;
    let micros = day.and_utc().timestamp_micros();
    let n = CARRIERS.len() * AIRPORTS.len();
    let mut cols: [Vec<f64>; 12] = Default::default();
    let (mut carriers, mut airports) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for (ci, carrier) in CARRIERS.iter().enumerate() {
        for (ai, airport) in AIRPORTS.iter().enumerate() {
            let seed = ((year as u64) * 100 + u64::from(month)) * 1000
                + (ci * 10 + ai) as u64
                + revision * 7_919;
            let r = |k: u64| unit(seed.wrapping_mul(31).wrapping_add(k));
            let hub = 1.0 + 3.0 * unit(ci as u64 * 97 + ai as u64);
            let flights = (150.0 * hub * (0.8 + 0.4 * r(1))).round();
            let seasonal = if matches!(month, 6..=8 | 12) {
                1.3
            } else {
                1.0
            };
            let del15 = (flights * (0.10 + 0.15 * r(2)) * seasonal).round();
            let shares = [r(3), r(4) * 0.5, r(5), r(6) * 0.05, r(7)];
            let total: f64 = shares.iter().sum();
            let ct: Vec<f64> = shares
                .iter()
                .map(|s| (del15 * s / total * 100.0).round() / 100.0)
                .collect();
            let delay = (del15 * (35.0 + 40.0 * r(8))).round();
            let values = [
                flights,
                del15,
                ct[0],
                ct[1],
                ct[2],
                ct[3],
                ct[4],
                (flights * 0.02 * r(9)).round(),
                (flights * 0.005 * r(10)).round(),
                delay,
                ((del15 / flights) * 10_000.0).round() / 10_000.0,
                ((delay / flights) * 100.0).round() / 100.0,
            ];
            for (col, v) in cols.iter_mut().zip(values) {
                col.push(v);
            }
            carriers.push(*carrier);
            airports.push(*airport);
        }
    }
    let int = |v: &Vec<f64>| -> ArrayRef {
        Arc::new(Int64Array::from_iter_values(v.iter().map(|x| *x as i64)))
    };
    let dbl = |v: &Vec<f64>| -> ArrayRef { Arc::new(Float64Array::from(v.clone())) };
    let fields = vec![
        Field::new("carrier", DataType::Utf8, false),
        Field::new("airport", DataType::Utf8, false),
        Field::new(
            "event_time",
            DataType::Timestamp(TimeUnit::Microsecond, None),
            false,
        ),
        Field::new("arr_flights", DataType::Int64, true),
        Field::new("arr_del15", DataType::Int64, true),
        Field::new("carrier_ct", DataType::Float64, true),
        Field::new("weather_ct", DataType::Float64, true),
        Field::new("nas_ct", DataType::Float64, true),
        Field::new("security_ct", DataType::Float64, true),
        Field::new("late_aircraft_ct", DataType::Float64, true),
        Field::new("arr_cancelled", DataType::Int64, true),
        Field::new("arr_diverted", DataType::Int64, true),
        Field::new("arr_delay", DataType::Int64, true),
        Field::new("delay_rate", DataType::Float64, true),
        Field::new("avg_delay_min", DataType::Float64, true),
    ];
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(carriers)),
        Arc::new(StringArray::from(airports)),
        Arc::new(TimestampMicrosecondArray::from(vec![micros; n])),
        int(&cols[0]),
        int(&cols[1]),
        dbl(&cols[2]),
        dbl(&cols[3]),
        dbl(&cols[4]),
        dbl(&cols[5]),
        dbl(&cols[6]),
        int(&cols[7]),
        int(&cols[8]),
        int(&cols[9]),
        dbl(&cols[10]),
        dbl(&cols[11]),
    ];
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
        .map_err(Error::arrow("building the sample data"))
}

/// One load of the quickstart: one snapshot.
#[derive(Debug, Clone)]
pub struct Load {
    pub label: &'static str,
    pub months: &'static [(i32, u32)],
    /// 0 for first figures; above 0 for corrected figures of loaded months.
    pub revision: u64,
}

/// The loads the quickstart commits, one snapshot each.
pub const LOADS: [Load; 5] = [
    Load {
        label: "2024 Q1",
        months: &[(2024, 1), (2024, 2), (2024, 3)],
        revision: 0,
    },
    Load {
        label: "2024 Q2",
        months: &[(2024, 4), (2024, 5), (2024, 6)],
        revision: 0,
    },
    Load {
        label: "2024 Q3",
        months: &[(2024, 7), (2024, 8), (2024, 9)],
        revision: 0,
    },
    Load {
        label: "correction of June 2024",
        months: &[(2024, 6)],
        revision: 1,
    },
    Load {
        label: "2024 Q4",
        months: &[(2024, 10), (2024, 11), (2024, 12)],
        revision: 0,
    },
];

fn write_parquet(path: &Path, batches: &[RecordBatch]) -> Result<()> {
    let io = |source| Error::Io {
        path: path.display().to_string(),
        source,
    };
    let file = std::fs::File::create(path).map_err(io)?;
    let schema = batches
        .first()
        .map(RecordBatch::schema)
        .ok_or_else(|| Error::Internal("nothing to write".into()))?;
    let mut writer = parquet::arrow::ArrowWriter::try_new(file, schema, None)
        .map_err(Error::unavailable(path.display().to_string()))?;
    for batch in batches {
        writer
            .write(batch)
            .map_err(Error::unavailable(path.display().to_string()))?;
    }
    writer
        .close()
        .map_err(Error::unavailable(path.display().to_string()))?;
    Ok(())
}

/// Builds the sample feature group in `session`'s warehouse, one snapshot per load.
pub async fn build_sample(session: &Session, progress: &ProgressBar) -> Result<()> {
    session.sql(CREATE).await?;
    let staging = tempfile::tempdir().map_err(|source| Error::Io {
        path: "temporary directory".into(),
        source,
    })?;
    for (i, load) in LOADS.iter().enumerate() {
        progress.set_message(format!("loading {}", load.label));
        let batches = load
            .months
            .iter()
            .map(|(y, m)| month_batch(*y, *m, load.revision))
            .collect::<Result<Vec<_>>>()?;
        let file = staging.path().join(format!("load_{i}.parquet"));
        write_parquet(&file, &batches)?;
        session
            .sql(&format!("COPY {FEATURE_GROUP} FROM '{}'", file.display()))
            .await?;
        progress.inc(1);
    }
    Ok(())
}

/// The whole quickstart: sample warehouse, a tour of it, then every SQL example.
pub async fn run(warehouse: &Path, out: &mut dyn Write) -> Result<()> {
    let session = Session::open(warehouse).await?;
    let steps = LOADS.len() as u64;
    let progress = ProgressBar::new(steps).with_style(
        ProgressStyle::with_template("{spinner} [{bar:30}] {pos}/{len} snapshots {msg}")
            .map_err(|e| Error::Internal(format!("progress bar template: {e}")))?
            .progress_chars("=> "),
    );
    build_sample(&session, &progress).await?;
    progress.finish_with_message("done");

    let io = |source| Error::Io {
        path: "stdout".into(),
        source,
    };
    writeln!(
        out,
        "\nSample warehouse in {}",
        session.warehouse().root().display()
    )
    .map_err(io)?;
    let first: i64 = {
        let r = session
            .sql(&format!(
                "SELECT snapshot_id FROM {SNAPSHOTS} ORDER BY sequence_number LIMIT 1"
            ))
            .await?;
        let cells = crate::output::cells(&r[0].batches)?;
        cells
            .first()
            .and_then(|row| row.first())
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| Error::Internal("the sample has no snapshot".into()))?
    };
    let tour = [
        "SHOW FEATURE GROUPS".to_string(),
        format!("DESCRIBE FEATURE GROUP {FEATURE_GROUP}"),
        format!(
            "SELECT snapshot_id, committed_at, operation, summary['added-records'] AS added_records, summary['total-records'] AS total_records FROM {SNAPSHOTS} ORDER BY sequence_number"
        ),
        format!("SELECT count(*) AS rows, max(event_time) AS latest_month FROM {FEATURE_GROUP}"),
        format!(
            "SELECT count(*) AS rows, max(event_time) AS latest_month FROM {FEATURE_GROUP} FOR VERSION AS OF {first}"
        ),
        format!(
            "SELECT carrier, airport, event_time, delay_rate FROM {FEATURE_GROUP} WHERE carrier = 'AA' AND airport = 'JFK' ORDER BY event_time DESC LIMIT 3"
        ),
    ];
    for sql in tour {
        writeln!(out, "\n{sql};").map_err(io)?;
        for result in session.sql(&sql).await? {
            out.write_all(&render(&result, Format::Table)?)
                .map_err(io)?;
        }
    }

    writeln!(
        out,
        "\nSQL examples (sql_examples/*.slt), each in a scratch warehouse:"
    )
    .map_err(io)?;
    for (name, text) in EXAMPLES {
        let scratch = tempfile::tempdir().map_err(|source| Error::Io {
            path: "temporary directory".into(),
            source,
        })?;
        let example_session = Session::open(scratch.path().join("warehouse")).await?;
        print_example(&example_session, name, text, scratch.path(), out).await?;
    }
    Ok(())
}
