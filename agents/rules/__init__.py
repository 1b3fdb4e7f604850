"""Rule catalogs shipped with Foresight (YAML data, loaded with importlib.resources)."""
