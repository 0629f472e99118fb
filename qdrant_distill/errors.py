"""Every error qdrant-distill raises, in one place.

    DistillError                      base class; ``str(err)`` is a one-line, actionable message
    ├── ConfigError                   bad configuration: values, files, paths, options that contradict
    │   ├── DimensionError            target dimension < 1 or >= the teacher's
    │   ├── BrokenEdgeFolder          an Edge folder's shard does not match its edge.json, or cannot be read
    │   └── TeacherMismatch           the given teacher (or text template) does not reproduce the stored vectors
    ├── ConnectorError                talking to the vector store failed
    │   ├── ConnectionFailed          unreachable server, refused connection, bad URL (after retries)
    │   ├── AuthenticationFailed      401/403: wrong or missing API key
    │   ├── ServerError               any other error answered by the server (4xx that is not ours, 5xx after retries)
    │   ├── ModelNotFound             an embeddings endpoint does not know the model (404)
    │   └── MalformedAnswer           an embeddings endpoint answered what is not embeddings (not JSON, wrong count, NaN)
    ├── CollectionError               the data in Qdrant does not allow the operation
    │   ├── CollectionNotFound        no collection or alias of that name
    │   ├── CollectionExists          refusing to overwrite an existing collection
    │   ├── AliasConflict             an alias name already used by a collection, or an alias in an unexpected state
    │   ├── VectorNotFound            unknown vector name, or a name needed and none given
    │   ├── UnsupportedVectors        sparse-only or multivector: nothing dense to distil
    │   ├── EmptyCollection           no points at all
    │   ├── NoTextPayload             no point carries usable text (field or template)
    │   └── InvalidVectors            non-finite or wrongly sized stored vectors
    ├── GateFailed                    the student fell below the quality gate; carries the report
    ├── MigrationError                a migration step cannot proceed (journal mismatch, verify failure, wrong stage)
    │   ├── VerificationFailed        the target does not match the source after re-embedding
    │   ├── JournalError              a run folder's journal is unreadable or not a qdrant-distill journal
    │   ├── RunFolderError            another file of a run folder (report.json, dims.json, report.html) is damaged
    │   ├── StoreMismatch             a run folder used with a store that is not its own (or that contradicts it)
    │   └── RunBusy                   another process (a running migration) holds the run folder's lock
    └── StudentError                  a student model cannot be built, loaded or trained
        └── BrokenExport              an export folder lacks a file it lists, or holds one that cannot be read

Foreign exceptions (qdrant-client, httpx, grpc) are translated once, at the connector boundary.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AliasConflict",
    "AuthenticationFailed",
    "BrokenEdgeFolder",
    "BrokenExport",
    "CollectionError",
    "CollectionExists",
    "CollectionNotFound",
    "ConfigError",
    "ConnectionFailed",
    "ConnectorError",
    "DimensionError",
    "DistillError",
    "EmptyCollection",
    "GateFailed",
    "InvalidVectors",
    "JournalError",
    "MalformedAnswer",
    "MigrationError",
    "ModelNotFound",
    "NoTextPayload",
    "RunBusy",
    "RunFolderError",
    "ServerError",
    "StoreMismatch",
    "StudentError",
    "TeacherMismatch",
    "UnsupportedVectors",
    "VectorNotFound",
    "VerificationFailed",
]


class DistillError(Exception):
    """Base class. ``hint`` says what to do about it; context travels as attributes."""

    def __init__(self, message: str, *, hint: str | None = None, **context: Any) -> None:
        self.message = message
        self.hint = hint
        self.context = context
        for key, value in context.items():
            setattr(self, key, value)
        super().__init__(message if hint is None else f"{message} ({hint})")


class ConfigError(DistillError):
    """Raised for invalid configuration: values, unreadable files, missing model paths."""


class DimensionError(ConfigError):
    """Raised when the target dimension is < 1 or not smaller than the teacher's."""


class BrokenEdgeFolder(ConfigError):
    """Raised when an Edge folder's shard does not hold what its ``edge.json`` says (points, dimension, vector name),
    holds vectors that are not what was written (scores no cosine can reach), or cannot be read; ``folder`` names
    it. The hint gives the command that writes it again."""


class TeacherMismatch(ConfigError):
    """Raised by the teacher check when the given teacher, with the configured text template, does not reproduce
    the stored vectors; ``cosine`` holds the measured mean cosine, ``threshold`` the minimum."""


class ConnectorError(DistillError):
    """Raised when talking to the vector store fails."""


class ConnectionFailed(ConnectorError):
    """Raised when the server cannot be reached (after transient retries are spent)."""


class AuthenticationFailed(ConnectorError):
    """Raised on 401/403: the API key is wrong or missing. The key itself is never included."""


class ServerError(ConnectorError):
    """Raised for any other error the server answered with; ``status`` holds the code when known."""


class ModelNotFound(ConnectorError):
    """Raised when an embeddings endpoint answers 404: it does not serve the model (or the path) asked for."""


class MalformedAnswer(ConnectorError):
    """Raised when an embeddings endpoint answers something that is not the embeddings asked for: not JSON (an HTML
    page), fewer or more vectors than texts, non-finite numbers, vectors of different sizes."""


class CollectionError(DistillError):
    """Raised when the collection's content or configuration does not allow the operation."""


class CollectionNotFound(CollectionError):
    """Raised when no collection or alias has the given name."""


class CollectionExists(CollectionError):
    """Raised instead of overwriting an existing collection."""


class AliasConflict(CollectionError):
    """Raised when an alias name is taken by a collection, or an alias is not where the journal expects it."""


class VectorNotFound(CollectionError):
    """Raised for an unknown vector name, or when a collection has several and none was chosen."""


class UnsupportedVectors(CollectionError):
    """Raised for sparse-only or multivector collections: there is no dense teacher vector."""


class EmptyCollection(CollectionError):
    """Raised when the collection holds no points."""


class NoTextPayload(CollectionError):
    """Raised when no point has usable text under the configured field or template."""


class InvalidVectors(CollectionError):
    """Raised when stored vectors are non-finite or not of the expected size."""


class GateFailed(DistillError):
    """Raised when the student is below the quality gate; ``failures`` lists metric, value and threshold."""


class MigrationError(DistillError):
    """Raised when a migration step cannot proceed (stage order, journal mismatch, wrong alias state)."""


class VerificationFailed(MigrationError):
    """Raised when the target collection does not match the source after re-embedding."""


class JournalError(MigrationError):
    """Raised when a run folder's journal cannot be read or is not one of ours (not JSON, not an object, fields
    missing or of the wrong type). Nothing in the folder is changed."""


class RunFolderError(MigrationError):
    """Raised when a file of a run folder other than its journal cannot be read as what it should be (report.json,
    dims.json or distill.json not JSON, of the wrong shape or types, binary) or the report cannot be written there
    (report.html a folder); ``path`` names the file. Nothing in the folder is changed."""


class StoreMismatch(MigrationError):
    """Raised when a run folder is used with a store it does not belong to, or the store contradicts its journal."""


class RunBusy(MigrationError):
    """Raised when another process holds the run folder's lock (a migration running in it); ``holder`` names it."""


class StudentError(DistillError):
    """Raised when a student model cannot be built, loaded, trained or saved."""


class BrokenExport(StudentError):
    """Raised when an export folder lacks a file its manifest lists (``model.onnx``, ``model_int8.onnx``, the
    tokenizer, the token table) or holds one that cannot be read (a truncated graph); ``folder`` and ``file`` say
    which, the hint gives the command that rebuilds the folder."""
