"""config.py: every setting is parsed when a config object is created; a bad or
missing value raises ConfigError naming the variable, and ProductionConfig refuses
an insecure deployment outright.

Each test starts from an environment with none of the variables config.py reads,
and config.BASE_DIR points at an empty temporary directory, so neither the
developer's environment nor the repository's `.env` can influence the result.
"""

from __future__ import annotations

import inspect
import os
import re
import secrets
import stat

import pytest

import config
from config import (
    ConfigError,
    DevelopmentConfig,
    ProductionConfig,
    TestConfig,
    config_class_from_env,
    weak_secret_problem,
)

# Random per run: a key written here would be "in the repository", which every
# configuration refuses.
SECRET = secrets.token_urlsafe(30)
JWT_SECRET = secrets.token_urlsafe(30)
DATABASE = "postgresql://wafaa:pw@db.internal:5432/wafaa"


def _variables_config_reads() -> set[str]:
    """Every environment variable config.py reads, found in its source, so that a
    variable added later is cleared too."""
    source = inspect.getsource(config)
    names = set(re.findall(r'env_\w+\(\s*"([A-Z][A-Z0-9_]*)"', source))
    names |= set(config.Config.DEFAULT_RATE_LIMITS)
    names |= {"DATABASE_URL", "TEST_DATABASE_URL", "MIGRATION_DATABASE_URL", "TEST_MIGRATION_DATABASE_URL", "APP_ENV"}
    names |= {"SECRET_KEY", "JWT_SECRET_KEY"}
    return names


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch, tmp_path):
    for name in _variables_config_reads():
        # setenv first so that undo removes the variable even if something (say
        # load_dotenv) sets it during the test; then delete it for the test.
        monkeypatch.setenv(name, "placeholder")
        monkeypatch.delenv(name)
    monkeypatch.setattr(config, "BASE_DIR", tmp_path)
    return tmp_path


@pytest.fixture
def production_env(monkeypatch):
    """A complete, valid production environment; tests then break one thing."""
    monkeypatch.setenv("SECRET_KEY", SECRET)
    monkeypatch.setenv("JWT_SECRET_KEY", JWT_SECRET)
    monkeypatch.setenv("DATABASE_URL", DATABASE)
    monkeypatch.setenv("CORS_ORIGINS", '["https://app.example.com"]')
    return monkeypatch


# --- a valid production configuration ------------------------------------------------


def test_valid_production_config_constructs_with_safe_values(production_env):
    cfg = ProductionConfig()
    assert cfg.ENV_NAME == "production"
    assert cfg.DEBUG is False
    assert cfg.TESTING is False
    assert cfg.SECRET_KEY == SECRET
    assert cfg.JWT_SECRET_KEY == JWT_SECRET
    assert cfg.SQLALCHEMY_DATABASE_URI == "postgresql+psycopg://wafaa:pw@db.internal:5432/wafaa"
    assert cfg.CORS_ORIGINS == ["https://app.example.com"]
    assert cfg.BCRYPT_ROUNDS >= 12
    assert cfg.JWT_ALGORITHM == "HS256"


def test_production_accepts_secrets_of_exactly_32_characters_and_12_bcrypt_rounds(production_env):
    key = secrets.token_hex(16)  # 128 random bits, 32 hex digits
    production_env.setenv("SECRET_KEY", key)
    production_env.setenv("JWT_SECRET_KEY", secrets.token_hex(16))
    production_env.setenv("BCRYPT_ROUNDS", "12")
    cfg = ProductionConfig()
    assert cfg.SECRET_KEY == key
    assert cfg.BCRYPT_ROUNDS == 12


# --- ProductionConfig refuses an insecure deployment -------------------------------


@pytest.mark.parametrize("name", ["SECRET_KEY", "JWT_SECRET_KEY"])
def test_production_refuses_a_missing_secret(production_env, name):
    production_env.delenv(name)
    with pytest.raises(ConfigError, match=name):
        ProductionConfig()


@pytest.mark.parametrize("name", ["SECRET_KEY", "JWT_SECRET_KEY"])
def test_production_refuses_a_blank_secret(production_env, name):
    production_env.setenv(name, "   ")
    with pytest.raises(ConfigError, match=name):
        ProductionConfig()


