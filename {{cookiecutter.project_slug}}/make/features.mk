# The feature store (Feast): feature_repo/ holds its configuration and definitions.
# Feast before 0.40 reports usage statistics unless this is set.
export FEAST_USAGE := False

.PHONY: features publish-features

features: setup ## Register the features and load the online store (the features and materialize stages)
	$(RUN) dvc repro materialize

# Production's source: FEATURE_SOURCE_URL=s3://… (environment or .env), the bucket's keys in the environment.
publish-features: setup ## Copy data/processed/features.parquet to FEATURE_SOURCE_URL, where the production store reads it
	$(RUN) {{ cookiecutter.project_slug }} publish-features
