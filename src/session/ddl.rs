//! Statements that make, change, drop and describe schemas, tables and
//! feature groups, each checked against the principal's rights first.

use std::sync::Arc;

use datafusion::execution::SendableRecordBatchStream;
use sqlparser::ast::{Ident, ObjectName, ObjectType, SchemaName, Use};

use super::Session;
use super::names::schema_of;
use super::results::{done, one_batch};
use crate::access::{Privilege, Securable};
use crate::catalog::{self, TableName};
use crate::error::{Error, Result};
use crate::shared::TEMP_SCHEMA;
use crate::sql::CreateFeatureGroup;

impl Session {
    pub(super) async fn create_feature_group(
        &self,
        create: CreateFeatureGroup,
    ) -> Result<SendableRecordBatchStream> {
        let name = self.resolve_name(&create.name)?;
        self.require_create_in(&name).await?;
        let fg = catalog::FeatureGroup::with_options(
            create
                .entity_key
                .iter()
                .map(catalog::types::normalize)
                .collect(),
            catalog::types::normalize(&create.event_time),
            create.online,
            &create.options,
        )?;
        let made = catalog::create_feature_group(
            self.warehouse(),
            &name,
            &fg,
            &create.columns,
            create.if_not_exists,
        )
        .await?;
        // IF NOT EXISTS on a group already there changes nothing of it: not
        // its owner, grants or policies.
        if made {
            self.record_owner(Securable::Table(name)).await?;
        }
        done()
    }

    pub(super) async fn drop_feature_group(
        &self,
        name: &ObjectName,
        if_exists: bool,
    ) -> Result<SendableRecordBatchStream> {
        let name = self.resolve_name(name)?;
        self.require_manage(&name).await?;
        catalog::drop_table(self.warehouse(), &name, if_exists, true).await?;
        self.store.writes().forget(&name);
        self.forget_grants(Securable::Table(name)).await?;
        done()
    }

    pub(super) async fn alter_feature_group(
        &self,
        name: &ObjectName,
        online: Option<bool>,
        options: &[(String, String)],
    ) -> Result<SendableRecordBatchStream> {
        let name = self.resolve_name(name)?;
        self.require_manage(&name).await?;
        catalog::alter_feature_group(self.warehouse(), &name, online, options).await?;
        self.store.writes().committed(&name).await?;
        done()
    }

    /// The feature groups the principal may read, and the published ones.
    pub(super) async fn show_feature_groups(
        &self,
        schema: Option<&Ident>,
    ) -> Result<SendableRecordBatchStream> {
        let schema = schema.map(catalog::types::normalize);
        let access = self.access().await?;
        let published = self.catalog.published();
        let is_published =
            move |schema: &str, table: &str| published.contains_key(&format!("{schema}.{table}"));
        let visible = |schema: &str, table: &str| {
            is_published(schema, table)
                || TableName::new(schema, table).is_ok_and(|t| access.may(Privilege::Select, &t))
        };
        one_batch(
            catalog::show_feature_groups(
                self.warehouse(),
                schema.as_deref(),
                &visible,
                &is_published,
            )
            .await?,
        )
    }

