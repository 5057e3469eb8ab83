//! Settings from environment variables: one loader, one error, one table.
//!
//! Every crate's config has a serde form; the environment is read through it, so a
//! config file and the variables share one schema and one validation. A config
//! declares its variables as an [`EnvSection`]: the prefix (`CONNECTION_POOL_`) and,
//! for each variable, its full name, the setting it feeds, its default and its meaning.
//! [`load_env`] then holds every loader to the same rules:
//!
//! - a variable that is not set keeps the default; no variable set gives the defaults;
//! - an unknown variable under the section's prefix is refused (a typo is never
//!   silently ignored); under the bare `CONNECTION_` prefix, every name that is not
//!   core's and does not start with a [reserved section](RESERVED_SECTIONS) is refused;
//! - a value is read as its setting's type asks, strictly: a whole number for a count, a
//!   finite decimal for a rate (`NaN` and `inf` are refused), `true`/`false`, a variant
//!   name for a choice, text for text; `null` turns an optional setting off;
//! - every error is a [`ConfigError`] naming the variable, the setting and the value
//!   (unless the variable is a secret).
//!
//! The tables are public ([`EnvSection::vars`]), so documentation can be checked
//! against them; the README's table is, by a test.
//!
//! ```
//! use connection_core::ConnectionConfig;
//!
//! let err = ConnectionConfig::from_vars([("CONNECTION_TIMOUT_MS", "1")]).unwrap_err();
//! assert_eq!(err.variable(), Some("CONNECTION_TIMOUT_MS"));
//!
//! let err = ConnectionConfig::from_vars([("CONNECTION_CONNECT_TIMEOUT_MS", "NaN")]).unwrap_err();
//! assert_eq!(err.variable(), Some("CONNECTION_CONNECT_TIMEOUT_MS"));
//! assert!(err.to_string().contains("NaN"), "{err}");
//! ```

use crate::config::ConfigError;

/// The prefix every variable of the project starts with.
pub const PROJECT_PREFIX: &str = "CONNECTION_";

/// The sections under [`PROJECT_PREFIX`] that belong to other crates of the family:
/// core's own loader leaves `CONNECTION_<SECTION>*` to them and refuses any other
/// unknown `CONNECTION_*` name.
pub const RESERVED_SECTIONS: &[&str] = &[
    "BACKOFF_",
    "BREAKER_",
    "BULKHEAD_",
    "RATE_LIMIT_",
    "POOL_",
    "MANAGER_",
    "HEALTH_",
    "WS_",
    "HTTP_",
    "SSE_",
    "TCP_",
    "LISTENER_",
    "TLS_",
];

/// One environment variable a config reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EnvVar {
    name: &'static str,
    field: &'static str,
    default: &'static str,
    meaning: &'static str,
    secret: bool,
}

impl EnvVar {
    /// The variable `name` (full, prefix included) feeding the setting `field` (the
    /// name [`ConfigError::field`] uses), with its default as it would be written in
    /// the environment (`null` for "not set") and a one-line meaning.
    pub const fn new(
        name: &'static str,
        field: &'static str,
        default: &'static str,
        meaning: &'static str,
    ) -> Self {
        Self {
            name,
            field,
            default,
            meaning,
            secret: false,
        }
    }

    /// Marks the value as a secret: errors never print it.
    pub const fn secret(mut self) -> Self {
        self.secret = true;
        self
    }

    /// The full variable name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The setting it feeds.
    pub fn field(&self) -> &'static str {
        self.field
    }

    /// The default, as it would be written in the environment.
    pub fn default_value(&self) -> &'static str {
        self.default
    }

    /// What it means.
    pub fn meaning(&self) -> &'static str {
        self.meaning
    }

    /// Whether the value is a secret.
    pub fn is_secret(&self) -> bool {
        self.secret
    }

    /// The serde field the value goes to: the name after the prefix, lower-cased.
    fn key(&self, prefix: &str) -> String {
        self.name
            .strip_prefix(prefix)
            .unwrap_or(self.name)
            .to_ascii_lowercase()
    }
}

/// The variables of one config: a prefix and a table.
#[derive(Clone, Copy, Debug)]
pub struct EnvSection {
    prefix: &'static str,
    vars: &'static [EnvVar],
}

impl EnvSection {
    /// A section reading the variables in `vars`, all of which start with `prefix`.
    pub const fn new(prefix: &'static str, vars: &'static [EnvVar]) -> Self {
        Self { prefix, vars }
    }

