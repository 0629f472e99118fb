"""The Qdrant connector: everything the core does with Qdrant goes through :class:`QdrantConnector`.

Open it on an embedded folder (the default), ``:memory:``, a server URL with an API key, or wrap a client you already
have. Every call retries transient failures (see :mod:`qdrant_distill.connectors._faults`) and raises qdrant-distill's typed errors.
"""

from __future__ import annotations

import logging
import random
import warnings
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from qdrant_distill.connectors._convert import (
    clean,
    dump,
    enum_value,
    quantization,
    to_point,
    to_sample,
    vector_struct,
)
from qdrant_distill.connectors._faults import RetryPolicy, translate
from qdrant_distill.connectors.base import (
    UNNAMED,
    CollectionInfo,
    Page,
    Point,
    PointId,
    Sample,
    TextSource,
    VectorSpec,
)
from qdrant_distill.connectors.settings import DEFAULT_PATH, QdrantSettings
from qdrant_distill.errors import (
    AliasConflict,
    CollectionExists,
    CollectionNotFound,
    ConfigError,
    EmptyCollection,
    ServerError,
)

logger = logging.getLogger(__name__)

SAMPLE_ROUNDS = 4  # random-sample requests before giving up on reaching n distinct points
SAMPLE_CHUNK = 1024

__all__ = ["QdrantConnector"]


