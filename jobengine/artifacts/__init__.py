"""Artifacts: named files or blobs a handler attaches to its job, kept beside Postgres.

The bytes go to an ``ArtifactStorage`` (a local folder by default, any S3-compatible store by
URL: ``storage.storage_for``); Postgres keeps one ``artifacts`` row per name with its size,
content type, sha256 and storage key. Bytes are always written before their row and deleted
after it, so a crash can leave an orphan blob but never a row that points at nothing.
"""