@pytest.mark.parametrize("name", ["SECRET_KEY", "JWT_SECRET_KEY"])
def test_production_refuses_a_secret_shorter_than_32_characters(production_env, name):
    production_env.setenv(name, "x" * 31)
    with pytest.raises(ConfigError, match=name):
        ProductionConfig()


@pytest.mark.parametrize("value", ["true", "1", "yes", "on", "TRUE"])
def test_production_refuses_debug(production_env, value):
    production_env.setenv("DEBUG", value)
    with pytest.raises(ConfigError, match="DEBUG"):
        ProductionConfig()


@pytest.mark.parametrize("value", ['["*"]', '["https://app.example.com", "*"]'])
def test_production_refuses_a_wildcard_cors_origin(production_env, value):
    production_env.setenv("CORS_ORIGINS", value)
    with pytest.raises(ConfigError, match="CORS_ORIGINS"):
        ProductionConfig()


@pytest.mark.parametrize("rounds", ["4", "11"])
def test_production_refuses_fewer_than_12_bcrypt_rounds(production_env, rounds):
    production_env.setenv("BCRYPT_ROUNDS", rounds)
    with pytest.raises(ConfigError, match="BCRYPT_ROUNDS"):
        ProductionConfig()


def test_production_refuses_a_missing_database_url(production_env):
    production_env.delenv("DATABASE_URL")
    with pytest.raises(ConfigError, match="DATABASE_URL"):
        ProductionConfig()


def test_production_has_no_development_fallback_secret(production_env):
    # Development makes its own keys; production must never fall back to any.
    production_env.delenv("SECRET_KEY")
    production_env.delenv("JWT_SECRET_KEY")
    assert DevelopmentConfig().SECRET_KEY  # development makes one ...
    with pytest.raises(ConfigError, match="SECRET_KEY"):
        ProductionConfig()  # ... production does not


# --- secrets: none from the repository, none guessable ---------------------------------


