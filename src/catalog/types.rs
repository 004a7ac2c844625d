//! Column types: SQL type names to Iceberg types, and Arrow types (from query
//! results) to Iceberg types.

use arrow::datatypes::DataType;
use iceberg::spec::{
    ListType, MapType, NestedField, NestedFieldRef, PrimitiveType, Schema, StructType, Type,
};
use sqlparser::ast::{
    ArrayElemTypeDef, ColumnDef, ColumnOption, DataType as SqlType, ExactNumberInfo, Ident,
    TimezoneInfo,
};

use crate::error::{Error, Result};

/// The Iceberg type of a SQL column type.
pub fn sql_to_iceberg(column: &str, sql: &SqlType) -> Result<PrimitiveType> {
    use SqlType as S;
    Ok(match sql {
        S::Boolean | S::Bool => PrimitiveType::Boolean,
        S::TinyInt(_)
        | S::SmallInt(_)
        | S::Int2(_)
        | S::Int(_)
        | S::Int4(_)
        | S::Integer(_)
        | S::Int16
        | S::Int32 => PrimitiveType::Int,
        S::BigInt(_) | S::Int8(_) | S::Int64 => PrimitiveType::Long,
        // FLOAT is 4 bytes, as in Spark and DuckDB (embeddings are
        // `ARRAY<FLOAT>`); FLOAT(p) follows the standard: up to 24 bits of
        // precision fit 4 bytes.
        S::Real | S::Float4 | S::Float32 | S::Float(ExactNumberInfo::None) => PrimitiveType::Float,
        S::Float(ExactNumberInfo::Precision(p) | ExactNumberInfo::PrecisionAndScale(p, _))
            if *p <= 24 =>
        {
            PrimitiveType::Float
        }
        S::Double(_) | S::DoublePrecision | S::Float8 | S::Float64 | S::Float(_) => {
            PrimitiveType::Double
        }
        S::Varchar(_)
        | S::Char(_)
        | S::Character(_)
        | S::CharacterVarying(_)
        | S::CharVarying(_)
        | S::Nvarchar(_)
        | S::Text
        | S::String(_) => PrimitiveType::String,
        S::Binary(_) | S::Varbinary(_) | S::Blob(_) | S::Bytea | S::Bytes(_) => {
            PrimitiveType::Binary
        }
        S::Uuid => PrimitiveType::Uuid,
        S::Date => PrimitiveType::Date,
        S::Timestamp(_, TimezoneInfo::Tz | TimezoneInfo::WithTimeZone) => {
            PrimitiveType::Timestamptz
        }
        S::Timestamp(_, _) | S::TimestampNtz(_) | S::Datetime(_) => PrimitiveType::Timestamp,
        S::Decimal(info) | S::Numeric(info) | S::Dec(info) => {
            let (precision, scale) = match info {
                ExactNumberInfo::None => (38, 10),
                ExactNumberInfo::Precision(p) => (*p, 0),
                ExactNumberInfo::PrecisionAndScale(p, s) => (*p, u64::try_from(*s).unwrap_or(0)),
            };
            if precision == 0 || precision > 38 || scale > precision {
                return Err(Error::Invalid(format!(
                    "type {sql} of column {column}: DECIMAL(P,S) takes 1 <= P <= 38 and S <= P"
                )));
            }
            PrimitiveType::Decimal {
                precision: u32::try_from(precision).unwrap_or(38),
                scale: u32::try_from(scale).unwrap_or(0),
            }
        }
        other => {
            return Err(Error::NotSupported(format!(
                "type {other} of column {column} (use BOOLEAN, INT, BIGINT, REAL, DOUBLE, DECIMAL, VARCHAR, BINARY, DATE, TIMESTAMP, TIMESTAMPTZ, ARRAY<…>, STRUCT<…> or MAP<…, …>)"
            )));
        }
    })
}

/// The next field id, counted on.
fn take(next_id: &mut i32) -> i32 {
    let id = *next_id;
    *next_id += 1;
    id
}