    /// The prefix, e.g. `CONNECTION_POOL_`.
    pub fn prefix(&self) -> &'static str {
        self.prefix
    }

    /// Every variable of the section.
    pub fn vars(&self) -> &'static [EnvVar] {
        self.vars
    }

    fn owns(&self, name: &str) -> bool {
        let Some(rest) = name.strip_prefix(self.prefix) else {
            return false;
        };
        // Core's section is the bare project prefix: its siblings' names are theirs.
        !(self.prefix == PROJECT_PREFIX && RESERVED_SECTIONS.iter().any(|s| rest.starts_with(s)))
    }

    fn var(&self, name: &str) -> Option<&'static EnvVar> {
        self.vars.iter().find(|v| v.name == name)
    }
}

/// Reads a config's variables from `vars` and builds it.
///
/// The section's variables present in `vars` are deserialized into the serde form `R`
/// (keys are the names after the prefix, lower-cased), then `finish` validates and
/// converts. Every error, from parsing or from `finish`, names the variable; see the
/// [module docs](self) for the rules.
///
/// ```
/// use connection_core::env::{EnvSection, EnvVar, load_env};
/// use connection_core::ConfigError;
///
/// #[derive(serde::Deserialize, Default, Debug)]
/// #[serde(default, deny_unknown_fields)]
/// struct Limits { max_size: u32 }
///
/// const ENV: EnvSection = EnvSection::new("APP_", &[
///     EnvVar::new("APP_MAX_SIZE", "max_size", "4", "most items"),
/// ]);
/// let finish = |l: Limits| if l.max_size == 0 {
///     Err(ConfigError::new("max_size", "must be at least 1"))
/// } else {
///     Ok(l)
/// };
/// assert_eq!(load_env(&ENV, [("APP_MAX_SIZE", "8")], finish)?.max_size, 8);
/// assert_eq!(load_env(&ENV, [("APP_MAX_SIZ", "8")], finish).unwrap_err().variable(), Some("APP_MAX_SIZ"));
/// let err = load_env(&ENV, [("APP_MAX_SIZE", "0")], finish).unwrap_err();
/// assert_eq!((err.field(), err.variable()), ("max_size", Some("APP_MAX_SIZE")));
/// # Ok::<(), ConfigError>(())
/// ```
pub fn load_env<R, T, K, V>(
    section: &EnvSection,
    vars: impl IntoIterator<Item = (K, V)>,
    finish: impl FnOnce(R) -> Result<T, ConfigError>,
) -> Result<T, ConfigError>
where
    R: serde::de::DeserializeOwned,
    K: AsRef<str>,
    V: AsRef<str>,
{
    let mut seen: Vec<(&'static EnvVar, String)> = Vec::new();
    for (name, value) in vars {
        let name = name.as_ref();
        if !section.owns(name) {
            continue;
        }
        let Some(var) = section.var(name) else {
            let known: Vec<&str> = section.vars.iter().map(|v| v.name).collect();
            return Err(ConfigError::new(
                "",
                format!("unknown variable; known here: {}", known.join(", ")),
            )
            .with_variable(name.to_owned(), None));
        };
        seen.retain(|(v, _)| v.name != var.name);
        seen.push((var, value.as_ref().trim().to_owned()));
    }
    let located = |var: &EnvVar, raw: &str, err: ConfigError| {
        let value = (!var.secret).then(|| raw.to_owned());
        err.with_variable(var.name.to_owned(), value)
    };
    let keys: Vec<String> = seen.iter().map(|(v, _)| v.key(section.prefix)).collect();
    let map = serde::de::value::MapDeserializer::<_, serde::de::value::Error>::new(
        keys.iter()
            .zip(&seen)
            .map(|(key, (_, raw))| (key.as_str(), EnvValue(raw))),
    );
    let parsed: R = serde_path_to_error::deserialize(map).map_err(|e| {
        let key = e.path().iter().next().map(|seg| seg.to_string());
        let reason = e.into_inner().to_string();
        match keys
            .iter()
            .zip(&seen)
            .find(|(k, _)| Some(*k) == key.as_ref())
        {
            Some((_, (var, raw))) => located(var, raw, ConfigError::new(var.field, reason)),
            None => {
                ConfigError::new("", reason).with_variable(format!("{}*", section.prefix), None)
            }
        }
    })?;
    finish(parsed).map_err(|err| {
        if let Some((var, raw)) = seen.iter().find(|(var, _)| var.field == err.field()) {
            return located(var, raw, err);
        }
        if seen.is_empty() {
            return err;
        }
        // A rule between settings (a maximum below its minimum, say) broken by a value
        // that was set: name every variable that was, since any of them may be the one
        // to change.
        let given: Vec<String> = seen
            .iter()
            .map(|(var, raw)| match var.secret {
                true => var.name.to_owned(),
                false => format!("{}={raw:?}", var.name),
            })
            .collect();
        let names: Vec<&str> = seen.iter().map(|(var, _)| var.name).collect();
        let reason = format!("{} (given {})", err.reason(), given.join(", "));
        ConfigError::new(err.field(), reason).with_variable(names.join(", "), None)
    })
}

/// One variable's text, read as the setting's type asks: the serde form decides whether
/// `1234` is a number or a name, so a numeric token stays text and `NaN` never becomes
/// a number.
struct EnvValue<'a>(&'a str);

