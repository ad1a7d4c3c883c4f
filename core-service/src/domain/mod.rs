//! The licensing rules and the types they speak: no gRPC and no SQL in here.

pub mod credential_cache;
mod error;
mod fields;
pub mod keyvault;
pub mod licence;
pub mod password;
pub mod secrets;
pub mod throttle;
pub mod token;

#[cfg(test)]
mod fuzz;

pub use error::CoreError;
pub use fields::{
    AppSecret, Email, Hwid, LicenceKey, Password, Username, mask_key, parse_app_name, parse_filename,
    parse_nonce, parse_version,
};
pub use licence::{HeldLicence, LicenceStatus, Standing};
