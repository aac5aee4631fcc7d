"""The service's routers, one module per concern; :func:`serving.app.create_app` includes them."""
