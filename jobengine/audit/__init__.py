"""The audit log and its provenance exports."""
