//! sea-orm entities, one module per table. The schema itself (constraints, indexes) is defined by
//! the migrations, not derived from these.

pub mod api_token;
pub mod app;
pub mod app_file;
pub mod app_signing_key;
pub mod developer;
pub mod developer_session;
pub mod file_chunk;
pub mod licence;
pub mod user;
