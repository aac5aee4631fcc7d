"""The online scoring service: FastAPI app serving the registry's champion with online features.

``python -m serving`` (``make serve``) starts it; ``serving.app:create_app`` is the ASGI factory. Routes stay
thin: settings, feature definitions and the request-time transformation come from ``mlops_recipes``.
"""
