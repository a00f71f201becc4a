# The feature store (Feast): feature_repo/ holds its configuration and definitions.
# Feast before 0.40 reports usage statistics unless this is set.
export FEAST_USAGE := False

.PHONY: features

features: setup ## Register the features and load the online store (the features and materialize stages)
	$(RUN) dvc repro materialize