impl<'de> serde::de::IntoDeserializer<'de, serde::de::value::Error> for EnvValue<'_> {
    type Deserializer = Self;

    fn into_deserializer(self) -> Self {
        self
    }
}

macro_rules! parse_number {
    ($($method:ident => $visit:ident: $ty:ty),* $(,)?) => {$(
        fn $method<V: serde::de::Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
            match self.0.parse::<$ty>() {
                Ok(n) => visitor.$visit(n),
                Err(_) => Err(self.invalid(&visitor)),
            }
        }
    )*};
}

impl EnvValue<'_> {
    fn invalid(&self, expected: &dyn serde::de::Expected) -> serde::de::value::Error {
        serde::de::Error::invalid_value(serde::de::Unexpected::Str(self.0), expected)
    }
}

impl<'de> serde::de::Deserializer<'de> for EnvValue<'_> {
    type Error = serde::de::value::Error;

    fn deserialize_any<V: serde::de::Visitor<'de>>(
        self,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        visitor.visit_str(self.0)
    }

    fn deserialize_bool<V: serde::de::Visitor<'de>>(
        self,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        match self.0 {
            "true" => visitor.visit_bool(true),
            "false" => visitor.visit_bool(false),
            _ => Err(self.invalid(&"true or false")),
        }
    }

    parse_number! {
        deserialize_u8 => visit_u8: u8,
        deserialize_u16 => visit_u16: u16,
        deserialize_u32 => visit_u32: u32,
        deserialize_u64 => visit_u64: u64,
        deserialize_u128 => visit_u128: u128,
        deserialize_i8 => visit_i8: i8,
        deserialize_i16 => visit_i16: i16,
        deserialize_i32 => visit_i32: i32,
        deserialize_i64 => visit_i64: i64,
        deserialize_i128 => visit_i128: i128,
    }

    fn deserialize_f32<V: serde::de::Visitor<'de>>(
        self,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.deserialize_f64(visitor)
    }

    fn deserialize_f64<V: serde::de::Visitor<'de>>(
        self,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        match self.0.parse::<f64>() {
            Ok(x) if x.is_finite() => visitor.visit_f64(x),
            _ => Err(self.invalid(&"a finite number")),
        }
    }

    fn deserialize_option<V: serde::de::Visitor<'de>>(
        self,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        if self.0 == "null" {
            visitor.visit_none()
        } else {
            visitor.visit_some(self)
        }
    }

    fn deserialize_newtype_struct<V: serde::de::Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: serde::de::Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        use serde::de::IntoDeserializer;
        visitor.visit_enum(self.0.into_deserializer())
    }

    serde::forward_to_deserialize_any! {
        char str string bytes byte_buf unit unit_struct seq tuple tuple_struct map struct
        identifier ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug, Default, PartialEq)]
    #[serde(default, deny_unknown_fields)]
    struct Raw {
        size: Option<u32>,
        rate: Option<f64>,
        name: Option<String>,
        token: Option<String>,
    }

    const SECTION: EnvSection = EnvSection::new(
        "CONNECTION_",
        &[
            EnvVar::new("CONNECTION_SIZE", "size", "4", "a size"),
            EnvVar::new("CONNECTION_RATE", "rate", "0.5", "a rate"),
            EnvVar::new("CONNECTION_NAME", "name", "null", "a name"),
            EnvVar::new("CONNECTION_TOKEN", "token", "null", "a secret").secret(),
        ],
    );

    fn load(vars: &[(&str, &str)]) -> Result<Raw, ConfigError> {
        load_env(&SECTION, vars.iter().copied(), |r: Raw| {
            if r.size == Some(0) {
                return Err(ConfigError::new("size", "must be at least 1"));
            }
            if r.token.as_deref() == Some("bad") {
                return Err(ConfigError::new("token", "is refused"));
            }
            Ok(r)
        })
    }

    #[test]
    fn nothing_set_gives_the_defaults_and_foreign_names_are_left_alone() {
        assert_eq!(load(&[]).unwrap(), Raw::default());
        let r = load(&[
            ("PATH", "/bin"),
            ("CONNECTION_POOL_MAX_SIZE", "x"),
            ("CONNECTION_WS_URL", "x"),
        ])
        .unwrap();
        assert_eq!(r, Raw::default());
    }

    #[test]
    fn values_are_read_strictly_and_errors_name_the_variable() {
        let r = load(&[
            ("CONNECTION_SIZE", " 8 "),
            ("CONNECTION_RATE", "0.25"),
            ("CONNECTION_NAME", "1234"),
        ])
        .unwrap();
        // The serde form decides the type: digits given to a text setting stay text.
        assert_eq!((r.size, r.rate), (Some(8), Some(0.25)));
        assert_eq!(r.name.as_deref(), Some("1234"));
        assert_eq!(load(&[("CONNECTION_NAME", "null")]).unwrap().name, None);

        for bad in ["NaN", "inf", "-inf", "-1", "1e3", "4294967296", "", "eight"] {
            let err = load(&[("CONNECTION_SIZE", bad)]).unwrap_err();
            assert_eq!(err.variable(), Some("CONNECTION_SIZE"), "{bad}: {err}");
            assert_eq!(err.field(), "size");
            assert_eq!(err.value(), Some(bad), "{err}");
            assert!(err.to_string().contains("CONNECTION_SIZE"), "{err}");
        }
        for bad in ["NaN", "inf", "infinity"] {
            let err = load(&[("CONNECTION_RATE", bad)]).unwrap_err();
            assert_eq!(err.variable(), Some("CONNECTION_RATE"), "{bad}: {err}");
        }
        assert_eq!(
            load(&[("CONNECTION_RATE", "0.25")]).unwrap().rate,
            Some(0.25)
        );
        let err = load(&[("CONNECTION_SIZE", "0")]).unwrap_err();
        assert_eq!(
            (err.field(), err.variable(), err.value()),
            ("size", Some("CONNECTION_SIZE"), Some("0"))
        );
    }

    #[test]
    fn a_rule_between_settings_names_the_variables_that_were_set() {
        let finish = |r: Raw| match r.size {
            Some(3) => Err(ConfigError::new("rate", "must be set with size 3")),
            _ => Ok(r),
        };
        let err = load_env(&SECTION, [("CONNECTION_SIZE", "3")], finish).unwrap_err();
        assert_eq!(err.variable(), Some("CONNECTION_SIZE"));
        assert_eq!(err.field(), "rate");
        assert!(err.to_string().contains("CONNECTION_SIZE=\"3\""), "{err}");
        let err = load_env(
            &SECTION,
            [("CONNECTION_SIZE", "3"), ("CONNECTION_TOKEN", "hidden")],
            finish,
        )
        .unwrap_err();
        assert_eq!(err.variable(), Some("CONNECTION_SIZE, CONNECTION_TOKEN"));
        assert!(!err.to_string().contains("hidden"), "{err}");
    }

    #[test]
    fn typos_are_refused_and_secrets_are_not_printed() {
        let err = load(&[("CONNECTION_SIZ", "8")]).unwrap_err();
        assert_eq!(err.variable(), Some("CONNECTION_SIZ"));
        assert!(err.to_string().contains("CONNECTION_SIZE"), "{err}");

        let err = load(&[("CONNECTION_TOKEN", "bad")]).unwrap_err();
        assert_eq!(err.variable(), Some("CONNECTION_TOKEN"));
        assert_eq!(err.value(), None);
        assert!(!err.to_string().contains("bad"), "{err}");
        assert_eq!(
            load(&[("CONNECTION_TOKEN", "t0k")])
                .unwrap()
                .token
                .as_deref(),
            Some("t0k")
        );
    }
}