def test_development_makes_random_keys_once_keeps_them_private_and_reuses_them(clean_environment, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", DATABASE)
    first = DevelopmentConfig()
    path = clean_environment / "instance" / "secrets.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert first.SECRET_KEY != first.JWT_SECRET_KEY
    assert weak_secret_problem(first.SECRET_KEY) is None
    again = DevelopmentConfig()
    assert (again.SECRET_KEY, again.JWT_SECRET_KEY) == (first.SECRET_KEY, first.JWT_SECRET_KEY)
    # Another checkout (another instance/) gets keys of its own.
    (clean_environment / "instance" / "secrets.json").unlink()
    assert DevelopmentConfig().JWT_SECRET_KEY != first.JWT_SECRET_KEY


def test_development_refuses_a_key_file_others_can_read(clean_environment, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", DATABASE)
    DevelopmentConfig()
    os.chmod(clean_environment / "instance" / "secrets.json", 0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        DevelopmentConfig()


@pytest.mark.parametrize("config_class", [DevelopmentConfig, ProductionConfig, TestConfig])
@pytest.mark.parametrize(
    "value",
    [
        "dev-only-secret-do-not-use-in-production-0123456789",  # the old built-in development key
        "dev-only-jwt-secret-do-not-use-in-production-0123",
        "test-only-secret-0123456789abcdef0123456789",
    ],
)
def test_every_configuration_refuses_a_key_that_was_ever_in_the_repository(production_env, config_class, value):
    production_env.setenv("TEST_DATABASE_URL", DATABASE)
    production_env.setenv("JWT_SECRET_KEY", value)
    with pytest.raises(ConfigError, match="JWT_SECRET_KEY is a value written in the repository"):
        config_class()


def test_a_key_copied_from_the_source_tree_is_refused(production_env):
    # Any long enough string of the code counts, not only a list of known keys.
    copied = "Symmetric algorithms only: the service both signs and verifies its tokens."
    assert copied in inspect.getsource(config)
    production_env.setenv("SECRET_KEY", copied)
    with pytest.raises(ConfigError, match="SECRET_KEY is a value written in the repository"):
        ProductionConfig()


@pytest.mark.parametrize(
    "value",
    ["a" * 32, "x" * 64, "ab" * 20, "0123456789abcdef" * 3, "a" * 31 + "b"],
    ids=["one-char", "one-char-long", "two-chars", "repeated-pattern", "nearly-constant"],
)
def test_production_refuses_a_low_entropy_key(production_env, value):
    production_env.setenv("SECRET_KEY", value)
    with pytest.raises(ConfigError, match="SECRET_KEY is not random enough"):
        ProductionConfig()


def test_production_refuses_the_demo_password(production_env):
    production_env.setenv("SEED_ADMIN_PASSWORD", config.DEMO_PASSWORD)
    with pytest.raises(ConfigError, match="SEED_ADMIN_PASSWORD"):
        ProductionConfig()
    production_env.setenv("SEED_ADMIN_PASSWORD", "x")
    with pytest.raises(ConfigError, match="SEED_ADMIN_PASSWORD: Password must be at least 12"):
        ProductionConfig()
    production_env.setenv("SEED_ADMIN_PASSWORD", secrets.token_urlsafe(16))
    assert ProductionConfig().SEED_ADMIN_PASSWORD


def test_production_has_no_default_seed_password(production_env):
    assert ProductionConfig().SEED_ADMIN_PASSWORD is None


# --- bad values name their variable (any environment) ------------------------------


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("ACCESS_TOKEN_EXPIRE_MINUTES", "thirty"),
        ("REFRESH_TOKEN_EXPIRE_DAYS", "7d"),
        ("BCRYPT_ROUNDS", "12.5"),
        ("DB_POOL_SIZE", "five"),
        ("MAX_CONTENT_LENGTH", "1MB"),
        ("TRUSTED_PROXY_COUNT", "0x1"),
        ("LOGIN_LOCKOUT_THRESHOLD", "ten"),
    ],
)
def test_non_integer_int_settings_raise_config_error_naming_the_variable(production_env, name, value):
    production_env.setenv(name, value)
    with pytest.raises(ConfigError, match=name):
        ProductionConfig()


def test_integer_settings_tolerate_surrounding_spaces(production_env):
    production_env.setenv("BCRYPT_ROUNDS", " 13 ")
    assert ProductionConfig().BCRYPT_ROUNDS == 13


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("ACCESS_TOKEN_EXPIRE_MINUTES", "0"),
        ("REFRESH_TOKEN_EXPIRE_DAYS", "-1"),
        ("BCRYPT_ROUNDS", "40"),
        ("MAX_CONTENT_LENGTH", "10"),
    ],
)
def test_out_of_range_int_settings_raise_config_error_naming_the_variable(production_env, name, value):
    production_env.setenv(name, value)
    with pytest.raises(ConfigError, match=name):
        ProductionConfig()


@pytest.mark.parametrize("name", ["DEBUG", "RATELIMIT_ENABLED"])
@pytest.mark.parametrize("value", ["maybe", "2", "enabled", "tru"])
def test_bad_booleans_raise_config_error_naming_the_variable(production_env, name, value):
    production_env.setenv(name, value)
    with pytest.raises(ConfigError, match=name):
        ProductionConfig()


@pytest.mark.parametrize(("value", "expected"), [("false", False), ("0", False), ("off", False), ("NO", False)])
def test_false_booleans_are_accepted(production_env, value, expected):
    production_env.setenv("DEBUG", value)
    assert ProductionConfig().DEBUG is expected


@pytest.mark.parametrize(
    "value",
    [
        "https://app.example.com",  # not JSON
        "https://a.example.com,https://b.example.com",  # comma list, not JSON
        '{"origin": "https://app.example.com"}',  # JSON, not a list
        '"https://app.example.com"',  # JSON string, not a list
        "[1, 2]",  # not strings
        "[null]",
    ],
)
def test_cors_origins_must_be_a_json_list_of_strings(production_env, value):
    production_env.setenv("CORS_ORIGINS", value)
    with pytest.raises(ConfigError, match="CORS_ORIGINS"):
        ProductionConfig()


