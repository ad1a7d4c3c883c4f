//! Client for vendors' apps of the licensing service, over its legacy HTTP API
//! (`/api/action.php`, see `docs/http-api.md`).
//!
//! Every call sends a fresh random nonce and returns only once the answer's response token is
//! verified: an Ed25519 signature by one of the app's **pinned** public keys (chosen by the
//! token's `kid`), the nonce sent, the action, the status agreeing with the HTTP answer, the
//! user, the HWID, the token's validity window and, for downloads, the SHA-256 of the bytes
//! received. A fake server, a replayed answer or an answer altered on the way is an
//! [`Error::Verify`], never a success; a refusal of the real service is an [`Error::Refused`]
//! carrying the contract's [`ErrorCode`].
//!
//! The client keeps the last good [`Lease`] (a verified successful `login` or `connect` of a user
//! with an active licence), so the app may keep running while the service is unreachable, until
//! the lease's `exp`: see [`Client::connect_or_lease`].
//!
//! ```no_run
//! use licensing_client::{Client, Credentials, Session};
//!
//! # async fn run() -> Result<(), licensing_client::Error> {
//! let client = Client::builder("https://licensing.example.com/api")
//!     .app_secret("3f9c…") // the app's secret
//!     .public_key("u1Hq…=") // `public` of get_app_data, built into the app
//!     .build()?;
//! let me = Credentials::new("bob", "hunter22").with_hwid("HWID-1");
//! let login = client.login(&me).await?;
//! if !login.licence_active() {
//!     return Ok(()); // no active licence: stop here
//! }
//! match client.connect_or_lease(&me).await? {
//!     Session::Online(beat) => println!("online, {} pings", beat.total_pings),
//!     Session::Offline(lease) => println!("offline until {:?}", lease.expires()),
//! }
//! client.download_to_path(&me, "update.bin").await?;
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod client;
mod error;
mod keys;
mod lease;
mod token;

pub use client::{
    Client, ClientBuilder, Credentials, Downloaded, Heartbeat, LoginInfo, Redeemed, Registered, Registration,
    Session,
};
pub use error::{Error, ErrorCode, Refusal, VerifyError};
pub use keys::{PinnedKeys, jwk_thumbprint};
pub use lease::{Clock, Lease, SystemClock};
pub use token::{Action, Claims, LicenceStatus};
