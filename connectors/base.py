"""The protocol the core needs from a vector store, and the plain types that cross it.

Nothing here imports qdrant-client: the core works with these types only. The project's errors are imported inside
the functions that raise them, so importing this module never imports the core. Point ids are ``int`` or ``str`` (UUID);
vectors are keyed by vector name, ``UNNAMED`` ("") for a collection's single unnamed vector.
"""

from __future__ import annotations

import string
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, Union, runtime_checkable

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

PointId = Union[int, str]
UNNAMED = ""
DEFAULT_TEXT_FIELD = "text"

__all__ = [
    "UNNAMED",
    "CollectionInfo",
    "Connector",
    "Page",
    "Point",
    "PointId",
    "Sample",
    "TextSource",
    "VectorSpec",
]


class VectorSpec(BaseModel):
    """One vector of a collection, as configured."""

    name: str = UNNAMED
    size: int | None = None
    distance: str | None = None  # "Cosine", "Dot", "Euclid", "Manhattan"
    datatype: str | None = None  # "float32", "float16", "uint8"
    on_disk: bool | None = None
    multivector: bool = False
    sparse: bool = False
    hnsw: dict[str, Any] | None = None
    quantization: dict[str, Any] | None = None
    params: dict[str, Any] | None = None  # the full original configuration, to mirror it

    @property
    def dense(self) -> bool:
        return not self.sparse and not self.multivector


class CollectionInfo(BaseModel):
    """What ``describe`` sees of a collection, resolved through an alias when one was named."""

    name: str
    requested: str
    alias: str | None = None  # the alias that was asked for, when ``requested`` was an alias
    vectors: dict[str, VectorSpec] = Field(default_factory=dict)
    sparse_vectors: dict[str, VectorSpec] = Field(default_factory=dict)
    hnsw: dict[str, Any] = Field(default_factory=dict)
    quantization: dict[str, Any] | None = None
    optimizers: dict[str, Any] = Field(default_factory=dict)
    shard_number: int | None = None
    replication_factor: int | None = None
    write_consistency_factor: int | None = None
    on_disk_payload: bool | None = None
    payload_indexes: dict[str, Any] = Field(default_factory=dict)
    points_count: int = 0
    metadata: dict[str, Any] = Field(default_factory=dict)

    @property
    def named(self) -> bool:
        return UNNAMED not in self.vectors

    def vector(self, name: str | None = None) -> VectorSpec:
        """The dense vector to distil from: ``name``, or the only dense one. Raises a typed error otherwise."""
        from qdrant_distill.errors import UnsupportedVectors, VectorNotFound

        dense = {k: v for k, v in self.vectors.items() if v.dense}
        if name is None or name == UNNAMED and UNNAMED not in self.vectors:
            if not dense:
                kinds = "multivector" if self.vectors else "sparse-only"
                raise UnsupportedVectors(
                    f"collection {self.name!r} has no dense single vector ({kinds})",
                    hint="qdrant-distill needs one dense vector per point as the teacher",
                    collection=self.name,
                )
            if len(dense) > 1:
                raise VectorNotFound(
                    f"collection {self.name!r} has several dense vectors: {sorted(dense)}",
                    hint="choose one with vector_name / --vector-name",
                    collection=self.name,
                    available=sorted(dense),
                )
            return next(iter(dense.values()))
        if name in self.sparse_vectors:
            raise UnsupportedVectors(
                f"vector {name!r} of {self.name!r} is sparse", hint="choose a dense vector", collection=self.name
            )
        if name not in self.vectors:
            raise VectorNotFound(
                f"collection {self.name!r} has no vector named {name!r}",
                hint=f"available: {sorted(self.vectors) or ['(unnamed)']}",
                collection=self.name,
                available=sorted(self.vectors),
            )
        spec = self.vectors[name]
        if spec.multivector:
            raise UnsupportedVectors(
                f"vector {name!r} of {self.name!r} is a multivector", hint="choose a dense single vector",
                collection=self.name,
            )
        return spec




class TextSource(BaseModel):
    """Where a point's text comes from: one payload field, or a template such as ``"{title} {text}"``."""

    model_config = ConfigDict(frozen=True)

    field: str | None = None
    template: str | None = None

    @model_validator(mode="after")
    def _one_of(self) -> TextSource:
        from qdrant_distill.errors import ConfigError

        if self.field and self.template:
            raise ConfigError("give either a text field or a text template, not both")
        if self.template is not None:
            names = self.template_fields
            if not names:
                raise ConfigError(f"text template {self.template!r} names no payload field", hint='e.g. "{title} {text}"')
            if any(conv or spec for _, name, spec, conv in string.Formatter().parse(self.template) if name):
                raise ConfigError(f"text template {self.template!r} converts or formats a field",
                                  hint='a template takes plain payload keys: "{title} {text}" or "{meta.title}"')
        return self

    @property
    def template_fields(self) -> list[str]:
        if self.template is None:
            return []
        try:
            return [f for _, f, _, _ in string.Formatter().parse(self.template) if f]
        except ValueError as exc:
            from qdrant_distill.errors import ConfigError

            raise ConfigError(f"bad text template {self.template!r}: {exc}") from exc

    @property
    def fields(self) -> list[str]:
        """Payload keys needed to render the text."""
        return self.template_fields or [self.field or DEFAULT_TEXT_FIELD]

    def describe(self) -> str:
        return f"template {self.template!r}" if self.template else f"payload field {self.field or DEFAULT_TEXT_FIELD!r}"

    def render(self, payload: Mapping[str, Any] | None) -> str | None:
        """The text of one point, or None when it has none (missing or blank fields)."""
        if not payload:
            return None
        if self.template is None:
            value = lookup(payload, self.field or DEFAULT_TEXT_FIELD)
            text = _as_text(value)
            return text if text else None
        values = {name: _as_text(lookup(payload, name)) or "" for name in self.template_fields}
        if not any(values.values()):
            return None
        # filled in piece by piece, not by str.format: a dotted key ("meta.title") is a nested payload key here
        pieces = [f"{literal}{values[name] if name else ''}" for literal, name, _, _ in
                  string.Formatter().parse(self.template)]
        text = " ".join("".join(pieces).split())
        return text or None


