"""Reading settings from the environment and from files with pydantic-settings, for any pydantic model:
``PREFIX_*`` variables (nested with ``__``) of a given mapping, extra variables mapped onto one nested field, and
TOML / YAML / JSON files, each failure to read one :class:`ConfigError`. :func:`qdrant_distill.migration.config.load_config`
is its one user; it imports this module on first use (pydantic-settings costs about 50 ms at import, which commands
that load no configuration do not pay).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    JsonConfigSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
    YamlConfigSettingsSource,
)
from pydantic_settings.sources import ConfigFileSourceMixin

from qdrant_distill.errors import ConfigError

__all__ = ["read_settings"]


class _Environment(EnvSettingsSource):
    """The prefixed variables of a given mapping (not only ``os.environ``), plus ``extra`` ones (variable ->
    (field, key): ``QDRANT_URL`` -> ``qdrant.url``)."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str],
                 extra: Mapping[str, tuple[str, str]]) -> None:
        self.environ = environ
        self.extra = extra
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return {name.lower(): value for name, value in self.environ.items()}  # names are case-insensitive

    def __call__(self) -> dict[str, Any]:
        data = super().__call__()
        for name, (field, key) in self.extra.items():
            if self.environ.get(name):  # a prefixed variable (QDRANT_DISTILL_QDRANT__URL) wins over QDRANT_URL
                data[field] = {key: self.environ[name]} | data.get(field, {})
        return data


class _CheckedFile(ConfigFileSourceMixin):
    """A file source whose every failure to load (unreadable, not UTF-8, not parsed, not a mapping) is one
    :class:`ConfigError`."""

    def _read_file(self, file_path: Path) -> dict[str, Any]:
        where = repr(str(file_path))
        try:
            data = super()._read_file(file_path)  # type: ignore[safe-super]
        except OSError as exc:
            raise ConfigError(f"cannot read config file {where}: {exc.strerror or exc}") from exc
        except UnicodeDecodeError as exc:  # a ValueError, not an OSError: a binary or non-UTF-8 file
            raise ConfigError(
                f"cannot read config file {where}: not UTF-8 text ({exc.reason} at byte {exc.start})"
            ) from exc
        except Exception as exc:  # noqa: BLE001 - any parser error is a config error
            raise ConfigError(f"cannot parse config file {where}: {exc}") from exc
        if not isinstance(data, dict):
            raise ConfigError(f"config file {where} must hold a table/mapping at the top")
        return data


class _Toml(_CheckedFile, TomlConfigSettingsSource):
    pass


class _Yaml(_CheckedFile, YamlConfigSettingsSource):
    pass


class _Json(_CheckedFile, JsonConfigSettingsSource):
    pass


FILE_SOURCES: dict[str, type[PydanticBaseSettingsSource]] = {".yaml": _Yaml, ".yml": _Yaml, ".json": _Json}


def _file_source(settings_cls: type[BaseSettings], path: Path) -> PydanticBaseSettingsSource:
    """The source reading ``path`` by its suffix (TOML unless ``.yaml``, ``.yml`` or ``.json``)."""
    if not path.is_file():  # the file sources skip a missing file silently
        reason = "Is a directory" if path.is_dir() else "No such file or directory"
        raise ConfigError(f"cannot read config file {str(path)!r}: {reason}")
    return FILE_SOURCES.get(path.suffix, _Toml)(settings_cls, path)


def read_settings(model: type[BaseModel], *, path: str | Path | None, environ: Mapping[str, str],
                  overrides: dict[str, Any], prefix: str, extra: Mapping[str, tuple[str, str]]) -> BaseModel:
    """``model`` from ``overrides`` > the ``prefix`` variables of ``environ`` (and ``extra``: variable -> (field,
    key)) > the file at ``path``. Raises pydantic's ``ValidationError`` and pydantic-settings' ``SettingsError``."""

    class Settings(BaseSettings, model):  # type: ignore[misc, valid-type]
        model_config = SettingsConfigDict(env_prefix=prefix, env_nested_delimiter="__", extra="forbid")

        @classmethod
        def settings_customise_sources(cls, settings_cls: Any, init_settings: Any, **_: Any) -> tuple[Any, ...]:
            files = (_file_source(settings_cls, Path(path)),) if path else ()
            return init_settings, _Environment(settings_cls, environ, extra), *files

    return Settings(**overrides)