    /// A feature group the principal may read; of a published one they may
    /// not read, what publishing shows (not its current snapshot or where
    /// its files are). A `published` row after `tags` says whether, by whom,
    /// and whether requests are approved as they come.
    pub(super) async fn describe_feature_group(
        &self,
        name: &ObjectName,
    ) -> Result<SendableRecordBatchStream> {
        let name = self.resolve_name(name)?;
        let readable = self.access().await?.may(Privilege::Select, &name);
        let publication = self.catalog.published().get(&name.to_string()).cloned();
        if !readable && publication.is_none() {
            self.require_read(&name).await?;
        }
        let described = catalog::describe_feature_group(self.warehouse(), &name).await?;
        let published = match publication {
            None => "no".to_string(),
            Some(p) if p.auto_approve => {
                format!("by {}, requests approved as made", p.published_by)
            }
            Some(p) => format!("by {}", p.published_by),
        };
        let properties = described
            .column(0)
            .as_any()
            .downcast_ref::<arrow::array::StringArray>()
            .ok_or_else(|| Error::Internal("DESCRIBE without its property column".into()))?;
        let mut rows: Vec<(String, String)> = Vec::with_capacity(described.num_rows() + 1);
        let values = described
            .column(1)
            .as_any()
            .downcast_ref::<arrow::array::StringArray>()
            .ok_or_else(|| Error::Internal("DESCRIBE without its value column".into()))?;
        for (property, value) in properties.iter().zip(values.iter()) {
            let (property, value) = (property.unwrap_or_default(), value.unwrap_or_default());
            if !readable && matches!(property, "current_snapshot" | "location") {
                continue;
            }
            rows.push((property.to_string(), value.to_string()));
            if property == "tags" {
                rows.push(("published".to_string(), published.clone()));
            }
        }
        let columns: Vec<arrow::array::ArrayRef> = vec![
            Arc::new(arrow::array::StringArray::from_iter_values(
                rows.iter().map(|r| r.0.as_str()),
            )),
            Arc::new(arrow::array::StringArray::from_iter_values(
                rows.iter().map(|r| r.1.as_str()),
            )),
        ];
        one_batch(
            arrow::array::RecordBatch::try_new(described.schema(), columns)
                .map_err(Error::arrow("describing a feature group"))?,
        )
    }

    /// `CREATE SCHEMA [IF NOT EXISTS] s` (admins only).
    pub(super) async fn create_schema(
        &self,
        schema_name: &SchemaName,
        if_not_exists: bool,
    ) -> Result<SendableRecordBatchStream> {
        let name = match schema_name {
            SchemaName::Simple(name) | SchemaName::NamedAuthorization(name, _) => schema_of(name)?,
            SchemaName::UnnamedAuthorization(_) => {
                return Err(Error::NotSupported("CREATE SCHEMA AUTHORIZATION".into()));
            }
        };
        self.require_admin(|| format!("create schema {name}"))
            .await?;
        match self.warehouse().create_schema(&name).await {
            Err(Error::AlreadyExists { .. }) if if_not_exists => {}
            other => {
                other?;
                self.record_owner(Securable::Schema(name)).await?;
            }
        }
        done()
    }

    /// `DROP SCHEMA` or `DROP TABLE` of one or more names, in order; a
    /// temporary table's name drops the temporary table.
    pub(super) async fn drop_schemas_or_tables(
        &self,
        object_type: ObjectType,
        names: &[ObjectName],
        if_exists: bool,
    ) -> Result<SendableRecordBatchStream> {
        for name in names {
            if object_type == ObjectType::Schema {
                let schema = schema_of(name)?;
                self.require_admin(|| format!("drop schema {schema}"))
                    .await?;
                match self.warehouse().drop_schema(&schema).await {
                    Err(Error::SchemaNotFound { .. }) if if_exists => {}
                    other => {
                        other?;
                        self.forget_grants(Securable::Schema(schema)).await?;
                    }
                }
            } else if let Some(temporary) = self.temporary_name(name) {
                if !self.temp.drop_table(&temporary) && !if_exists {
                    return Err(Error::TableNotFound {
                        table: format!("{TEMP_SCHEMA}.{temporary}"),
                    });
                }
            } else {
                let table = self.resolve_name(name)?;
                self.require_manage(&table).await?;
                catalog::drop_table(self.warehouse(), &table, if_exists, false).await?;
                self.store.writes().forget(&table);
                self.forget_grants(Securable::Table(table)).await?;
            }
        }
        done()
    }

    /// `USE s`: the schema unqualified names resolve in from now on.
    pub(super) async fn use_schema(&self, target: &Use) -> Result<SendableRecordBatchStream> {
        let name = match target {
            Use::Schema(n) | Use::Database(n) | Use::Object(n) => schema_of(n)?,
            other => return Err(Error::NotSupported(format!("{other}"))),
        };
        if !self.warehouse().schema_exists(&name).await? {
            return Err(Error::SchemaNotFound { schema: name });
        }
        let state = self.ctx.state_ref();
        let mut state = state.write();
        state.config_mut().options_mut().catalog.default_schema = name;
        done()
    }
}
