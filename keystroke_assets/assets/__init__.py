"""The pipeline stages: web_app_data → raw_data → cleaned_data → keypairs."""
