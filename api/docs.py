"""The docs page's Swagger UI, served from the `swagger-ui-bundle` package.

The page then works where the service runs without internet, and its scripts are the ones
installed with the service, not whatever a CDN serves that day.
"""

from __future__ import annotations

from flask import Blueprint
from swagger_ui_bundle import swagger_ui_path

#: Where the page loads its scripts and styles from (flask-smorest's OPENAPI_SWAGGER_UI_URL).
ASSETS_URL = "/docs/assets/"

assets = Blueprint(
    "docs_assets", __name__, static_folder=swagger_ui_path, static_url_path=ASSETS_URL.rstrip("/")
)
