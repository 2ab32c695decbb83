"""The embedded default components, shipped as package data; the sub-folders are example profiles.

Found through ``importlib.resources`` (``app.settings.DEFAULT_RESOURCES_PATH``), so an installed wheel
serves the same files as a checkout.
"""
