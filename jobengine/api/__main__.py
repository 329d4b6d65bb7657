"""``python -m jobengine.api``: serve the API with the environment's settings."""

from config.logging import configure_logging
from config.settings import get_settings
from jobengine.api.app import serve

settings = get_settings()
configure_logging(settings.log_level, settings.log_json)
serve(settings)