def lookup(payload: Mapping[str, Any], key: str) -> Any:
    """``payload[key]``, or a nested value for a dotted key such as ``"meta.title"``; None when absent."""
    if key in payload:
        return payload[key]
    node: Any = payload
    for part in key.split("."):  # nested "meta.title"
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def _as_text(value: Any) -> str | None:
    """Text of a payload value: a string, a number, or a list of those; a mapping (or a list holding one) is not
    text (its Python repr would be embedded), so the point counts as having none. A lone surrogate (not encodable
    text, which tokenizers reject) becomes U+FFFD."""
    if value is None or isinstance(value, Mapping):
        return None
    if isinstance(value, str):
        return _encodable(value).strip() or None
    if isinstance(value, list):
        if any(isinstance(v, (Mapping, list)) for v in value):
            return None
        joined = " ".join(_encodable(str(v)) for v in value if v is not None).strip()
        return joined or None
    return str(value).strip() or None


def _encodable(text: str) -> str:
    """``text`` with lone surrogates replaced by U+FFFD (the only str that UTF-8 cannot encode)."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return "".join("\ufffd" if 0xD800 <= ord(ch) <= 0xDFFF else ch for ch in text)


@dataclass
class Point:
    """A point as read or written: id, payload, vectors by name (``UNNAMED`` for the unnamed one).

    A dense vector is a list of floats or a 1-d array; a sparse one is ``{"indices": [...], "values": [...]}``.
    """

    id: PointId
    payload: dict[str, Any] = field(default_factory=dict)
    vectors: dict[str, Any] = field(default_factory=dict)


@dataclass
class Page:
    """One page of a scroll: its points and the offset to resume from (None after the last page)."""

    points: list[Point]
    offset: PointId | None
    next_offset: PointId | None


@dataclass
class Sample:
    """Points sampled for training: ids, texts and the teacher vectors (float32, one row per text)."""

    ids: list[PointId]
    texts: list[str]
    vectors: np.ndarray
    requested: int
    method: str  # "random" (server-side sample query) or "reservoir" (scroll)
    missing_text: int = 0  # sampled points skipped because they had no usable text
    missing_vector: int = 0  # sampled points skipped because they had no teacher vector

    def __len__(self) -> int:
        return len(self.ids)


@runtime_checkable
class Connector(Protocol):
    """What the core asks of a vector store. Implementations translate their errors to :mod:`qdrant_distill.errors`."""

    identity: str | None  # which store this is, secret-free (a run folder records it); None when not known

    def describe(self, name: str) -> CollectionInfo: ...

    def resolve(self, name: str) -> tuple[str, str | None]: ...

    def collection_exists(self, name: str) -> bool: ...

    def alias_target(self, alias: str) -> str | None: ...

    def count(self, collection: str, *, exact: bool = True) -> int: ...

    def sample(
        self,
        collection: str,
        n: int,
        *,
        text: TextSource,
        vector_name: str | None = None,
        filter: Any = None,
        seed: int | None = None,
    ) -> Sample: ...

    def scroll(
        self,
        collection: str,
        *,
        page_size: int = 256,
        with_payload: bool | Sequence[str] = True,
        with_vectors: bool | Sequence[str] = False,
        offset: PointId | None = None,
        filter: Any = None,
    ) -> Iterator[Page]: ...

    def retrieve(
        self, collection: str, ids: Sequence[PointId], *, with_payload: bool = True, with_vectors: bool | Sequence[str] = False
    ) -> list[Point]: ...

    def search(
        self, collection: str, vector: Sequence[float], *, limit: int = 10, vector_name: str | None = None
    ) -> list[tuple[PointId, float]]: ...

    def create_like(
        self,
        info: CollectionInfo,
        *,
        name: str,
        vector_name: str | None,
        size: int,
        metadata: Mapping[str, Any] | None = None,
    ) -> None: ...

    def upsert(self, collection: str, points: Sequence[Point], *, wait: bool = True) -> None: ...

    def delete_points(self, collection: str, ids: Sequence[PointId], *, wait: bool = True) -> None: ...

    def swap_alias(self, alias: str, collection: str) -> str | None: ...

    def create_alias(self, alias: str, collection: str) -> None: ...

    def delete_alias(self, alias: str) -> None: ...

    def set_metadata(self, collection: str, metadata: Mapping[str, Any], *, merge: bool = True) -> dict[str, Any]: ...

    def delete_collection(self, name: str) -> None: ...

    def close(self) -> None: ...