@pytest.mark.parametrize(
    "origin",
    [
        "https://app.example.com/",  # trailing slash: a path
        "https://app.example.com/admin",
        "app.example.com",  # no scheme
        "ftp://app.example.com",
        "https://*.example.com",  # a wildcard pattern
        r"https://.*\.example\.com",  # a regex
        "https://APP.example.com",  # browsers send lower-case hosts
        "null",
        "https://app.example.com:99999x",
        "",
    ],
)
def test_cors_origins_entries_must_be_plain_origins(production_env, origin):
    production_env.setenv("CORS_ORIGINS", f'["https://ok.example.com", "{origin.replace(chr(92), chr(92) * 2)}"]')
    with pytest.raises(ConfigError, match="CORS_ORIGINS"):
        ProductionConfig()


def test_cors_origins_accepts_plain_origins_with_ports(production_env):
    production_env.setenv("CORS_ORIGINS", '["https://app.example.com", "http://localhost:3000"]')
    assert ProductionConfig().CORS_ORIGINS == ["https://app.example.com", "http://localhost:3000"]


@pytest.mark.parametrize("value", ["none", "RS256", "ES256", "hs256", "HS1024"])
def test_unknown_jwt_algorithm_raises_config_error(production_env, value):
    production_env.setenv("JWT_ALGORITHM", value)
    with pytest.raises(ConfigError, match="JWT_ALGORITHM"):
        ProductionConfig()


@pytest.mark.parametrize("value", ["HS384", "HS512"])
def test_other_hmac_jwt_algorithms_are_accepted(production_env, value):
    production_env.setenv("JWT_ALGORITHM", value)
    cfg = ProductionConfig()
    assert cfg.JWT_ALGORITHM == value
    assert cfg.JWT_DECODE_ALGORITHMS == [value]


def test_unknown_log_level_raises_config_error(production_env):
    production_env.setenv("LOG_LEVEL", "LOUD")
    with pytest.raises(ConfigError, match="LOG_LEVEL"):
        ProductionConfig()


@pytest.mark.parametrize("value", ["Wafaa_App", "app-role", "1role", "x; DROP TABLE tenants"])
def test_db_app_role_must_be_a_plain_identifier(production_env, value):
    production_env.setenv("DB_APP_ROLE", value)
    with pytest.raises(ConfigError, match="DB_APP_ROLE"):
        ProductionConfig()


# --- APP_ENV ------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["staging", "prod", "test"])
def test_unknown_app_env_raises_config_error_naming_it(monkeypatch, value):
    monkeypatch.setenv("APP_ENV", value)
    with pytest.raises(ConfigError, match="APP_ENV"):
        config_class_from_env()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("production", ProductionConfig),
        ("development", DevelopmentConfig),
        ("testing", TestConfig),
        ("Testing", TestConfig),
    ],
)
def test_app_env_picks_the_config_class(monkeypatch, value, expected):
    monkeypatch.setenv("APP_ENV", value)
    assert config_class_from_env() is expected


def test_app_env_defaults_to_production_so_a_forgotten_setting_fails_closed():
    assert config_class_from_env() is ProductionConfig


def test_app_env_is_read_from_dotenv_when_not_in_the_environment(clean_environment, monkeypatch):
    (clean_environment / ".env").write_text("APP_ENV=development\n")
    assert config_class_from_env() is DevelopmentConfig
    monkeypatch.setenv("APP_ENV", "testing")  # the real environment wins
    assert config_class_from_env() is TestConfig


# --- database URLs ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("postgresql://u:p@h:5432/d", "postgresql+psycopg://u:p@h:5432/d"),
        ("postgres://u:p@h:5432/d", "postgresql+psycopg://u:p@h:5432/d"),
        ("postgresql+psycopg://u:p@h:5432/d", "postgresql+psycopg://u:p@h:5432/d"),
    ],
)
def test_database_urls_use_psycopg3(production_env, raw, expected):
    production_env.setenv("DATABASE_URL", raw)
    assert ProductionConfig().SQLALCHEMY_DATABASE_URI == expected


@pytest.mark.parametrize("raw", ["mysql://u:p@h/d", "sqlite:///wafaa.db", "postgresql+psycopg2://u:p@h/d", "h:5432/d"])
def test_non_postgresql_database_urls_are_refused(production_env, raw):
    production_env.setenv("DATABASE_URL", raw)
    with pytest.raises(ConfigError, match="DATABASE_URL"):
        ProductionConfig()


