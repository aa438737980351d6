//! Server settings every session starts with: what PostgreSQL drivers read back
//! through ParameterStatus, SHOW and `current_setting`. A leaf shared by the
//! session and the Postgres function shims.

/// Settings every session starts with (what PostgreSQL drivers read back).
pub const DEFAULT_SETTINGS: &[(&str, &str)] = &[
    ("application_name", ""),
    ("client_encoding", "UTF8"),
    ("datestyle", "ISO, MDY"),
    ("default_transaction_isolation", "read committed"),
    ("extra_float_digits", "1"),
    ("integer_datetimes", "on"),
    ("intervalstyle", "postgres"),
    ("is_superuser", "on"),
    // No JIT compilation here: asyncpg reads and sets it around type introspection.
    ("jit", "off"),
    ("search_path", "\"$user\", public"),
    ("server_encoding", "UTF8"),
    ("server_version", "16.0 (Hindsight 0.1.0)"),
    ("server_version_num", "160000"),
    ("standard_conforming_strings", "on"),
    ("statement_timeout", "0"),
    ("timezone", "UTC"),
    ("transaction_isolation", "read committed"),
];
