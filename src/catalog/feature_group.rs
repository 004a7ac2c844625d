//! Feature-group metadata: which columns are the entity key and the event time,
//! plus description, owner, tags and the online flag.
//!
//! It is stored in the Iceberg table's properties under `pitlake.`, so it travels
//! with the table to any engine that reads it.

use std::collections::HashMap;

use arrow::datatypes::{DataType, Schema};

use crate::error::{Error, Result};

/// Property marking a table as a feature group.
pub const PROP_KIND: &str = "pitlake.kind";
const KIND_FEATURE_GROUP: &str = "feature_group";
const PROP_ENTITY_KEY: &str = "pitlake.entity_key";
const PROP_EVENT_TIME: &str = "pitlake.event_time";
const PROP_DESCRIPTION: &str = "pitlake.description";
const PROP_OWNER: &str = "pitlake.owner";
const PROP_TAGS: &str = "pitlake.tags";
const PROP_ONLINE: &str = "pitlake.online";
const PROP_MAX_AGE: &str = "pitlake.max_age";

/// Options accepted in `CREATE FEATURE GROUP ... WITH (...)`.
pub const OPTIONS: [&str; 4] = ["description", "owner", "tags", "max_age"];

/// The feature-group view of an Iceberg table.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FeatureGroup {
    /// Columns identifying the entity (one or more), never NULL.
    pub entity_key: Vec<String>,
    /// Column holding when a value became true in the world, never NULL.
    pub event_time: String,
    pub description: Option<String>,
    pub owner: Option<String>,
    pub tags: Vec<String>,
    /// Whether the latest value per entity is served from the online store.
    pub online: bool,
    /// Online reads return NULL for values older than this (`'7 days'`).
    pub max_age: Option<String>,
}

impl FeatureGroup {
    /// Builds the metadata from `WITH (...)` options, rejecting unknown ones.
    pub fn with_options(
        entity_key: Vec<String>,
        event_time: String,
        online: bool,
        options: &[(String, String)],
    ) -> Result<Self> {
        let mut fg = FeatureGroup {
            entity_key,
            event_time,
            online,
            ..Default::default()
        };
        for (key, value) in options {
            match key.as_str() {
                "description" => fg.description = Some(value.clone()),
                "owner" => fg.owner = Some(value.clone()),
                "tags" => fg.tags = split_tags(value),
                "max_age" => {
                    parse_max_age(value)?;
                    fg.max_age = Some(value.clone());
                }
                other => {
                    return Err(Error::Invalid(format!(
                        "unknown feature group option '{other}' (expected one of: {})",
                        OPTIONS.join(", ")
                    )));
                }
            }
        }
        Ok(fg)
    }

    /// Checks the metadata against the table's columns: keys and event time exist,
    /// the event time is a time, keys are of a type that compares exactly.
    pub fn validate(&self, table: &str, schema: &Schema) -> Result<()> {
        if self.entity_key.is_empty() {
            return Err(Error::Invalid(format!(
                "feature group {table} needs at least one ENTITY KEY column"
            )));
        }
        let column = |name: &str, role: &str| {
            schema.field_with_name(name).map_err(|_| {
                Error::Invalid(format!(
                    "{role} column '{name}' of feature group {table} is not among its columns"
                ))
            })
        };
        for (i, key) in self.entity_key.iter().enumerate() {
            if self.entity_key[..i].contains(key) {
                return Err(Error::Invalid(format!(
                    "entity key column '{key}' of feature group {table} is listed twice"
                )));
            }
            let field = column(key, "entity key")?;
            if matches!(
                field.data_type(),
                DataType::Float16 | DataType::Float32 | DataType::Float64
            ) {
                return Err(Error::Invalid(format!(
                    "entity key column '{key}' of feature group {table} is {}: floating-point keys do not compare exactly; use an integer or string",
                    field.data_type()
                )));
            }
        }
        let event_time = column(&self.event_time, "event time")?;
        if !matches!(
            event_time.data_type(),
            DataType::Timestamp(_, _) | DataType::Date32 | DataType::Date64
        ) {
            return Err(Error::Invalid(format!(
                "event time column '{}' of feature group {table} is {}: it must be a TIMESTAMP or DATE",
                self.event_time,
                event_time.data_type()
            )));
        }
        if self.entity_key.contains(&self.event_time) {
            return Err(Error::Invalid(format!(
                "column '{}' of feature group {table} cannot be both entity key and event time",
                self.event_time
            )));
        }
        Ok(())
    }

    /// True for the columns that may never be NULL.
    pub fn is_required(&self, column: &str) -> bool {
        self.event_time == column || self.entity_key.iter().any(|k| k == column)
    }

    /// The table properties that store this metadata.
    pub fn to_properties(&self) -> HashMap<String, String> {
        let mut props = HashMap::from([
            (PROP_KIND.to_string(), KIND_FEATURE_GROUP.to_string()),
            (
                PROP_ENTITY_KEY.to_string(),
                serde_json::Value::from(self.entity_key.clone()).to_string(),
            ),
            (PROP_EVENT_TIME.to_string(), self.event_time.clone()),
            (PROP_ONLINE.to_string(), self.online.to_string()),
        ]);
        if let Some(d) = &self.description {
            props.insert(PROP_DESCRIPTION.to_string(), d.clone());
        }
        if let Some(o) = &self.owner {
            props.insert(PROP_OWNER.to_string(), o.clone());
        }
        if !self.tags.is_empty() {
            props.insert(PROP_TAGS.to_string(), self.tags.join(","));
        }
        if let Some(m) = &self.max_age {
            props.insert(PROP_MAX_AGE.to_string(), m.clone());
        }
        props
    }

