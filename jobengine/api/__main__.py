"""``python -m jobengine.api``: serve the API with the environment's settings, as
``jobengine api`` does (the same start-up checks and connection parameters)."""

from config.settings import get_settings
from jobengine.api.app import serve_configured

serve_configured(get_settings())
