"""Settings, Celery configuration and logging: the only place the engine reads its environment."""
