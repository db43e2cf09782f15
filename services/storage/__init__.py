"""The storage service: the only owner of persistent state (SQL metadata and blobs)."""
