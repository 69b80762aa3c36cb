"""Schema migrations (Alembic, configured in code from settings)."""

from __future__ import annotations

from importlib import resources

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from sqlalchemy import Engine

import freshtoken.store.models  # noqa: F401  (registers the tables on the metadata)
from freshtoken.db.base import Base


def alembic_config(engine: Engine) -> Config:
    """An Alembic config whose scripts live in ``freshtoken.migrations``."""
    cfg = Config()
    cfg.set_main_option("script_location", str(resources.files("freshtoken") / "migrations"))
    # ConfigParser interpolates '%': escape it (URL-encoded options such as search_path use it).
    url = engine.url.render_as_string(hide_password=False).replace("%", "%%")
    cfg.set_main_option("sqlalchemy.url", url)
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to ``revision`` (default: the newest)."""
    cfg = alembic_config(engine)
    with engine.begin() as connection:
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, revision)


def downgrade(engine: Engine, revision: str) -> None:
    """Take the schema back to ``revision``."""
    cfg = alembic_config(engine)
    with engine.begin() as connection:
        cfg.attributes["connection"] = connection
        command.downgrade(cfg, revision)


def schema_drift(engine: Engine) -> list[object]:
    """The differences autogenerate sees between the models and the database (empty = in sync)."""
    with engine.connect() as connection:
        ctx = MigrationContext.configure(
            connection,
            opts={"compare_type": True, "render_as_batch": connection.dialect.name == "sqlite"},
        )
        return list(compare_metadata(ctx, Base.metadata))
