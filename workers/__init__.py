"""The Celery side of jobengine: the app, thin tasks, signal hooks and job handlers."""
