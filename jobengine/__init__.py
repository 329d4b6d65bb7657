"""jobengine: a job engine whose one authority over every job is Postgres."""

__version__ = "0.1.0"