/// The Iceberg type of a SQL column type, nested ones too (`ARRAY<FLOAT>`,
/// `FLOAT[]`, `STRUCT<a INT, b VARCHAR>`, `MAP<VARCHAR, DOUBLE>`), their
/// fields numbered from `next_id` on.
pub fn sql_to_iceberg_type(column: &str, sql: &SqlType, next_id: &mut i32) -> Result<Type> {
    use SqlType as S;
    Ok(match sql {
        S::Array(
            ArrayElemTypeDef::AngleBracket(element)
            | ArrayElemTypeDef::SquareBracket(element, _)
            | ArrayElemTypeDef::Parenthesis(element),
        ) => {
            let id = take(next_id);
            let element = sql_to_iceberg_type(column, element, next_id)?;
            Type::List(ListType::new(
                NestedField::list_element(id, element, false).into(),
            ))
        }
        S::Array(ArrayElemTypeDef::None) => {
            return Err(Error::NotSupported(format!(
                "ARRAY without its element type (column {column}): write ARRAY<FLOAT> or FLOAT[]"
            )));
        }
        S::Struct(fields, _) => {
            let mut nested: Vec<NestedFieldRef> = Vec::with_capacity(fields.len());
            for (i, field) in fields.iter().enumerate() {
                let name = field.field_name.as_ref().map(normalize).ok_or_else(|| {
                    Error::Invalid(format!(
                        "field {} of STRUCT column {column} needs a name",
                        i + 1
                    ))
                })?;
                if nested.iter().any(|f| f.name == name) {
                    return Err(Error::Invalid(format!(
                        "STRUCT column {column} has two fields named {name}"
                    )));
                }
                let id = take(next_id);
                let ty = sql_to_iceberg_type(column, &field.field_type, next_id)?;
                nested.push(NestedField::optional(id, name, ty).into());
            }
            Type::Struct(StructType::new(nested))
        }
        S::Map(key, value) => {
            let (key_id, value_id) = (take(next_id), take(next_id));
            let key = sql_to_iceberg_type(column, key, next_id)?;
            let value = sql_to_iceberg_type(column, value, next_id)?;
            Type::Map(MapType::new(
                NestedField::map_key_element(key_id, key).into(),
                NestedField::map_value_element(value_id, value, false).into(),
            ))
        }
        other => Type::Primitive(sql_to_iceberg(column, other)?),
    })
}

/// `ty` with its nested fields numbered again from `next_id` on (a column
/// added to a table takes ids no column had).
pub fn with_fresh_ids(ty: &Type, next_id: &mut i32) -> Type {
    match ty {
        Type::Primitive(_) => ty.clone(),
        Type::List(list) => {
            let id = take(next_id);
            let element = with_fresh_ids(&list.element_field.field_type, next_id);
            Type::List(ListType::new(
                NestedField::list_element(id, element, list.element_field.required).into(),
            ))
        }
        Type::Struct(fields) => {
            let mut nested = Vec::new();
            for field in fields.fields() {
                let id = take(next_id);
                let mut renumbered = field.as_ref().clone();
                renumbered.id = id;
                renumbered.field_type = Box::new(with_fresh_ids(&field.field_type, next_id));
                nested.push(renumbered.into());
            }
            Type::Struct(StructType::new(nested))
        }
        Type::Map(map) => {
            let (key_id, value_id) = (take(next_id), take(next_id));
            let key = with_fresh_ids(&map.key_field.field_type, next_id);
            let value = with_fresh_ids(&map.value_field.field_type, next_id);
            Type::Map(MapType::new(
                NestedField::map_key_element(key_id, key).into(),
                NestedField::map_value_element(value_id, value, map.value_field.required).into(),
            ))
        }
    }
}