    /// Reads the metadata back; `None` for a plain table.
    pub fn from_properties(props: &HashMap<String, String>) -> Result<Option<Self>> {
        if props.get(PROP_KIND).map(String::as_str) != Some(KIND_FEATURE_GROUP) {
            return Ok(None);
        }
        let corrupt = |what: &str| {
            Error::Invalid(format!(
                "feature group property {what} is missing or malformed"
            ))
        };
        let entity_key: Vec<String> = props
            .get(PROP_ENTITY_KEY)
            .and_then(|v| serde_json::from_str(v).ok())
            .ok_or_else(|| corrupt(PROP_ENTITY_KEY))?;
        let event_time = props
            .get(PROP_EVENT_TIME)
            .cloned()
            .ok_or_else(|| corrupt(PROP_EVENT_TIME))?;
        Ok(Some(FeatureGroup {
            entity_key,
            event_time,
            description: props.get(PROP_DESCRIPTION).cloned(),
            owner: props.get(PROP_OWNER).cloned(),
            tags: props
                .get(PROP_TAGS)
                .map(|t| split_tags(t))
                .unwrap_or_default(),
            online: props.get(PROP_ONLINE).map(String::as_str) == Some("true"),
            max_age: props.get(PROP_MAX_AGE).cloned(),
        }))
    }

    /// The maximum age in nanoseconds, if the group has one.
    pub fn max_age_nanos(&self) -> Result<Option<i64>> {
        self.max_age.as_deref().map(parse_max_age).transpose()
    }

    /// Applies `ALTER FEATURE GROUP ... SET (...)` options; `max_age = ''` removes it.
    pub fn set_options(&mut self, options: &[(String, String)]) -> Result<()> {
        for (key, value) in options {
            match key.as_str() {
                "description" => fg_set(&mut self.description, value),
                "owner" => fg_set(&mut self.owner, value),
                "tags" => self.tags = split_tags(value),
                "max_age" if value.trim().is_empty() => self.max_age = None,
                "max_age" => {
                    parse_max_age(value)?;
                    self.max_age = Some(value.clone());
                }
                other => {
                    return Err(Error::Invalid(format!(
                        "unknown feature group option '{other}' (expected one of: {})",
                        OPTIONS.join(", ")
                    )));
                }
            }
        }
        Ok(())
    }

    /// Property keys this metadata may set (to remove the ones now unset).
    pub fn property_keys() -> [&'static str; 8] {
        [
            PROP_KIND,
            PROP_ENTITY_KEY,
            PROP_EVENT_TIME,
            PROP_DESCRIPTION,
            PROP_OWNER,
            PROP_TAGS,
            PROP_ONLINE,
            PROP_MAX_AGE,
        ]
    }
}

fn fg_set(field: &mut Option<String>, value: &str) {
    *field = (!value.is_empty()).then(|| value.to_string());
}

/// `'7 days'`, `'36 hours'`, `'90 minutes'`, `'1 day 12 hours'` as
/// nanoseconds; months and years are rejected (their length varies).
fn parse_max_age(text: &str) -> Result<i64> {
    use arrow::array::{Array, AsArray, StringArray};
    use arrow::datatypes::{IntervalMonthDayNanoType, IntervalUnit};
    let bad = |why: String| {
        Error::Invalid(format!(
            "max_age '{text}' is not a duration like '7 days' or '12 hours': {why}"
        ))
    };
    let parsed = arrow::compute::cast(
        &StringArray::from(vec![text]),
        &DataType::Interval(IntervalUnit::MonthDayNano),
    )
    .map_err(|e| bad(e.to_string()))?;
    let intervals = parsed.as_primitive::<IntervalMonthDayNanoType>();
    if intervals.is_null(0) {
        return Err(bad("it is empty".into()));
    }
    let v = intervals.value(0);
    if v.months != 0 {
        return Err(bad("months and years vary in length; use days".into()));
    }
    let nanos = i64::from(v.days)
        .checked_mul(86_400_000_000_000)
        .and_then(|d| d.checked_add(v.nanoseconds))
        .ok_or_else(|| bad("too long".into()))?;
    if nanos <= 0 {
        return Err(bad("it must be positive".into()));
    }
    Ok(nanos)
}

fn split_tags(tags: &str) -> Vec<String> {
    tags.split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_round_trip() {
        let fg = FeatureGroup::with_options(
            vec!["carrier".into(), "airport".into()],
            "event_time".into(),
            true,
            &[
                ("description".into(), "delay features".into()),
                ("tags".into(), "airline, delay".into()),
            ],
        )
        .expect("valid options");
        assert_eq!(fg.tags, vec!["airline", "delay"]);
        let back = FeatureGroup::from_properties(&fg.to_properties()).expect("parses");
        assert_eq!(back, Some(fg));
    }

    #[test]
    fn plain_tables_have_no_feature_group() {
        let props = HashMap::from([("write.format.default".to_string(), "parquet".to_string())]);
        assert_eq!(FeatureGroup::from_properties(&props).expect("parses"), None);
    }

    #[test]
    fn unknown_option_is_named() {
        let err = FeatureGroup::with_options(
            vec!["k".into()],
            "t".into(),
            false,
            &[("colour".into(), "red".into())],
        )
        .expect_err("unknown option");
        assert!(err.to_string().contains("'colour'"), "{err}");
    }

    #[test]
    fn max_age_parses_days_and_hours_and_rejects_months() {
        assert_eq!(
            parse_max_age("7 days").expect("days"),
            7 * 86_400_000_000_000
        );
        assert_eq!(
            parse_max_age("90 minutes").expect("minutes"),
            5_400_000_000_000
        );
        assert!(parse_max_age("1 month").is_err());
        assert!(parse_max_age("soon").is_err());
        assert!(parse_max_age("-1 day").is_err());
    }
}