class QdrantConnector:
    """Talks to one Qdrant deployment. Use :meth:`open` or pass ``client=`` to wrap an existing ``QdrantClient``."""

    def __init__(self, client: Any, *, target: str = "qdrant", retry: RetryPolicy | None = None, owned: bool = False,
                 identity: str | None = None):
        self.client = client
        self.target = target
        self.identity = identity  # QdrantSettings.identity when opened from settings; None: a wrapped client
        self.retry = retry or RetryPolicy()
        self._owned = owned

    # -- opening ----------------------------------------------------------------------------------------------

    @classmethod
    def open(
        cls, settings: QdrantSettings | None = None, *, retry: RetryPolicy | None = None, **kwargs: Any
    ) -> QdrantConnector:
        """Open from settings (or keyword arguments of :class:`QdrantSettings`)."""
        from qdrant_client import QdrantClient

        settings = settings or QdrantSettings(**kwargs)
        if settings.url:
            try:
                with warnings.catch_warnings(record=True) as said:  # its version check warns with a file path
                    warnings.simplefilter("always")
                    client = QdrantClient(
                        url=settings.url,
                        api_key=settings.api_key.get_secret_value() if settings.api_key else None,
                        prefer_grpc=settings.prefer_grpc,
                        grpc_port=settings.grpc_port,
                        timeout=int(settings.timeout),
                    )
                for warning in said:
                    logger.debug("qdrant-client: %s", warning.message)
                # its lazy version check warns (with a file path) when the server cannot be reached: our own error
                # says so in one line
                warnings.filterwarnings("ignore", message="Failed to obtain server version", category=UserWarning)
            except Exception as exc:  # noqa: BLE001 - its text may hold the URL's credentials: name the type only
                from qdrant_distill.errors import ConfigError

                raise ConfigError(f"cannot use the Qdrant URL {settings.target!r}: {type(exc).__name__}",
                                  hint="expected http(s)://host:port") from None
        elif settings.location:
            client = QdrantClient(location=settings.location)
        else:
            client = _open_embedded(settings.path or DEFAULT_PATH)
        logger.debug("opened Qdrant at %s", settings.target)
        return cls(client, target=settings.target, retry=retry, owned=True, identity=settings.identity)

    def close(self) -> None:
        """Close the client when this connector opened it (releases an embedded folder's lock)."""
        if self._owned:
            try:
                self.client.close()
            except Exception:  # noqa: BLE001 - closing must not mask the real outcome
                logger.debug("closing the client failed", exc_info=True)

    def __enter__(self) -> QdrantConnector:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"QdrantConnector({self.target!r})"

    def _call(self, op: str, fn: Any, *args: Any, collection: str | None = None, **kwargs: Any) -> Any:
        try:
            return self.retry.call(fn, *args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - translated once, here
            raise translate(exc, op=op, target=self.target, collection=collection) from exc

    # -- names and aliases ----------------------------------------------------------------------------------

    def aliases(self) -> dict[str, str]:
        """Every alias and the collection it points to."""
        result = self._call("get_aliases", self.client.get_aliases)
        return {a.alias_name: a.collection_name for a in result.aliases}

    def alias_target(self, alias: str) -> str | None:
        return self.aliases().get(alias)

    def collections(self) -> list[str]:
        result = self._call("get_collections", self.client.get_collections)
        return sorted(c.name for c in result.collections)

    def collection_exists(self, name: str) -> bool:
        """Whether a collection (not an alias) has this name."""
        return name in self.collections()

    def resolve(self, name: str) -> tuple[str, str | None]:
        """``(collection, alias)``: the collection behind ``name`` and the alias when ``name`` is one."""
        target = self.alias_target(name)
        if target is not None:
            return target, name
        if self.collection_exists(name):
            return name, None
        raise CollectionNotFound(
            f"no collection or alias named {name!r} on {self.target}",
            hint=f"existing collections: {self.collections() or 'none'}",
            collection=name,
        )

    def swap_alias(self, alias: str, collection: str) -> str | None:
        """Point ``alias`` at ``collection`` in ONE atomic request; returns the previous target (None if new)."""
        from qdrant_client import models

        if self.collection_exists(alias):
            raise AliasConflict(f"{alias!r} is a collection, not an alias", hint="choose another alias name", alias=alias)
        if not self.collection_exists(collection):
            raise CollectionNotFound(f"cannot point alias {alias!r} at missing collection {collection!r}")
        previous = self.alias_target(alias)
        ops: list[Any] = []
        if previous is not None:
            ops.append(models.DeleteAliasOperation(delete_alias=models.DeleteAlias(alias_name=alias)))
        ops.append(
            models.CreateAliasOperation(create_alias=models.CreateAlias(collection_name=collection, alias_name=alias))
        )
        self._call("update_collection_aliases", self.client.update_collection_aliases, change_aliases_operations=ops)
        logger.info("alias %r: %s -> %s (one request)", alias, previous, collection)
        return previous

    def create_alias(self, alias: str, collection: str) -> None:
        """Create a new alias; refuses when the name is taken by a collection or an alias."""
        if self.collection_exists(alias):
            raise AliasConflict(f"{alias!r} is a collection, not an alias", hint="choose another alias name", alias=alias)
        existing = self.alias_target(alias)
        if existing is not None:
            raise AliasConflict(f"alias {alias!r} already points to {existing!r}", hint="use swap_alias", alias=alias)
        self.swap_alias(alias, collection)

    def delete_alias(self, alias: str) -> None:
        from qdrant_client import models

        op = models.DeleteAliasOperation(delete_alias=models.DeleteAlias(alias_name=alias))
        self._call("update_collection_aliases", self.client.update_collection_aliases, change_aliases_operations=[op])
        logger.info("alias %r deleted", alias)

    # -- describe -------------------------------------------------------------------------------------------

    def describe(self, name: str) -> CollectionInfo:
        """Everything about the collection behind ``name`` (an alias is resolved)."""
        collection, alias = self.resolve(name)
        info = self._call("get_collection", self.client.get_collection, collection, collection=collection)
        params = info.config.params
        vectors: dict[str, VectorSpec] = {}
        if params.vectors is not None:
            items = params.vectors.items() if isinstance(params.vectors, Mapping) else [(UNNAMED, params.vectors)]
            for vname, vp in items:
                vectors[vname] = VectorSpec(
                    name=vname,
                    size=vp.size,
                    distance=enum_value(vp.distance),
                    datatype=enum_value(vp.datatype),
                    on_disk=vp.on_disk,
                    multivector=vp.multivector_config is not None,
                    hnsw=dump(vp.hnsw_config),
                    quantization=dump(vp.quantization_config),
                    params=dump(vp),
                )
        sparse = {
            sname: VectorSpec(name=sname, sparse=True, params=dump(sp))
            for sname, sp in (params.sparse_vectors or {}).items()
        }
        schema = {
            field: {"data_type": enum_value(idx.data_type), "params": dump(idx.params)}
            for field, idx in (info.payload_schema or {}).items()
        }
        return CollectionInfo(
            name=collection,
            requested=name,
            alias=alias,
            vectors=vectors,
            sparse_vectors=sparse,
            hnsw=dump(info.config.hnsw_config) or {},
            quantization=dump(info.config.quantization_config),
            optimizers=dump(info.config.optimizer_config) or {},
            shard_number=params.shard_number,
            replication_factor=params.replication_factor,
            write_consistency_factor=params.write_consistency_factor,
            on_disk_payload=params.on_disk_payload,
            payload_indexes=schema,
            points_count=self.count(collection),
            metadata=dict(getattr(info.config, "metadata", None) or {}),
        )

    def count(self, collection: str, *, exact: bool = True, filter: Any = None) -> int:
        result = self._call(
            "count", self.client.count, collection, count_filter=filter, exact=exact, collection=collection
        )
        return int(result.count)

    # -- reading --------------------------------------------------------------------------------------------

    def sample(
        self,
        collection: str,
        n: int,
        *,
        text: TextSource,
        vector_name: str | None = None,
        filter: Any = None,
        seed: int | None = None,
    ) -> Sample:
        """Up to ``n`` distinct random points with text and teacher vector.

        Uses the server's random sample query; with a ``seed`` (reproducible) or on a server without it, reservoir
        sampling over a scroll. Points without usable text are skipped and counted.
        """
        if n < 1:
            raise ConfigError(f"sample size must be >= 1, got {n}")
        info = self.describe(collection)
        spec = info.vector(vector_name)
        if info.points_count == 0:
            raise EmptyCollection(f"collection {info.name!r} has no points", hint="nothing to distil from")
        points: list[Point] | None = None
        method = "random"
        if seed is None:
            points = self._random_points(info.name, n, spec.name, filter)
        if points is None:
            method = "reservoir"
            points = self._reservoir(info.name, n, spec.name, filter, seed)
        return to_sample(points, text=text, vector_name=spec.name, requested=n, method=method, size=spec.size)

    def _random_points(self, collection: str, n: int, vector_name: str, filter: Any) -> list[Point] | None:
        from qdrant_client import models

        seen: dict[PointId, Point] = {}
        stale = 0
        while len(seen) < n and stale < SAMPLE_ROUNDS:
            want = min(SAMPLE_CHUNK, n - len(seen))
            try:
                result = self._call(
                    "sample",
                    self.client.query_points,
                    collection,
                    query=models.SampleQuery(sample=models.Sample.RANDOM),
                    query_filter=filter,
                    limit=want,
                    with_payload=True,
                    with_vectors=[vector_name] if vector_name else True,
                    collection=collection,
                )
            except (ServerError, AttributeError) as exc:  # a server without random sampling
                logger.info("random sampling unavailable (%s); falling back to a reservoir over scroll", exc)
                return None
            before = len(seen)
            for p in result.points:
                seen.setdefault(p.id, to_point(p))
            if len(result.points) < want:  # the collection (after the filter) holds fewer points than asked
                break
            if len(seen) == before:
                stale += 1
        return list(seen.values())[:n]

    def _reservoir(
        self, collection: str, n: int, vector_name: str, filter: Any, seed: int | None
    ) -> list[Point]:
        rng = random.Random(seed)
        reservoir: list[Point] = []
        seen = 0
        vectors = [vector_name] if vector_name else True
        for page in self.scroll(collection, page_size=512, with_vectors=vectors, filter=filter):
            for p in page.points:
                seen += 1
                if len(reservoir) < n:
                    reservoir.append(p)
                else:
                    j = rng.randrange(seen)
                    if j < n:
                        reservoir[j] = p
        return reservoir

    def scroll(
        self,
        collection: str,
        *,
        page_size: int = 256,
        with_payload: bool | Sequence[str] = True,
        with_vectors: bool | Sequence[str] = False,
        offset: PointId | None = None,
        filter: Any = None,
    ) -> Iterator[Page]:
        """Pages in id order from ``offset``; each page carries ``next_offset`` to checkpoint and resume from."""
        payload = with_payload if isinstance(with_payload, bool) else list(with_payload)
        vectors = with_vectors if isinstance(with_vectors, bool) else [v for v in with_vectors]
        if isinstance(vectors, list) and vectors == [UNNAMED]:
            vectors = True
        current = offset
        while True:
            records, next_offset = self._call(
                "scroll",
                self.client.scroll,
                collection,
                scroll_filter=filter,
                limit=page_size,
                offset=current,
                with_payload=payload,
                with_vectors=vectors,
                collection=collection,
            )
            yield Page(points=[to_point(r) for r in records], offset=current, next_offset=next_offset)
            if next_offset is None:
                return
            current = next_offset

    def retrieve(
        self,
        collection: str,
        ids: Sequence[PointId],
        *,
        with_payload: bool = True,
        with_vectors: bool | Sequence[str] = False,
    ) -> list[Point]:
        vectors = with_vectors if isinstance(with_vectors, bool) else list(with_vectors)
        records = self._call(
            "retrieve",
            self.client.retrieve,
            collection,
            ids=list(ids),
            with_payload=with_payload,
            with_vectors=vectors,
            collection=collection,
        )
        return [to_point(r) for r in records]

    def search(
        self, collection: str, vector: Sequence[float], *, limit: int = 10, vector_name: str | None = None
    ) -> list[tuple[PointId, float]]:
        """Nearest points to ``vector`` as ``(id, score)``."""
        result = self._call(
            "query_points",
            self.client.query_points,
            collection,
            query=[float(x) for x in vector],
            using=vector_name or None,
            limit=limit,
            with_payload=False,
            collection=collection,
        )
        return [(p.id, float(p.score)) for p in result.points]

    # -- writing --------------------------------------------------------------------------------------------

    def create_like(
        self,
        info: CollectionInfo,
        *,
        name: str,
        vector_name: str | None,
        size: int,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        """A new collection configured like ``info`` with the teacher vector resized; refuses to overwrite."""
        from qdrant_client import models

        if self.collection_exists(name) or self.alias_target(name) is not None:
            raise CollectionExists(
                f"collection {name!r} already exists", hint="choose another target name or drop it first", collection=name
            )
        spec = info.vector(vector_name)
        vectors: dict[str, Any] = {}
        for vname, vs in info.vectors.items():
            params = dict(vs.params or {})
            if vname == spec.name:
                params["size"] = size
                params.pop("multivector_config", None)
            vectors[vname] = models.VectorParams(**{k: v for k, v in params.items() if v is not None})
        sparse = {s: models.SparseVectorParams(**(vs.params or {})) for s, vs in info.sparse_vectors.items()}
        quant = quantization(info.quantization)
        try:
            self._call(
                "create_collection",
                self.client.create_collection,
                name,
                vectors_config=vectors[UNNAMED] if UNNAMED in vectors else vectors,
                sparse_vectors_config=sparse or None,
                shard_number=info.shard_number,
                replication_factor=info.replication_factor,
                write_consistency_factor=info.write_consistency_factor,
                on_disk_payload=info.on_disk_payload,
                hnsw_config=models.HnswConfigDiff(**clean(info.hnsw)) if info.hnsw else None,
                optimizers_config=models.OptimizersConfigDiff(**clean(info.optimizers)) if info.optimizers else None,
                quantization_config=quant,
                metadata=dict(metadata) if metadata else None,
                collection=name,
            )
        except CollectionExists:
            # a retry whose first attempt went through and only the answer was lost: ours when it carries exactly
            # the metadata we sent (checked above that the name was free)
            if not metadata or self.describe(name).metadata != dict(metadata):
                raise
            logger.warning("collection %r was created by an earlier attempt whose answer was lost", name)
        for field, index in info.payload_indexes.items():
            schema = index.get("params") or index.get("data_type")
            self._call(
                "create_payload_index",
                self.client.create_payload_index,
                name,
                field_name=field,
                field_schema=schema,
                collection=name,
            )
        logger.info("created collection %r like %r (%s: size %d)", name, info.name, spec.name or "vector", size)

    def upsert(self, collection: str, points: Sequence[Point], *, wait: bool = True) -> None:
        """Write points with their ids and payloads exactly as given. ``wait=True`` returns once applied."""
        from qdrant_client import models

        structs = [
            models.PointStruct(id=p.id, payload=p.payload, vector=vector_struct(p.vectors)) for p in points
        ]
        if structs:
            self._call("upsert", self.client.upsert, collection, points=structs, wait=wait, collection=collection)

    def delete_points(self, collection: str, ids: Sequence[PointId], *, wait: bool = True) -> None:
        from qdrant_client import models

        if ids:
            self._call(
                "delete",
                self.client.delete,
                collection,
                points_selector=models.PointIdsList(points=list(ids)),
                wait=wait,
                collection=collection,
            )

    def set_metadata(self, collection: str, metadata: Mapping[str, Any], *, merge: bool = True) -> dict[str, Any]:
        """Set the collection's metadata (merged into what is there by default); returns the result."""
        current = self.describe(collection).metadata if merge else {}
        new = {**current, **metadata}
        self._call("update_collection", self.client.update_collection, collection, metadata=new, collection=collection)
        return new

    def delete_collection(self, name: str) -> None:
        """Drop a collection. Refuses while any alias points to it."""
        pointing = [a for a, c in self.aliases().items() if c == name]
        if pointing:
            raise AliasConflict(f"refusing to drop {name!r}: aliases {pointing} point to it", collection=name)
        self._call("delete_collection", self.client.delete_collection, name, collection=name)
        logger.info("dropped collection %r", name)




def _open_embedded(path: str) -> Any:
    from qdrant_client import QdrantClient

    try:
        return QdrantClient(path=path)
    except RuntimeError as exc:  # another live process holds the folder's lock
        raise ConfigError(
            f"the embedded Qdrant folder {path!r} is in use by another process",
            hint="close the other client, or use a Qdrant server for concurrent access",
        ) from exc