/// The Iceberg type of an Arrow column, nested ones too, their fields
/// numbered from `next_id` on.
pub fn arrow_to_iceberg_type(column: &str, arrow: &DataType, next_id: &mut i32) -> Result<Type> {
    Ok(match arrow {
        DataType::List(f) | DataType::LargeList(f) | DataType::FixedSizeList(f, _) => {
            let id = take(next_id);
            let element = arrow_to_iceberg_type(column, f.data_type(), next_id)?;
            Type::List(ListType::new(
                NestedField::list_element(id, element, !f.is_nullable()).into(),
            ))
        }
        DataType::Struct(fields) => {
            let mut nested: Vec<NestedFieldRef> = Vec::with_capacity(fields.len());
            for field in fields {
                let id = take(next_id);
                let ty = arrow_to_iceberg_type(column, field.data_type(), next_id)?;
                nested.push(NestedField::optional(id, field.name(), ty).into());
            }
            Type::Struct(StructType::new(nested))
        }
        DataType::Map(entries, _) => {
            let DataType::Struct(kv) = entries.data_type() else {
                return Err(Error::NotSupported(format!(
                    "map column {column} without key and value fields"
                )));
            };
            let [key, value] = kv.iter().collect::<Vec<_>>()[..] else {
                return Err(Error::NotSupported(format!(
                    "map column {column} without key and value fields"
                )));
            };
            let (key_id, value_id) = (take(next_id), take(next_id));
            let key = arrow_to_iceberg_type(column, key.data_type(), next_id)?;
            let value_type = arrow_to_iceberg_type(column, value.data_type(), next_id)?;
            Type::Map(MapType::new(
                NestedField::map_key_element(key_id, key).into(),
                NestedField::map_value_element(value_id, value_type, !value.is_nullable()).into(),
            ))
        }
        other => Type::Primitive(arrow_to_iceberg(column, other)?),
    })
}

/// The Iceberg type of an Arrow column produced by a query.
pub fn arrow_to_iceberg(column: &str, arrow: &DataType) -> Result<PrimitiveType> {
    Ok(match arrow {
        DataType::Boolean => PrimitiveType::Boolean,
        DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::UInt8 | DataType::UInt16 => {
            PrimitiveType::Int
        }
        DataType::Int64 | DataType::UInt32 | DataType::UInt64 => PrimitiveType::Long,
        DataType::Float16 | DataType::Float32 => PrimitiveType::Float,
        DataType::Float64 => PrimitiveType::Double,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => PrimitiveType::String,
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView => PrimitiveType::Binary,
        DataType::Date32 | DataType::Date64 => PrimitiveType::Date,
        DataType::Timestamp(_, None) => PrimitiveType::Timestamp,
        DataType::Timestamp(_, Some(_)) => PrimitiveType::Timestamptz,
        DataType::Decimal128(p, s) => PrimitiveType::Decimal {
            precision: u32::from(*p),
            scale: u32::try_from(*s).unwrap_or(0),
        },
        DataType::Dictionary(_, value) => return arrow_to_iceberg(column, value),
        other => {
            return Err(Error::NotSupported(format!(
                "type {other} of column {column} cannot be stored in an Iceberg table"
            )));
        }
    })
}

/// A column name as SQL users expect: unquoted names are case-insensitive.
pub fn normalize(ident: &Ident) -> String {
    if ident.quote_style.is_some() {
        ident.value.clone()
    } else {
        ident.value.to_lowercase()
    }
}

/// Refuses a name no column may have: empty, with a `.` (Iceberg reads it
/// as a path into a struct), or one of pitlake's hidden columns.
pub fn check_column_name(table: &str, column: &str) -> Result<()> {
    if column.is_empty() || column.contains('.') {
        return Err(Error::Invalid(format!(
            "'{column}' cannot name a column of {table}: a column name is not empty and has no '.'"
        )));
    }
    check_not_hidden(table, column)
}

/// Refuses the names pitlake gives the columns it adds to what it reads.
fn check_not_hidden(table: &str, column: &str) -> Result<()> {
    if column.starts_with("__pitlake") {
        return Err(Error::Invalid(format!(
            "'{column}' cannot name a column of {table}: names starting with __pitlake are pitlake's own"
        )));
    }
    Ok(())
}

/// An Iceberg schema from column definitions; `force_required` makes columns NOT NULL.
pub fn schema_from_columns(
    table: &str,
    columns: &[ColumnDef],
    force_required: impl Fn(&str) -> bool,
) -> Result<Schema> {
    let mut fields = Vec::with_capacity(columns.len());
    // Columns take 1..=n, the fields of nested types the ids after.
    let mut next_id = i32::try_from(columns.len() + 1).unwrap_or(i32::MAX);
    for (i, column) in columns.iter().enumerate() {
        let name = normalize(&column.name);
        check_column_name(table, &name)?;
        if columns[..i].iter().any(|c| normalize(&c.name) == name) {
            return Err(Error::Invalid(format!(
                "column {name} of {table} is declared twice"
            )));
        }
        let ty = sql_to_iceberg_type(&name, &column.data_type, &mut next_id)?;
        let not_null = column
            .options
            .iter()
            .any(|o| matches!(o.option, ColumnOption::NotNull))
            || force_required(&name);
        let id = i32::try_from(i + 1).unwrap_or(i32::MAX);
        fields.push(Into::into(if not_null {
            NestedField::required(id, name, ty)
        } else {
            NestedField::optional(id, name, ty)
        }));
    }
    build_schema(table, fields)
}

