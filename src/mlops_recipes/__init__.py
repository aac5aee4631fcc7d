"""mlops-recipes: a reference MLOps template for card-transaction fraud detection.

Layers (see ARCHITECTURE.md): ``core`` holds pure computation on in-memory frames, ``io`` the adapters to
files, Feast and MLflow, ``stages`` the pipeline steps that DVC, Prefect, the CLI and the service call.
Importing this package has no side effects and pulls in no heavy dependency.
"""

__version__ = "0.1.0"
