//! settings placeholder
pub const ENV_PREFIX: &str = "CONNECTION_HTTP_";
/// x
#[derive(Debug)] pub struct HttpSettings;