/// An Iceberg schema for the columns of a query result.
pub fn schema_from_arrow(table: &str, schema: &arrow::datatypes::Schema) -> Result<Schema> {
    let mut fields = Vec::with_capacity(schema.fields().len());
    let mut next_id = i32::try_from(schema.fields().len() + 1).unwrap_or(i32::MAX);
    for (i, field) in schema.fields().iter().enumerate() {
        check_not_hidden(table, field.name())?;
        let ty = arrow_to_iceberg_type(field.name(), field.data_type(), &mut next_id)?;
        let id = i32::try_from(i + 1).unwrap_or(i32::MAX);
        fields.push(Into::into(NestedField::optional(id, field.name(), ty)));
    }
    build_schema(table, fields)
}

/// The Iceberg schema stored for a view's columns: a type Iceberg has no
/// primitive for (a list, a struct, an unsigned integer) is stored as a string
/// column, for other engines to show; pitlake plans the view's query itself.
pub fn schema_for_view(view: &str, schema: &arrow::datatypes::Schema) -> Result<Schema> {
    let mut fields = Vec::with_capacity(schema.fields().len());
    for (i, field) in schema.fields().iter().enumerate() {
        let ty = arrow_to_iceberg(field.name(), field.data_type())
            .unwrap_or(iceberg::spec::PrimitiveType::String);
        let id = i32::try_from(i + 1).unwrap_or(i32::MAX);
        fields.push(Into::into(NestedField::optional(
            id,
            field.name(),
            Type::Primitive(ty),
        )));
    }
    build_schema(view, fields)
}

fn build_schema(table: &str, fields: Vec<iceberg::spec::NestedFieldRef>) -> Result<Schema> {
    Schema::builder()
        .with_schema_id(0)
        .with_fields(fields)
        .build()
        .map_err(Error::iceberg(format!("invalid schema for {table}")))
}

/// The SQL name users wrote for an Arrow type, for messages and DESCRIBE.
pub fn sql_type_name(data_type: &DataType) -> String {
    match data_type {
        DataType::Boolean => "BOOLEAN".into(),
        DataType::Int8 | DataType::Int16 | DataType::Int32 => "INT".into(),
        DataType::Int64 => "BIGINT".into(),
        DataType::UInt8 | DataType::UInt16 | DataType::UInt32 | DataType::UInt64 => {
            format!("{data_type}").to_uppercase()
        }
        DataType::Float32 => "REAL".into(),
        DataType::Float64 => "DOUBLE".into(),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "VARCHAR".into(),
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView => "BINARY".into(),
        DataType::Date32 | DataType::Date64 => "DATE".into(),
        DataType::Timestamp(_, None) => "TIMESTAMP".into(),
        DataType::Timestamp(_, Some(_)) => "TIMESTAMPTZ".into(),
        DataType::Decimal128(p, s) => format!("DECIMAL({p},{s})"),
        DataType::List(f) | DataType::LargeList(f) | DataType::FixedSizeList(f, _) => {
            format!("ARRAY<{}>", sql_type_name(f.data_type()))
        }
        DataType::Struct(fields) => {
            let fields: Vec<String> = fields
                .iter()
                .map(|f| format!("{} {}", f.name(), sql_type_name(f.data_type())))
                .collect();
            format!("STRUCT<{}>", fields.join(", "))
        }
        DataType::Map(entries, _) => match entries.data_type() {
            DataType::Struct(kv) if kv.len() == 2 => format!(
                "MAP<{}, {}>",
                sql_type_name(kv[0].data_type()),
                sql_type_name(kv[1].data_type())
            ),
            other => other.to_string(),
        },
        other => other.to_string(),
    }
}