def test_test_config_reads_test_database_url_and_never_database_url(monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "postgresql://prod@db/prod")
    with pytest.raises(ConfigError, match="TEST_DATABASE_URL"):
        TestConfig()
    monkeypatch.setenv("TEST_DATABASE_URL", "postgres://t@127.0.0.1/wafaa_test")
    assert TestConfig().SQLALCHEMY_DATABASE_URI == "postgresql+psycopg://t@127.0.0.1/wafaa_test"


# --- .env ---------------------------------------------------------------------------


def test_production_reads_dotenv_but_real_environment_variables_win(clean_environment, monkeypatch):
    (clean_environment / ".env").write_text(
        f"SECRET_KEY={SECRET}\nJWT_SECRET_KEY={JWT_SECRET}\nDATABASE_URL=postgresql://file@db/file\n"
    )
    monkeypatch.setenv("DATABASE_URL", "postgresql://env@db/env")
    cfg = ProductionConfig()
    assert cfg.SECRET_KEY == SECRET
    assert cfg.JWT_SECRET_KEY == JWT_SECRET
    assert cfg.SQLALCHEMY_DATABASE_URI == "postgresql+psycopg://env@db/env"


def test_test_config_ignores_dotenv(clean_environment, monkeypatch):
    (clean_environment / ".env").write_text("BCRYPT_ROUNDS=15\nTEST_DATABASE_URL=postgresql://file@db/file_test\n")
    monkeypatch.setenv("TEST_DATABASE_URL", "postgresql://env@127.0.0.1/wafaa_test")
    cfg = TestConfig()
    assert cfg.BCRYPT_ROUNDS == 4
    assert cfg.SQLALCHEMY_DATABASE_URI == "postgresql+psycopg://env@127.0.0.1/wafaa_test"


# --- rules added after review ----------------------------------------------------------


@pytest.mark.parametrize("value", ["2/hr", "x", "ten per minute", "5/minute;oops"])
def test_a_malformed_rate_limit_stops_start_up_instead_of_switching_the_limit_off(production_env, value):
    production_env.setenv("RATELIMIT_LOGIN_PER_IP", value)
    with pytest.raises(ConfigError, match="RATELIMIT_LOGIN_PER_IP"):
        ProductionConfig()


def test_rate_limits_in_either_syntax_are_accepted(production_env):
    production_env.setenv("RATELIMIT_LOGIN_PER_ACCOUNT", "5 per minute; 20/hour")
    assert ProductionConfig().RATELIMIT_LOGIN_PER_ACCOUNT == "5 per minute; 20/hour"


def test_production_refuses_the_same_key_for_flask_and_jwt(production_env):
    production_env.setenv("JWT_SECRET_KEY", SECRET)
    with pytest.raises(ConfigError, match="JWT_SECRET_KEY must differ from SECRET_KEY"):
        ProductionConfig()


def test_the_absolute_session_limit_cannot_be_shorter_than_a_refresh_token(production_env):
    production_env.setenv("REFRESH_TOKEN_EXPIRE_DAYS", "14")
    production_env.setenv("SESSION_MAX_DAYS", "7")
    with pytest.raises(ConfigError, match="SESSION_MAX_DAYS"):
        ProductionConfig()


@pytest.mark.parametrize(("value", "threshold"), [(None, None), ("off", None), ("OFF", None), ("0", 0), ("5", 5)])
def test_statement_preparation_is_off_unless_a_threshold_is_given(production_env, monkeypatch, value, threshold):
    if value is not None:
        monkeypatch.setenv("DB_PREPARE_THRESHOLD", value)
    config = ProductionConfig()
    assert config.DB_PREPARE_THRESHOLD == threshold
    assert config.SQLALCHEMY_ENGINE_OPTIONS["connect_args"]["prepare_threshold"] == threshold


@pytest.mark.parametrize("value", ["-1", "on", "1.5"])
def test_a_statement_preparation_threshold_that_is_not_a_count_is_refused(production_env, monkeypatch, value):
    monkeypatch.setenv("DB_PREPARE_THRESHOLD", value)
    with pytest.raises(ConfigError, match="DB_PREPARE_THRESHOLD"):
        ProductionConfig()
